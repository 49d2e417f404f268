"""Soak: N speakers come and go for M minutes; nothing they said may be lost.

A real `captiond serve` process (loopback only, the tiny generated model by
default) takes speakers that connect, stream, drop, close and reconnect at
random (bench/soak_clients.py), while one viewer per room watches the whole
time. At the end every stream is compared utterance by utterance: the clips
its speaker started against the finals its room received (and, for streams
that ended with `is_speaking: false`, the finals the speaker got itself):
- lost: a clip with no final; duplicated: a final received twice;
- extra: finals beyond the clips sent; misplaced: a final whose times do not
  overlap the clip it stands for.
The server's RSS, open file descriptors and threads are sampled every few
seconds; growth is reported from the first sample after warm-up to the last
one with speakers on, and again once everyone left (descriptors should be
back where they started). The server's log is kept and its warnings, errors
and tracebacks counted. The transcript store (a scratch SQLite file) is read
at the end and compared with what the viewers received: every final received
is stored, with its id and text, and no utterance is stored twice.

    python -m bench.soak --streams 20 --seconds 60           # the short soak (tests too)
    python -m bench.soak --streams 100 --seconds 1800 --label long

Writes one JSON (the exact command, figures, per-kind counts and the samples)
under bench/results/<date>-soak-<label>/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import shlex
import sys
import time
from pathlib import Path

import soundfile

from bench.load import _raise_open_files_limit, ensure_models
from bench.load_server import ROOT, machine
from bench.soak_clients import Plan, RoomViewer, SpeakerLog, speaker
from bench.soak_ledger import compare, compare_store, errors_by_kind
from bench.soak_server import SampledServer

CLIPS = [f"utt0{i}.wav" for i in range(1, 6)]
UPLOAD = "utt01.mp3"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=20, help="speakers at once")
    p.add_argument("--seconds", type=float, default=60.0, help="how long speakers keep coming")
    p.add_argument("--rooms", type=int, default=4)
    p.add_argument("--drop-share", type=float, default=0.3,
                   help="share of live streams that end abruptly (drop or close frame)")
    p.add_argument("--upload-share", type=float, default=0.1,
                   help="share of streams that upload an mp3 file instead")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS / fd sampling interval")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", choices=["tiny", "large"], default="tiny")
    p.add_argument("--model-dir", type=Path, default=None)
    p.add_argument("--admission", action="store_true",
                   help="keep admission control on (refusals are then counted as errors); off "
                        "by default: the soak looks for loss, bench/load.py for capacity")
    p.add_argument("--serve-args", default="", help="more `captiond serve` options")
    p.add_argument("--label", default="short")
    p.add_argument("--results", type=Path, default=None, help="the JSON to write")
    args = p.parse_args(argv)
    args.model_dir = args.model_dir or ROOT / "bench" / "out" / f"models-{args.size}"
    return args


def serve_args(args: argparse.Namespace) -> list[str]:
    models = ensure_models(args.model_dir, args.size)
    admission = [] if args.admission else ["--no-calibrate", "--no-admission"]
    # all speakers and viewers share 127.0.0.1: lift the per-address cap (default 64)
    return ["--device", "cpu", "--workers", "1", *admission,
            "--max-connections-per-address", "1000000",
            "--online-model", str(models / "paraformer-streaming"),
            "--offline-model", str(models / "paraformer-offline"),
            "--punc-model", str(models / "ct-punc"), *shlex.split(args.serve_args)]


def load_clips() -> list[bytes]:
    clips = []
    for name in CLIPS:
        samples, rate = soundfile.read(ROOT / "tests" / "data" / name, dtype="int16")
        assert rate == 16000, name
        clips.append(samples.astype("<i2").tobytes())
    return clips


async def soak(args: argparse.Namespace, server: SampledServer) -> dict:
    rng = random.Random(args.seed)
    viewers = {f"soak-room-{i}": RoomViewer(f"{server.url}/rooms/soak-room-{i}")
               for i in range(args.rooms)}
    for viewer in viewers.values():
        await viewer.start()
    plan = Plan(server.url + "/", args.rooms, time.monotonic() + args.seconds, load_clips(),
                (ROOT / "tests" / "data" / UPLOAD).read_bytes(), args.drop_share,
                args.upload_share)
    logs = [SpeakerLog() for _ in range(args.streams)]
    sampler = asyncio.create_task(server.sample_every(args.sample_s))
    started = time.monotonic()
    await asyncio.gather(*(speaker(i, plan, log, random.Random(rng.random()))
                           for i, log in enumerate(logs)))
    speaking_s = time.monotonic() - started
    streams = [stream for log in logs for stream in log.streams]
    await server.wait_idle(timeout_s=120)  # queued finals of dropped speakers still come
    report = compare(streams, {room: v.finals for room, v in viewers.items()})
    while report["lost"] and time.monotonic() - started < speaking_s + 60:
        await asyncio.sleep(1.0)  # a final may still be on its way to the room
        report = compare(streams, {room: v.finals for room, v in viewers.items()})
    report["store"] = compare_store({room: v.finals for room, v in viewers.items()},
                                    server.stored_finals())
    for viewer in viewers.values():
        await viewer.stop()
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    await server.sample_once(label="after")
    report.update(speaking_s=round(speaking_s, 1), connects=sum(log.connects for log in logs),
                  connect_failures=sum(log.connect_failures for log in logs),
                  client_errors=errors_by_kind(streams))
    return report


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    _raise_open_files_limit()
    with SampledServer(serve_args(args)) as server:
        server.warm_up()
        report = asyncio.run(soak(args, server))
        report["server"] = server.growth()
        report["server_log"] = server.log_counts()
    report["config"] = {"streams": args.streams, "seconds": args.seconds, "rooms": args.rooms,
                        "drop_share": args.drop_share, "upload_share": args.upload_share,
                        "seed": args.seed, "size": args.size, "admission": args.admission}
    report["command"] = "python -m bench.soak " + shlex.join(argv)
    report["machine"] = machine("cpu")
    report["samples"] = server.samples
    return report


def table(report: dict) -> str:
    server, log = report["server"], report["server_log"]
    rows = [
        ("streams (speakers at once)", report["config"]["streams"]),
        ("minutes", round(report["speaking_s"] / 60, 2)),
        ("streams started / connections", f"{report['streams']} / {report['connects']}"),
        ("utterances sent", report["utterances"]),
        ("lost / duplicated / extra / misplaced",
         f"{report['lost']} / {report['duplicated']} / {report['extra']} / {report['misplaced']}"),
        ("direct finals differing from the room's", report["direct_mismatches"]),
        ("store: finals / received not stored / stored twice / stored not received",
         f"{report['store']['finals_stored']} / {report['store']['received_not_stored']} / "
         f"{report['store']['stored_twice']} / {report['store']['stored_not_received']}"),
        ("client-side errors by kind", json.dumps(report["client_errors"]) or "{}"),
        ("server log: warnings / errors / tracebacks",
         f"{log['warnings']} / {log['errors']} / {log['tracebacks']}"),
        ("RSS MB: warm / end of load / after (growth)",
         f"{server['rss_mb_warm']} / {server['rss_mb_loaded']} / {server['rss_mb_after']} "
         f"({server['rss_growth_mb']:+})"),
        ("open fds: idle before / peak / idle after",
         f"{server['fds_idle_before']} / {server['fds_peak']} / {server['fds_idle_after']}"),
        ("threads: idle before / idle after",
         f"{server['threads_idle_before']} / {server['threads_idle_after']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    report = run(args, argv)
    print(table(report), flush=True)
    path = args.results or (ROOT / "bench" / "results"
                            / f"{datetime.date.today()}-soak-{args.label}" / "soak.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}", flush=True)
    return report


if __name__ == "__main__":
    main()
