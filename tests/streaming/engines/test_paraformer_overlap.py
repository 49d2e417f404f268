"""The encoder's overlap frames, kept as the first layer's attention projection (paraformer_batch).

At every stride FunASR feeds a stream's overlap frames (chunk_size[0] +
chunk_size[2] feature frames of the stride before) into the encoder again,
and its first layer projects them again. The batched engine keeps their
projection instead of the frames. Checked here: the kept projection is the
first layer's projection of FunASR's own overlap cache; and a model whose
first layer adds its input back (encoder width equal to the feature width),
for which the frames themselves must be kept too, still gives FunASR's tokens.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from server.config import ParaformerOptions
from server.engines import load_paraformer
from server.model_generator import make_vocab, online_config, write_model_dir
from streaming.engine import ChunkRequest, StreamOptions
from streaming.engines.paraformer import ParaformerStreamingEngine
from streaming.engines.paraformer_layers import attention_projection
from tests.streaming.engines.test_paraformer_batching import plans, run  # noqa: F401
from tests.streaming.engines.test_paraformer_engine import reference_tokens

STRIDE = 9600
SHORT = (5, 10, 5)


@pytest.fixture(scope="module")
def residual_engine(tmp_path_factory) -> ParaformerStreamingEngine:
    """The tiny online model with its encoder as wide as its input (7 x 80 LFR features)."""
    config = online_config("tiny")
    width = config["frontend_conf"]["n_mels"] * config["frontend_conf"]["lfr_m"]
    config["encoder_conf"]["output_size"] = width
    config["predictor_conf"]["idim"] = width
    out = tmp_path_factory.mktemp("models") / "residual-first-layer"
    write_model_dir(out, config, make_vocab(0), seed=5, asr=True)
    return load_paraformer(ParaformerOptions(str(out), offline_model=None, punc_model=None),
                           device="cpu")


def test_kept_projection_is_the_first_layer_projection_of_funasr_overlap(
    paraformer_engine, plans,  # noqa: F811
):
    audio = plans[0].audio
    engine = ParaformerStreamingEngine(paraformer_engine.online)
    state = engine.new_stream(StreamOptions(chunk_size=SHORT))
    cache: dict = {}
    for i in range(3):
        piece = audio[i * STRIDE : (i + 1) * STRIDE]
        (result,) = engine.step([ChunkRequest(state, piece, False)])
        state = result.state
        with contextlib.redirect_stdout(io.StringIO()):
            paraformer_engine.online.generate(
                input=piece, cache=cache, is_final=False, chunk_size=list(SHORT),
                encoder_chunk_look_back=4, decoder_chunk_look_back=1)
    kept = engine.runner.row_state(state.online)
    assert "feats" not in kept, "a first layer without a residual needs no input frames"
    first = engine.runner.model.encoder.encoders0[0]
    with torch.inference_mode():
        want = attention_projection(first, cache["encoder"]["feats"])[0]
    assert kept["overlap_qkv"].shape == want.shape == (SHORT[0] + SHORT[2], want.shape[1])
    torch.testing.assert_close(kept["overlap_qkv"], want, rtol=1e-4, atol=1e-5)


def test_first_layer_with_a_residual_keeps_its_input_frames_and_funasr_tokens(
    residual_engine, plans,  # noqa: F811
):
    first = residual_engine.runner.model.encoder.encoders0[0]
    assert first.in_size == first.size, "the model should exercise the residual path"
    batched, _, groups = run(residual_engine, plans, batched=True)
    assert max(n for n, _ in groups) >= 4, "the streams should have shared forwards"
    total = 0
    for plan in plans:
        got = [t for (_, name), toks in sorted(batched.items()) if name == plan.name
               for t in toks]
        assert got == reference_tokens(residual_engine, plan.audio, plan.chunk_size), plan.name
        total += len(got)
    assert total > 20, "the audio should produce tokens"
    state = residual_engine.new_stream(StreamOptions(chunk_size=SHORT))
    (result,) = residual_engine.step([ChunkRequest(state, plans[0].audio[:STRIDE], False)])
    assert {"feats", "overlap_qkv"} <= residual_engine.runner.row_state(result.state.online).keys()
