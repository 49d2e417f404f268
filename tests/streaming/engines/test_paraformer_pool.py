"""The Paraformer engine's device-side state pool (paraformer_pool, docs/design.md §6).

32 sessions speak one or two utterances each: they start at different ticks, use
both chunk settings and three ways of sending audio, and end each utterance
in one of three ways: an `is_last` piece, an empty `is_last` piece after the
audio, or no `is_last` at all (the session just forgets the state, as 2pass
mode does). The pool starts with two slots, so it doubles while streams
join, and ended streams' slots are reused. Every utterance's tokens must
equal FunASR's own per-stream inference on the same audio, with and without
bucketed batch sizes.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
import torch

from streaming.engine import ChunkRequest, StreamOptions
from streaming.engines.paraformer import ParaformerStreamingEngine
from streaming.engines.paraformer_pool import bucket_size
from tests.streaming.engines.funasr_reference import funasr_tokens

STRIDE = 9600
SHORT, LONG = (5, 10, 5), (0, 10, 5)
SESSIONS = 32
UTTERANCES = (2, 1)  # per even, odd session
IS_LAST, EMPTY_LAST, DROPPED = "is_last", "empty_last", "dropped"


@dataclass
class Utterance:
    session: int
    number: int
    audio: np.ndarray
    chunk_size: tuple[int, int, int]
    piece: int
    ending: str

    def pieces(self) -> list[tuple[np.ndarray, bool]]:
        out = [(self.audio[c : c + self.piece], False)
               for c in range(0, len(self.audio), self.piece)]
        if self.ending == IS_LAST:
            out[-1] = (out[-1][0], True)
        elif self.ending == EMPTY_LAST:
            out.append((np.zeros(0, np.float32), True))
        return out


@pytest.fixture(scope="module")
def schedule(data_dir) -> dict[int, list[tuple]]:
    """Per session, tick by tick: (utterance or None when silent, samples, is_last, ends)."""
    multi, rate = soundfile.read(data_dir / "multi.wav", dtype="float32")
    assert rate == 16000
    endings = (IS_LAST, DROPPED, EMPTY_LAST)
    plan: dict[int, list] = {}
    for k in range(SESSIONS):
        ticks: list = [(None, None, False, False)] * (k % 6)  # staggered starts
        for u in range(UTTERANCES[k % 2]):
            length = (2 + (k + u) % 3) * STRIDE + (k * 1237 + u * 4001) % STRIDE
            ending = endings[(k + u) % 3]
            if ending == EMPTY_LAST:
                length -= length % STRIDE  # a whole number of strides, then the empty piece
            start = (k * 7919 + u * 33331) % (len(multi) - length)
            utt = Utterance(k, u, multi[start : start + length], SHORT if k // 2 % 2 else LONG,
                            (STRIDE, 4000, 2 * STRIDE)[k % 3], ending)
            pieces = utt.pieces()
            ticks += [(utt, samples, last, i == len(pieces) - 1)
                      for i, (samples, last) in enumerate(pieces)]
            ticks += [(None, None, False, False)] * (k % 3)  # a pause before the next one
        plan[k] = ticks
    return plan


def fresh_engine(paraformer_engine, bucket_batches: bool) -> ParaformerStreamingEngine:
    engine = ParaformerStreamingEngine(paraformer_engine.online, bucket_batches=bucket_batches)
    engine.runner.initial_slots = 2
    return engine


def run(engine, schedule) -> dict:
    """Drive all sessions; tokens per (tick, session), slot owners and pool capacities."""
    states: dict[int, object] = {}
    tokens: dict[tuple[int, int], tuple[str, ...]] = {}
    owners: dict[tuple[tuple, int], list[Utterance]] = {}  # (chunk, slot) -> utterances
    capacities: dict[tuple, list[int]] = {}
    for tick in range(max(len(t) for t in schedule.values())):
        sending = [(k, t[tick]) for k, t in schedule.items()
                   if tick < len(t) and t[tick][0] is not None]
        requests = []
        for k, (utt, samples, last, _) in sending:
            if k not in states:
                states[k] = engine.new_stream(StreamOptions(chunk_size=utt.chunk_size))
            requests.append(ChunkRequest(states[k], samples, last))
        fresh = [r.state.online.slot is None for r in requests]
        results = engine.step(requests)
        for (k, (utt, _, _, ends)), req, new, res in zip(sending, requests, fresh, results):
            tokens[(tick, k)] = res.committed
            if new:  # every utterance spans several calls: its slot is still held here
                owners.setdefault((utt.chunk_size, req.state.online.slot), []).append(utt)
            if ends:
                del states[k]  # a dropped stream, or is_last (whose fresh state goes too)
        del requests, results
        for chunk, pool in engine.runner.pools.items():
            capacities.setdefault(chunk, []).append(pool.capacity)
    gc.collect()
    engine.step([])  # the pool takes back what the last dropped handles held
    occupied = {chunk: pool.occupied for chunk, pool in engine.runner.pools.items()}
    return {"tokens": tokens, "owners": owners, "capacities": capacities, "occupied": occupied}


def utterance_reference(engine, utt: Utterance) -> list[str]:
    """FunASR's own streaming inference on the audio the session sent, stride by
    stride; `is_final` only for an utterance that ended with `is_last`."""
    return funasr_tokens(engine, utt.audio, utt.chunk_size, is_final=utt.ending != DROPPED,
                         min_calls=0)


def utterance_tokens(run_out: dict, schedule) -> dict[tuple[int, int], list[str]]:
    out: dict[tuple[int, int], list[str]] = {}
    for (tick, k), toks in sorted(run_out["tokens"].items()):
        utt = schedule[k][tick][0]
        out.setdefault((k, utt.number), []).extend(toks)
    return out


@pytest.fixture(scope="module")
def plain_run(paraformer_engine, schedule):
    return run(fresh_engine(paraformer_engine, bucket_batches=False), schedule)


def test_pooled_streams_equal_funasr_per_stream_inference(paraformer_engine, schedule,
                                                          plain_run):
    got = utterance_tokens(plain_run, schedule)
    utterances = {(u.session, u.number): u for t in schedule.values() for u, *_ in t if u}
    assert len(utterances) == SESSIONS // 2 * sum(UTTERANCES)
    for key, utt in utterances.items():
        assert got.get(key, []) == utterance_reference(paraformer_engine, utt), key
    assert sum(len(t) for t in got.values()) > 100, "the audio should produce tokens"


def test_pool_doubles_and_reuses_slots_of_ended_and_dropped_streams(plain_run):
    for chunk, capacities in plain_run["capacities"].items():
        assert capacities == sorted(capacities)
        assert all(c in (2, 4, 8, 16, 32, 64) for c in capacities), chunk
        assert capacities[-1] > 2, "the pool should have grown"
        owners = [o for (c, _), o in plain_run["owners"].items() if c == chunk]
        assert sum(len(o) for o in owners) > capacities[-1], "slots should have been reused"
    follows_drop = [o for o in plain_run["owners"].values()
                    if any(a.ending == DROPPED for a in o[:-1])]
    follows_last = [o for o in plain_run["owners"].values()
                    if any(a.ending != DROPPED for a in o[:-1])]
    assert follows_drop and follows_last
    assert plain_run["occupied"] == {SHORT: 0, LONG: 0}


def test_bucketed_batches_give_the_same_tokens(paraformer_engine, schedule, plain_run):
    engine = fresh_engine(paraformer_engine, bucket_batches=True)
    sizes: set[int] = set()
    first = engine.model.encoder.encoders0[0].feed_forward.w_1
    hook = first.register_forward_hook(lambda mod, args, out: sizes.add(args[0].shape[0]))
    try:
        bucketed = run(engine, schedule)
    finally:
        hook.remove()
    assert bucketed["tokens"] == plain_run["tokens"]
    assert sizes <= {1, 2, 4, 8, 16, 32, 64}
    assert max(sizes) >= 8, "the sessions should have shared forwards"


def test_bucket_sizes():
    assert [bucket_size(n) for n in (1, 2, 3, 5, 8, 9, 33, 64, 65, 128, 129)] == [
        1, 2, 4, 8, 8, 16, 64, 64, 128, 128, 192]


def test_new_stream_takes_no_slot_until_its_first_step(paraformer_engine):
    engine = fresh_engine(paraformer_engine, bucket_batches=False)
    options = StreamOptions()
    handles = [engine.new_stream(options) for _ in range(5)]
    assert engine.runner.pools == {}, "new_stream must not allocate state"
    assert all(h.online.slot is None for h in handles)
    audio = np.zeros(STRIDE, np.float32)
    (first,) = engine.step([ChunkRequest(handles[0], audio, False)])
    pool = engine.runner.pools[options.chunk_size]
    assert (pool.capacity, pool.occupied) == (2, 1)
    more = [engine.new_stream(options) for _ in range(5)]
    assert (pool.capacity, pool.occupied) == (2, 1)
    assert all(h.online.slot is None for h in more)
    assert engine.runner.row_state(first.state.online)["enc_fill"].item() > 0


def test_dropped_handle_gives_its_slot_to_the_next_stream(paraformer_engine):
    engine = fresh_engine(paraformer_engine, bucket_batches=False)
    options = StreamOptions()
    audio = np.random.default_rng(0).normal(0, 0.1, 3 * STRIDE).astype(np.float32)
    keep, drop = engine.new_stream(options), engine.new_stream(options)
    for i in range(3):
        engine.step([ChunkRequest(s, audio[i * STRIDE : (i + 1) * STRIDE], False)
                     for s in (keep, drop)])
    pool = engine.runner.pools[options.chunk_size]
    dropped_slot = drop.online.slot
    assert pool.occupied == 2
    del drop
    gc.collect()
    newcomer = engine.new_stream(options)
    control = engine.new_stream(options)
    engine.step([ChunkRequest(s, audio[:STRIDE], False) for s in (newcomer, control)])
    assert newcomer.online.slot == dropped_slot
    assert (pool.capacity, pool.occupied) == (4, 3)
    # The reused slot starts from zero, not from the dropped stream's state.
    reused, fresh = (engine.runner.row_state(s.online) for s in (newcomer, control))
    for name, tensor in fresh.items():
        torch.testing.assert_close(reused[name], tensor, msg=name)
