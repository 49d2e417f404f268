"""ParaformerStreamingEngine against FunASR's own streaming inference (the reference).

Generated tiny models (random weights, real FunASR classes): the text is
meaningless, the mechanics are the real ones (docs/design.md §5).
"""

from __future__ import annotations

import numpy as np
import pytest

from streaming.engine import ChunkRequest, FinalRequest, StreamOptions
from streaming.postprocess.spacing import join_spaced
from tests.streaming.engines.funasr_reference import funasr_tokens

CHUNK_SIZES = [(5, 10, 5), (0, 10, 5), (0, 8, 4), (8, 8, 4)]  # FunASR's 600 and 480 ms settings


def reference_tokens(engine, audio: np.ndarray, chunk_size) -> list[str]:
    return funasr_tokens(engine, audio, chunk_size)


def engine_tokens(engine, audio: np.ndarray, options: StreamOptions, stride: int) -> list[str]:
    state = engine.new_stream(options)
    n = max(1, -(-len(audio) // stride))
    tokens: list[str] = []
    for i in range(n):
        piece = audio[i * stride : (i + 1) * stride]
        (result,) = engine.step([ChunkRequest(state, piece, is_last=i == n - 1)])
        assert result.tentative == ()
        state = result.state
        tokens += result.committed
    return tokens


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("clip", ["short", "sentence", "odd-length", "exact-strides"])
def test_tokens_equal_funasr_reference(paraformer_engine, speech_clips, clip, chunk_size):
    audio = speech_clips[clip]
    options = StreamOptions(chunk_size=chunk_size)
    stride = paraformer_engine.chunk_samples(options)
    assert stride == chunk_size[1] * 960
    got = engine_tokens(paraformer_engine, audio, options, stride)
    assert got == reference_tokens(paraformer_engine, audio, chunk_size)
    assert got, "speech-length audio should produce tokens"


def test_tokens_do_not_depend_on_how_audio_is_split(paraformer_engine, speech_clips):
    audio = speech_clips["sentence"]
    options = StreamOptions()
    stride = paraformer_engine.chunk_samples(options)
    assert engine_tokens(paraformer_engine, audio, options, 4000) == engine_tokens(
        paraformer_engine, audio, options, stride
    )


def test_batch_results_come_back_in_request_order(paraformer_engine, speech_clips):
    options = StreamOptions()
    stride = paraformer_engine.chunk_samples(options)
    a, b = speech_clips["sentence"][:stride], speech_clips["short"][:stride]
    together = paraformer_engine.step(
        [ChunkRequest(paraformer_engine.new_stream(options), x, is_last=True) for x in (a, b)]
    )
    alone = [
        paraformer_engine.step([ChunkRequest(paraformer_engine.new_stream(options), x, True)])[0]
        for x in (a, b)
    ]
    assert [r.committed for r in together] == [r.committed for r in alone]


def test_empty_last_chunk_flushes(paraformer_engine, speech_clips):
    audio = speech_clips["exact-strides"]
    options = StreamOptions()
    stride = paraformer_engine.chunk_samples(options)
    state = paraformer_engine.new_stream(options)
    tokens: list[str] = []
    for i in range(len(audio) // stride):
        (r,) = paraformer_engine.step([ChunkRequest(state, audio[i * stride : (i + 1) * stride],
                                                    False)])
        state, tokens = r.state, tokens + list(r.committed)
    (r,) = paraformer_engine.step([ChunkRequest(state, np.zeros(0, np.float32), True)])
    tokens += r.committed
    assert tokens == reference_tokens(paraformer_engine, audio, (5, 10, 5))


def test_render_joins_cjk_and_merges_bpe(paraformer_engine):
    assert paraformer_engine.render(["你", "好"]) == "你好"
    assert paraformer_engine.render(["ab@@", "out", "the"]).strip() == "about the"
    assert paraformer_engine.render([]) == ""


def test_finalize_returns_punctuated_text_with_sentences(paraformer_engine, speech_clips):
    (final,) = paraformer_engine.finalize([FinalRequest(speech_clips["sentence"])])
    assert final.text
    assert final.text[-1] in "。？.?"
    assert final.sentences and all(s.punc for s in final.sentences)
    # One spacing rule: the text is exactly its sentences joined (docs/design.md §4).
    assert final.text == join_spaced(s.text + s.punc for s in final.sentences)
    assert final.token_spans_ms
    ends = [s.end_ms for s in final.sentences]
    assert ends == sorted(ends)


def test_finalize_forwards_hotwords_to_seaco(paraformer_engine, speech_clips):
    model = paraformer_engine.offline.model
    seen: list = []
    original = model.generate_hotwords_list

    def recording(hotwords, *args, **kwargs):
        seen.append(hotwords)
        return original(hotwords, *args, **kwargs)

    model.generate_hotwords_list = recording
    try:
        options = StreamOptions(hotwords={"阿里巴巴": 20, "通义": 10})
        paraformer_engine.finalize([FinalRequest(speech_clips["short"], options)])
        paraformer_engine.finalize([FinalRequest(speech_clips["short"])])
    finally:
        del model.generate_hotwords_list
    assert seen == ["阿里巴巴 通义", None]


def test_finalize_of_silence_is_empty(paraformer_engine):
    (final,) = paraformer_engine.finalize([FinalRequest(np.zeros(100, np.float32))])
    assert final.text == "" and final.sentences == ()


def test_cuda_graphs_need_a_cuda_device(test_models_dir):
    from server.config import ParaformerOptions
    from server.engines import load_paraformer

    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        load_paraformer(ParaformerOptions(
            str(test_models_dir / "paraformer-streaming"), None, None, cuda_graphs=True,
        ), device="cpu")
