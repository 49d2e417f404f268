"""BatchedOnlineFrontend against FunASR's per-stream `extract_fbank` (docs/design.md §6).

Several streams share every `extract` call, start at different rounds and are
cut into 600 ms strides, odd pieces (shorter than a frame, longer than a
stride), an empty last piece and a short last stride. Each call's features must
equal what FunASR's `WavFrontendOnline` gives that stream with its own cache,
and FunASR's streaming model must produce the same tokens from them.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import soundfile
import torch

from streaming.engines.paraformer_features import (
    BatchedOnlineFrontend,
    _kaldi_mel_banks,
    _mel_bands,
)
from tests.streaming.engines.test_paraformer_engine import reference_tokens

STRIDE = 9600  # 600 ms: chunk_size[1] = 10 units of 960 samples
# Both sides compute a float32 log-mel (kaldi-native-fbank's own FFT, torch's
# rfft here). Observed: max |diff| ≈ 1e-4 after CMVN on these plans, ≈ 3e-4
# over random splits of multi.wav, from FFT rounding in frames with little
# energy; a wrong frame, window, mel bank or LFR index is off by 0.1 or more.
# 1e-3 keeps a 3x margin over the worst seen.
TOLERANCE = 1e-3
FIXTURES = ["utt01.wav", "utt02.wav", "utt03.wav", "utt04.wav", "utt05.wav", "multi.wav"]


def load(data_dir, name: str) -> np.ndarray:
    samples, rate = soundfile.read(data_dir / name, dtype="float32")
    assert rate == 16000
    return samples


def funasr_features(frontend, cache: dict, audio: np.ndarray, is_final: bool):
    """What the batched engine's `_row` gets from FunASR: (T, D), or None without a matrix."""
    from funasr.utils.load_utils import extract_fbank

    with contextlib.redirect_stdout(io.StringIO()):  # kaldi-native-fbank prints a debug line
        feats, _ = extract_fbank([torch.from_numpy(audio)], data_type="sound",
                                 frontend=frontend, cache=cache, is_final=is_final)
    return feats[0] if feats.dim() == 3 else None


