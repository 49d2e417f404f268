"""Engine construction from the model config (the server's only model code)."""

from __future__ import annotations

from server.config import ModelConfig
from streaming.engines.base import Engine


def build_engine(models: ModelConfig) -> Engine:
    """Load the configured engine; raises ModelNotFoundError with a clear message."""
    if models.engine == "paraformer":
        from streaming.engines.paraformer import ParaformerStreamingEngine

        return ParaformerStreamingEngine.from_models(
            online=models.online_model,
            offline=models.offline_model,
            punc=models.punc_model,
            device=models.device,
        )
    if models.engine == "whisper":
        from streaming.engines.whisper import WhisperEngine

        return WhisperEngine.from_model(models.whisper_model, device=models.device)
    raise ValueError(f"unknown engine {models.engine!r}")
