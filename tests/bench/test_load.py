"""The load generator (bench/load.py) measures what it claims.

Its capacity search is checked against known thresholds; its clients run in
real processes against `bench/load_sink.py`, a server that answers at once,
so every stream's frames must arrive at real-time pace and every partial and
end of stream must be timed.
"""

from __future__ import annotations

import pytest

from bench.load import parse_args, run_once, search
from bench.load_server import SINK, ServerProcess
from tests.conftest import wav_pcm16


@pytest.mark.parametrize("capacity", [0, 1, 7, 100, 1000, 2048])
@pytest.mark.parametrize("start", [1, 64, 4096])
def test_search_finds_the_largest_held_count_in_few_runs(capacity, start):
    tried = []

    def held(n: int) -> bool:
        tried.append(n)
        return n <= capacity

    found = search(held, start, max_streams=2048, precision=0.05)
    assert capacity - max(1, int(0.05 * capacity)) <= found <= capacity
    assert all(1 <= n <= 2048 for n in tried)
    assert len(tried) <= 2 * 12 + 2  # doubling/halving then bisection: logarithmic


def test_clients_stream_at_real_time_pace_and_time_every_stream():
    args = parse_args(["--configs", "sink", "--duration", "3", "--ramp", "0.6",
                       "--client-procs", "2", "--results-dir", "/dev/null"])
    pcm = wav_pcm16("multi.wav")[0]
    streams = 12
    with ServerProcess([], SINK) as sink:
        server, reports = run_once(sink, args, pcm, streams, seed=1)
        received = sink.health()["frames"]
    assert [r.streams for r in reports] == [6, 6]
    assert sum(r.connected for r in reports) == streams
    assert not any(r.errors for r in reports)
    sent = sum(r.frames_sent for r in reports)
    assert sent == received == streams * round(3 / 0.060)  # 3 s of 60 ms frames each
    # paced, not flooded: about 12 streams' worth of frames per second in the window
    # (a loaded machine makes the clocks late, never early)
    assert server["frames_per_s"] <= 1.1 * streams / 0.060
    assert server["frames_per_s"] >= 0.5 * streams / 0.060
    assert sum(len(r.end_lags) for r in reports) == streams  # each is_final timed
    partials = [d for r in reports for d in r.partial_delays]
    # the sink answers each 600 ms of audio at once: the window's partials are all timed
    assert len(partials) >= 0.5 * streams * server["window_s"] / 0.6
    assert all(d >= 0 for d in partials)
