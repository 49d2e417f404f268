"""Engine construction from the model config (the server's only model code)."""

from __future__ import annotations

import logging
from typing import Any

from server.config import ModelConfig
from server.model_loading import load_funasr_model, pick_device
from streaming.engine import Engine
from streaming.engines.paraformer import ParaformerStreamingEngine

log = logging.getLogger("captiond.engines")


def load_paraformer(
    online: str, offline: str | None = None, punc: str | None = None, device: str = "auto",
    **engine_options: Any,
) -> ParaformerStreamingEngine:
    """Load FunASR models by alias, hub id or local directory (model_loading) and
    wrap them in the engine; ModelNotFoundError says what is missing and why."""
    device = pick_device(device)
    loaded = {
        role: load_funasr_model(name, device=device, role=role) if name else None
        for role, name in (("online", online), ("offline", offline), ("punctuation", punc))
    }
    log.info("loaded %s on %s", ", ".join(n for n in (online, offline, punc) if n), device)
    return ParaformerStreamingEngine(loaded["online"], loaded["offline"], loaded["punctuation"],
                                     device=device, **engine_options)


def build_engine(models: ModelConfig) -> Engine:
    """Load the configured engine; raises ModelNotFoundError with a clear message."""
    if models.engine == "paraformer":
        return load_paraformer(models.online_model, models.offline_model, models.punc_model,
                               models.device, dtype=models.dtype, quantize=models.quantize)
    if models.engine == "whisper":
        from streaming.engines.whisper import WhisperEngine

        return WhisperEngine.from_model(models.whisper_model, device=models.device)
    raise ValueError(f"unknown engine {models.engine!r}")
