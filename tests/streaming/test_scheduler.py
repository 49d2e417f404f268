"""BatchScheduler policy with a fake clock: size trigger, real deadline, fairness."""

from __future__ import annotations

import pytest

from streaming.scheduler import BatchPolicy, BatchScheduler


def test_full_batch_runs_at_once():
    sched = BatchScheduler(BatchPolicy(max_batch_size=3, max_wait_ms=50))
    for key in "abc":
        sched.offer(key, "online", now=1.0)
    assert sched.next_batch(now=1.0) == ("online", ["a", "b", "c"])


def test_lone_stream_waits_exactly_until_the_deadline():
    sched = BatchScheduler(BatchPolicy(max_batch_size=8, max_wait_ms=50))
    sched.offer("a", "online", now=10.0)
    assert sched.deadline() == pytest.approx(10.05)
    assert sched.next_batch(now=10.049) is None
    assert sched.next_batch(now=10.05) == ("online", ["a"])
    assert sched.deadline() is None


def test_deadline_follows_the_oldest_entry():
    sched = BatchScheduler(BatchPolicy(max_batch_size=8, max_wait_ms=20))
    sched.offer("late", "final", now=5.0)
    sched.offer("early", "online", now=4.0)
    assert sched.deadline() == pytest.approx(4.02)


def test_repeat_offers_keep_the_original_place_and_time():
    sched = BatchScheduler(BatchPolicy(max_batch_size=2, max_wait_ms=10))
    sched.offer("a", "online", now=0.0)
    sched.offer("b", "online", now=0.001)
    sched.offer("a", "online", now=0.005)
    assert len(sched) == 2
    assert sched.next_batch(now=0.0011) == ("online", ["a", "b"])


def test_entries_leave_in_arrival_order_so_none_starves():
    sched = BatchScheduler(BatchPolicy(max_batch_size=2, max_wait_ms=0))
    for i in range(5):
        sched.offer(i, "online", now=float(i))
    served = []
    while (batch := sched.next_batch(now=100.0)) is not None:
        served.extend(batch[1])
    assert served == [0, 1, 2, 3, 4]


def test_kinds_batch_separately_and_the_oldest_kind_goes_first():
    sched = BatchScheduler(BatchPolicy(max_batch_size=4, max_wait_ms=10))
    sched.offer("x", "final", now=0.0)
    sched.offer("y", "online", now=0.002)
    sched.offer("z", "final", now=0.003)
    assert sched.next_batch(now=1.0) == ("final", ["x", "z"])
    assert sched.next_batch(now=1.0) == ("online", ["y"])


def test_a_busy_lane_is_skipped_and_its_deadline_ignored():
    # the runner passes only the kinds whose lane is free: a final in flight
    # must not hold back online chunks, nor wake the runner for finals
    sched = BatchScheduler(BatchPolicy(max_batch_size=8, max_wait_ms=20))
    sched.offer("f", "final", now=1.0)
    sched.offer("o", "online", now=2.0)
    assert sched.deadline(kinds={"online"}) == pytest.approx(2.02)
    assert sched.next_batch(now=5.0, kinds={"online"}) == ("online", ["o"])
    assert sched.next_batch(now=5.0, kinds={"online"}) is None
    assert sched.deadline(kinds={"online"}) is None
    assert sched.next_batch(now=5.0) == ("final", ["f"])


def test_discard_removes_a_waiting_session():
    sched = BatchScheduler(BatchPolicy(max_batch_size=4, max_wait_ms=0))
    sched.offer("a", "online", now=0.0)
    sched.discard("a")
    assert sched.next_batch(now=1.0) is None


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        BatchPolicy(max_batch_size=0)
