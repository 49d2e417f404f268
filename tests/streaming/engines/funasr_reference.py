"""FunASR's own streaming inference as the token reference for the engine tests."""

from __future__ import annotations

import contextlib
import io

import numpy as np


def funasr_tokens(
    engine, audio: np.ndarray, chunk_size, *, is_final: bool = True, min_calls: int = 1,
) -> list[str]:
    """Tokens of `AutoModel.generate(cache=...)` fed stride by stride, as FunASR's docs stream.

    `is_final` on the last stride only (False: a stream that was dropped, never
    flushed). `inference` returns only joined text, so the tokens are recorded
    from its `generate_chunk` (a pass-through wrapper, the model runs unchanged).
    """
    model = engine.online.model
    tokens: list[str] = []
    original = model.generate_chunk

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        tokens.extend(out)
        return out

    model.generate_chunk = recording
    try:
        stride = chunk_size[1] * 960
        n = max(min_calls, -(-len(audio) // stride))
        cache: dict = {}
        for i in range(n):
            with contextlib.redirect_stdout(io.StringIO()):
                engine.online.generate(
                    input=audio[i * stride : (i + 1) * stride], cache=cache,
                    is_final=is_final and i == n - 1, chunk_size=list(chunk_size),
                    encoder_chunk_look_back=4, decoder_chunk_look_back=1,
                )
    finally:
        del model.generate_chunk
    return tokens
