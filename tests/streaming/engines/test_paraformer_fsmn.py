"""FSMN memory blocks computed as an unfold and a weighted sum (`--fsmn-conv unfold`).

The option exists for GPUs (no per-shape cuDNN plans); here it must give the
same results as FunASR's `Conv1d` and the same tokens as FunASR's inference.
"""

from __future__ import annotations

import pytest
import soundfile
import torch

from server.config import ParaformerOptions
from server.engines import load_paraformer
from streaming.engine import StreamOptions
from streaming.engines.paraformer_speed import NativeDepthwiseConv1d, UnfoldDepthwiseConv1d
from tests.streaming.engines.test_paraformer_engine import engine_tokens, reference_tokens


@pytest.fixture(scope="module")
def unfold_engine(test_models_dir):
    return load_paraformer(ParaformerOptions(
        str(test_models_dir / "paraformer-streaming"), offline_model=None, punc_model=None,
        fsmn_conv="unfold"), device="cpu")


def test_every_fsmn_block_is_swapped_and_computes_the_convolution(unfold_engine):
    blocks = [m.fsmn_block for m in unfold_engine.model.modules() if hasattr(m, "fsmn_block")]
    assert blocks and all(isinstance(b, UnfoldDepthwiseConv1d) for b in blocks)
    block = blocks[0]
    channels, _, kernel = block.weight.shape
    conv = torch.nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)
    conv.weight = block.weight
    x = torch.randn(3, channels, 25)
    with torch.no_grad():
        torch.testing.assert_close(block(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [(5, 10, 5), (0, 10, 5)])
@pytest.mark.parametrize("fixture", ["utt01", "utt04", "multi"])
def test_unfold_tokens_equal_funasr(unfold_engine, paraformer_engine, data_dir, fixture,
                                    chunk_size):
    audio, rate = soundfile.read(data_dir / f"{fixture}.wav", dtype="float32")
    options = StreamOptions(chunk_size=chunk_size)
    got = engine_tokens(unfold_engine, audio, options, unfold_engine.chunk_samples(options))
    assert got == reference_tokens(paraformer_engine, audio, chunk_size)


def test_native_fsmn_option_wraps_every_block_and_keeps_funasr_tokens(
        test_models_dir, paraformer_engine, data_dir):
    """`--fsmn-conv native` only switches cuDNN off around the same Conv1d: same tokens."""
    engine = load_paraformer(ParaformerOptions(
        str(test_models_dir / "paraformer-streaming"), offline_model=None, punc_model=None,
        fsmn_conv="native"), device="cpu")
    blocks = [m.fsmn_block for m in engine.model.modules() if hasattr(m, "fsmn_block")]
    assert blocks and all(isinstance(b, NativeDepthwiseConv1d) for b in blocks)
    audio, _ = soundfile.read(data_dir / "utt01.wav", dtype="float32")
    options = StreamOptions()
    got = engine_tokens(engine, audio, options, engine.chunk_samples(options))
    assert got == reference_tokens(paraformer_engine, audio, (5, 10, 5))


def test_fsmn_option_reaches_the_offline_and_punctuation_models(test_models_dir, data_dir):
    """The final pass has FSMN blocks too (offline SANM encoder, CT-Transformer): the
    option swaps them as well, and the finals are the ones `Conv1d` gives."""
    from streaming.engine import FinalRequest

    def engine(kind):
        return load_paraformer(ParaformerOptions(
            str(test_models_dir / "paraformer-streaming"),
            offline_model=str(test_models_dir / "paraformer-offline"),
            punc_model=str(test_models_dir / "ct-punc"), fsmn_conv=kind), device="cpu")

    native, conv = engine("native"), engine("conv")
    for model in (native.offline, native.final_pass.punctuator.model):
        blocks = [m.fsmn_block for m in model.model.modules() if hasattr(m, "fsmn_block")]
        assert blocks and all(isinstance(b, NativeDepthwiseConv1d) for b in blocks)
    audio, _ = soundfile.read(data_dir / "multi.wav", dtype="float32")
    (got,) = native.finalize([FinalRequest(audio)])
    (want,) = conv.finalize([FinalRequest(audio)])
    assert got.text == want.text and got.text