def strides(audio: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    cuts = range(0, len(audio), STRIDE)
    return [(audio[c : c + STRIDE], c + STRIDE >= len(audio)) for c in cuts]


def odd_pieces(audio: np.ndarray, seed: int) -> list[tuple[np.ndarray, bool]]:
    """Pieces of 1 … 14000 samples: some hold no whole frame, some more than a stride."""
    rng = np.random.default_rng(seed)
    sizes = [17, 399, 400, 161]  # no frame, still none, the first frame, one more frame
    while sum(sizes) < len(audio):
        sizes.append(int(rng.integers(1, 14000)))
    cuts = np.cumsum([0] + sizes)
    pieces = [audio[a:b] for a, b in zip(cuts[:-1], cuts[1:]) if a < len(audio)]
    return [(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]


@pytest.fixture(scope="module")
def frontend(paraformer_engine):
    return paraformer_engine.frontend


@pytest.fixture(scope="module")
def plans(data_dir) -> list[list[tuple[np.ndarray, bool]]]:
    """Per stream its (audio, is_final) calls; stream i joins at round i."""
    utt = [load(data_dir, name) for name in FIXTURES]
    multi = utt[-1]
    return [
        [(a, False) for a, _ in strides(utt[0])] + [(np.zeros(0, np.float32), True)],
        odd_pieces(utt[1], seed=1),
        strides(utt[2]),  # the last stride is short
        strides(multi[3 * STRIDE + 4321 :]),  # joins mid-utterance, off the stride grid
        odd_pieces(utt[3], seed=2),
        strides(np.concatenate((utt[4], utt[4][:700]))),  # a last stride under 960 samples
    ]


def run_lock_step(frontend, plans, device: str = "cpu", dtype=torch.float32):
    """Both sides over the plans; per (round, stream): (ours, FunASR's)."""
    batched = BatchedOnlineFrontend(frontend, device, dtype)
    states = [batched.new_state() for _ in plans]
    caches: list[dict] = [{} for _ in plans]
    pairs = {}
    for r in range(max(i + len(p) for i, p in enumerate(plans))):
        live = [i for i, p in enumerate(plans) if 0 <= r - i < len(p)]
        calls = [plans[i][r - i] for i in live]
        ours = batched.extract([states[i] for i in live], [a for a, _ in calls],
                               [f for _, f in calls])
        for i, (audio, final), got in zip(live, calls, ours):
            pairs[(r, i)] = (got, funasr_features(frontend, caches[i], audio, final))
    return pairs


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_batched_features_equal_funasr_per_stream(frontend, plans, device):
    pairs = run_lock_step(frontend, plans, device)
    outcomes = {"none": 0, "frames": 0}
    for key, (ours, ref) in pairs.items():
        if ref is None:
            assert ours is None, key
            outcomes["none"] += 1
            continue
        assert ours is not None and ours.shape == ref.shape, (key, ref.shape)
        assert ours.dtype == torch.float32 and ours.device.type == device
        if ref.numel():
            assert (ours.cpu() - ref).abs().max().item() <= TOLERANCE, key
            outcomes["frames"] += 1
    assert outcomes["none"] >= 3, "odd pieces should have produced calls without features"
    assert outcomes["frames"] >= 40


def test_final_call_with_too_few_frames_left_gives_an_empty_matrix(frontend):
    # One stride leaves one fbank frame of look-back; the empty final call then
    # has fewer than (lfr_m - 1) / 2 + 1 frames: FunASR returns a (0, D) matrix.
    audio = np.sin(np.arange(STRIDE) * 0.05).astype(np.float32) * 0.3
    plan = [[(audio, False), (np.zeros(0, np.float32), True)]]
    pairs = run_lock_step(frontend, plan)
    ours, ref = pairs[(1, 0)]
    assert ref is not None and ref.shape == (0, frontend.n_mels * frontend.lfr_m)
    assert ours is not None and ours.shape == ref.shape


def test_half_precision_output_is_the_float32_features_rounded(frontend, plans):
    full = run_lock_step(frontend, plans[:2])
    half = run_lock_step(frontend, plans[:2], dtype=torch.bfloat16)
    for key, (ours, _) in half.items():
        if ours is None:
            assert full[key][0] is None
            continue
        assert ours.dtype == torch.bfloat16
        torch.testing.assert_close(ours, full[key][0].to(torch.bfloat16))


def funasr_calls(audio: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """The extract_fbank calls `reference_tokens` makes FunASR's inference do."""
    pieces = [audio[c : c + STRIDE] for c in range(0, len(audio), STRIDE)]
    calls = [(p, False) for p in pieces[:-1]]
    last = pieces[-1]
    if len(last) == STRIDE:  # a whole stride, then an empty final one (the tail, no fbank)
        return calls + [(last, False)]
    return calls + ([(last, True)] if len(last) >= 960 else [])


@pytest.mark.parametrize("chunk_size", [(5, 10, 5), (0, 10, 5)])
def test_funasr_streaming_gives_the_same_tokens_from_batched_features(
    paraformer_engine, data_dir, monkeypatch, chunk_size,
):
    from funasr.models.paraformer_streaming import model as streaming_model

    audios = [load(data_dir, name) for name in FIXTURES]
    plans = [funasr_calls(a) for a in audios]
    batched = BatchedOnlineFrontend(paraformer_engine.frontend, "cpu")
    states = [batched.new_state() for _ in plans]
    served: list[list] = [[] for _ in plans]  # per stream: (audio, is_final, features)
    for r in range(max(i + len(p) for i, p in enumerate(plans))):  # stream i joins at round i
        live = [i for i, p in enumerate(plans) if 0 <= r - i < len(p)]
        calls = [plans[i][r - i] for i in live]
        feats = batched.extract([states[i] for i in live], [a for a, _ in calls],
                                [f for _, f in calls])
        for i, (audio, final), f in zip(live, calls, feats):
            served[i].append((audio, final, f))

    expected = [reference_tokens(paraformer_engine, a, chunk_size) for a in audios]
    queue: list = []

    def batched_features(data, *, is_final, **_):
        audio, final, feats = queue.pop(0)
        # The call FunASR makes must be the one the batch computed features for.
        assert final == is_final and np.array_equal(data[0].numpy(), audio)
        return feats[None], torch.tensor([feats.shape[0]], dtype=torch.int32)

    monkeypatch.setattr(streaming_model, "extract_fbank", batched_features)
    for audio, calls, want in zip(audios, served, expected):
        queue[:] = calls
        assert reference_tokens(paraformer_engine, audio, chunk_size) == want
        assert not queue, "FunASR should have asked for every stride's features"
    assert sum(len(t) for t in expected) > 20, "the fixtures should produce tokens"


def test_mel_bands_cover_every_weight_and_give_the_full_product(frontend):
    """The CPU's mel product in bands over the bins each band's filters use."""
    banks = _kaldi_mel_banks(frontend.n_mels, 512, float(frontend.fs))
    bands = _mel_bands(banks, torch.device("cpu"))
    covered = np.zeros_like(banks)
    for (low, high), (first, last), weights in bands:
        covered[first:last, low:high] = weights.numpy().T
    assert np.array_equal(covered, banks), "a band left out a filter weight"
    assert sum(high - low for (low, high), _, _ in bands) < banks.shape[1] * 0.4 * len(bands)
    power = torch.rand(300, banks.shape[1], generator=torch.Generator().manual_seed(3)) ** 4 * 1e6
    full = power @ torch.from_numpy(banks.T.copy())
    banded = torch.empty_like(full)
    for (low, high), (first, last), weights in bands:
        banded[:, first:last] = power[:, low:high] @ weights
    torch.testing.assert_close(banded, full, rtol=1e-5, atol=1e-3)
