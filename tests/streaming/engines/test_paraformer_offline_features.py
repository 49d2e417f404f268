"""BatchedWavFrontend against FunASR's offline `WavFrontend`, and the final pass
with it against the final pass with FunASR's frontend (docs/design.md §6)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from server.config import ParaformerOptions
from server.engines import load_paraformer_final
from streaming.engine import FinalRequest, StreamOptions
from streaming.engines import funasr_adapter
from streaming.engines.paraformer_offline_features import BatchedWavFrontend
from tests.streaming.engines.test_paraformer_features import FIXTURES, TOLERANCE, load

FRAME = 400  # one 25 ms fbank frame at 16 kHz


@pytest.fixture(scope="module")
def funasr_final(test_models_dir):
    """A final pass over its own offline model with FunASR's frontend (the reference)."""
    return load_paraformer_final(ParaformerOptions(
        str(test_models_dir / "paraformer-streaming"),
        str(test_models_dir / "paraformer-offline"), str(test_models_dir / "ct-punc"),
        frontend="funasr"), device="cpu")


@pytest.fixture(scope="module")
def utterances(data_dir) -> list[np.ndarray]:
    """The fixtures whole, random cuts of them, and lengths at the frame edges
    (one frame, one frame and a sample, one LFR stack short, odd)."""
    whole = [load(data_dir, name) for name in FIXTURES]
    rng = np.random.default_rng(1)
    cuts = [a[int(rng.integers(0, 4000)):][: int(rng.integers(FRAME, 60_000))] for a in whole]
    edges = [whole[0][:n] for n in (FRAME, FRAME + 1, FRAME + 5 * 160, 12_345)]
    return whole + cuts + edges


def padded(audio: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
    return pad_sequence([torch.from_numpy(a) for a in audio], batch_first=True), \
        [len(a) for a in audio]


def test_batched_offline_features_equal_funasr_per_utterance(funasr_final, utterances):
    funasr = funasr_adapter.frontend(funasr_final.offline)
    waveforms, lengths = padded(utterances)
    expected, expected_lengths = funasr(waveforms, lengths)
    features, feature_lengths = BatchedWavFrontend(funasr, "cpu")(waveforms, lengths)
    assert feature_lengths.tolist() == expected_lengths.tolist()
    assert features.shape == expected.shape
    torch.testing.assert_close(features, expected, rtol=0, atol=TOLERANCE)


def test_a_batch_with_an_utterance_under_one_frame_is_left_to_funasr(funasr_final, utterances):
    """FunASR shortens the frame for such an utterance; only its own frontend does that."""
    funasr = funasr_adapter.frontend(funasr_final.offline)
    waveforms, lengths = padded([utterances[0], utterances[0][: FRAME - 1]])
    expected, _ = funasr(waveforms, lengths)
    features, _ = BatchedWavFrontend(funasr, "cpu")(waveforms, lengths)
    assert torch.equal(features, expected)


def test_finals_with_batched_features_equal_finals_with_funasrs(paraformer_engine, funasr_final,
                                                                data_dir):
    """Same text, token times and sentences over a batch of every fixture."""
    batch = [FinalRequest(load(data_dir, name), StreamOptions()) for name in FIXTURES]
    assert isinstance(funasr_adapter.frontend(paraformer_engine.offline), BatchedWavFrontend)
    assert not isinstance(funasr_adapter.frontend(funasr_final.offline), BatchedWavFrontend)
    finals = paraformer_engine.finalize(batch)
    assert finals == funasr_final.finalize(batch)
    assert all(final.text and final.token_spans_ms for final in finals)
    # FunASR restores a model's settings before each inference: still ours after it
    assert isinstance(funasr_adapter.frontend(paraformer_engine.offline), BatchedWavFrontend)


def test_the_final_pass_keeps_the_thread_count_its_lane_set(paraformer_engine, data_dir):
    """FunASR's generate sets torch's threads to the model's ncpu; the final pass
    runs with half the online lane's (server/engine_thread.py), and keeps them."""
    def finalize_with_one_thread() -> int:
        torch.set_num_threads(1)
        paraformer_engine.finalize([FinalRequest(load(data_dir, "utt01.wav"), StreamOptions())])
        return torch.get_num_threads()

    with ThreadPoolExecutor(1) as lane:
        assert lane.submit(finalize_with_one_thread).result() == 1
