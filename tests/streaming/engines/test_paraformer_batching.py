"""Batched `step`/`finalize` of the Paraformer engine against batch-size-1 runs (docs/design.md §6).

Eight streams with different audio start at different ticks (so they sit at
different positions with different look-back fill), use both chunk settings,
send their audio in strides, in pieces shorter than a stride and in double
strides, and finish at different ticks, one of them with an empty last piece.
Batched tokens must equal the one-stream-at-a-time tokens chunk by chunk, and
the encoder outputs must agree to float tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
import torch

from streaming.engine import ChunkRequest, FinalRequest, StreamOptions
from tests.streaming.engines.test_paraformer_engine import reference_tokens

STRIDE = 9600  # 600 ms at 16 kHz: chunk_size[1] = 10 units of 960 samples
SHORT, LONG = (5, 10, 5), (0, 10, 5)


@dataclass
class Plan:
    name: str
    audio: np.ndarray
    chunk_size: tuple[int, int, int]
    start_tick: int
    piece: int  # samples per step call
    empty_last: bool = False  # send the whole audio, then an empty is_last piece

    def pieces(self) -> list[tuple[np.ndarray, bool]]:
        cuts = list(range(0, len(self.audio), self.piece))
        out = [(self.audio[c : c + self.piece], False) for c in cuts]
        if self.empty_last:
            return out + [(np.zeros(0, np.float32), True)]
        return out[:-1] + [(out[-1][0], True)]


def load(data_dir, name: str) -> np.ndarray:
    samples, rate = soundfile.read(data_dir / name, dtype="float32")
    assert rate == 16000
    return samples


@pytest.fixture(scope="module")
def plans(data_dir) -> list[Plan]:
    utt = [load(data_dir, f"utt0{i}.wav") for i in range(1, 6)]
    multi = load(data_dir, "multi.wav")
    exact = multi[4000 : 4000 + 5 * STRIDE]  # a whole number of strides
    return [
        Plan("utt01", utt[0], SHORT, 0, STRIDE),
        Plan("utt02", utt[1], SHORT, 1, STRIDE),
        Plan("utt03", utt[2], LONG, 2, STRIDE),
        Plan("utt04", utt[3], SHORT, 0, 4000),  # some calls carry no whole stride
        Plan("utt05", utt[4], LONG, 3, STRIDE),
        Plan("multi-a", exact, SHORT, 1, STRIDE, empty_last=True),
        Plan("multi-b", multi[64000:115000], SHORT, 4, 2 * STRIDE),  # two strides per call
        Plan("multi-c", multi[126000:], LONG, 5, STRIDE),
    ]


def run(engine, plans: list[Plan], batched: bool) -> tuple[dict, dict, list]:
    """Drive every plan tick by tick; (tokens per tick, encoder outputs, groups run)."""
    names: dict[int, str] = {}
    encoder_out: dict[str, list[torch.Tensor]] = {p.name: [] for p in plans}
    runner = engine.runner
    groups: list[tuple[int, bool]] = []  # (rows, some final row padded to the group)
    original_group, original_encode = runner._run_group, runner._encode

    def counting(rows):
        groups.append((len(rows), len({r.frames for r in rows}) > 1))
        return original_group(rows)

    def recording(batch, n, *args):  # each real row's encoder output, as FunASR's would be
        enc, frames_valid = original_encode(batch, n, *args)
        for row, out in zip(batch[:n], enc):
            encoder_out[names[id(row.handle)]].append(out[: row.frames].clone())
        return enc, frames_valid

    runner._run_group, runner._encode = counting, recording
    states = {p.name: engine.new_stream(StreamOptions(chunk_size=p.chunk_size)) for p in plans}
    queues = {p.name: p.pieces() for p in plans}
    tokens: dict[tuple[int, str], tuple[str, ...]] = {}
    try:
        for tick in range(max(p.start_tick + len(queues[p.name]) for p in plans)):
            live = [p.name for p in plans
                    if 0 <= tick - p.start_tick < len(queues[p.name])]
            requests = []
            for name in live:
                samples, last = queues[name][tick - next(
                    p.start_tick for p in plans if p.name == name)]
                names[id(states[name].online)] = name
                requests.append(ChunkRequest(states[name], samples, last))
            results = (engine.step(requests) if batched
                       else [engine.step([r])[0] for r in requests])
            for name, res in zip(live, results):
                tokens[(tick, name)] = res.committed
                states[name] = res.state
    finally:
        del runner._run_group, runner._encode
    return tokens, encoder_out, groups


@pytest.fixture(scope="module")
def both_runs(paraformer_engine, plans):
    return run(paraformer_engine, plans, batched=True), run(paraformer_engine, plans, False)


def test_batched_tokens_equal_one_stream_at_a_time_chunk_by_chunk(both_runs):
    (batched, _, groups), (alone, _, _) = both_runs
    assert max(n for n, _ in groups) >= 4, "the streams should have shared forwards"
    assert any(padded for _, padded in groups), "a short final should have joined a group"
    assert batched == alone
    assert sum(len(t) for t in batched.values()) > 20, "the audio should produce tokens"


def test_batched_encoder_outputs_match_one_stream_at_a_time(both_runs):
    (_, batched, _), (_, alone, _) = both_runs
    for name in batched:
        assert len(batched[name]) == len(alone[name]) > 0
        for got, want in zip(batched[name], alone[name]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_batched_streams_equal_funasr_reference(paraformer_engine, plans, both_runs):
    (batched, encoder_out, _), _ = both_runs
    model = paraformer_engine.online.model
    original = model.encode_chunk
    for plan in plans:
        recorded: list[torch.Tensor] = []

        def recording(*args, recorded=recorded, **kwargs):
            out = original(*args, **kwargs)
            recorded.append(out[0][0].clone())
            return out

        model.encode_chunk = recording
        try:
            want = reference_tokens(paraformer_engine, plan.audio, plan.chunk_size)
        finally:
            del model.encode_chunk
        got = [t for (_, name), toks in sorted(batched.items()) if name == plan.name for t in toks]
        assert got == want, plan.name
        assert len(recorded) == len(encoder_out[plan.name])
        for mine, funasr in zip(encoder_out[plan.name], recorded):
            torch.testing.assert_close(mine, funasr, rtol=1e-4, atol=1e-5)


def test_batched_finalize_equals_one_by_one(paraformer_engine, plans):
    hot_a = StreamOptions(hotwords={"阿里巴巴": 20, "meeting": 10})
    hot_b = StreamOptions(hotwords={"通义": 10})
    options = [StreamOptions(), hot_a, StreamOptions(), hot_b, StreamOptions(), hot_a]
    batch = [FinalRequest(p.audio, o) for p, o in zip(plans[:6], options)]
    model = paraformer_engine.offline.model
    calls: list = []
    original = model.inference

    def recording(data_in, *args, **kwargs):
        calls.append((len(data_in), kwargs.get("hotword")))
        return original(data_in, *args, **kwargs)

    model.inference = recording
    try:
        together = paraformer_engine.finalize(batch)
    finally:
        model.inference = original  # captiond's (paraformer_offline), not FunASR's
    alone = [paraformer_engine.finalize([req])[0] for req in batch]
    assert sorted(calls, key=str) == sorted(
        [(3, None), (2, "阿里巴巴 meeting"), (1, "通义")], key=str)
    assert together == alone
    assert all(r.text and r.token_spans_ms for r in together)
