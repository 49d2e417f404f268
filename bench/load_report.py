"""Figures of `bench/load.py`: one run's result, the table row, the summary.

A run is held when no stream erred or was refused, the p95 partial delay and
the p95 end-of-stream lag are within their limits, and the client processes
kept their frame clocks (otherwise the generator, not the server, was
measured). `fail_reasons` says which test failed.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field

import numpy as np

from bench.load_clients import ClientReport

# A frame clock later than this at p95 (ms) was itself overloaded: the run
# offered less than N real-time streams. Partial delays run from the actual
# send, so a clock a frame or two late does not inflate them.
CLIENT_LATE_FRAMES = 2
CLIENT_LATE_MIN_MS = 100.0


@dataclass
class RunResult:
    config: str
    repeat: int
    streams: int
    held: bool
    fail_reasons: list[str]
    errors: int
    refusals: int
    error_kinds: dict[str, int]
    partials: int
    partial_p50: float | None
    partial_p95: float | None
    partial_p99: float | None
    final_p50: float | None  # endpoint finals (after the VAD's trailing silence), for reference
    final_p95: float | None
    end_lag_p50: float | None
    end_lag_p95: float | None
    end_lag_max: float | None
    # the server over the steady window (bench/load_server.py: window_metrics)
    server: dict = field(default_factory=dict)
    # the client processes over the same window
    client_procs: int = 0
    client_cpu_pct: float = 0.0  # all client processes, 100 = one core
    client_cpu_pct_per_stream: float = 0.0
    client_tick_late_ms_p95: float = 0.0  # the worst process
    client_tick_late_ms_max: float = 0.0
    client_write_backlog_max: int = 0
    client_connect_s: float = 0.0


def summarise_run(config: str, repeat: int, streams: int, server: dict,
                  reports: list[ClientReport], args: argparse.Namespace) -> RunResult:
    partials = [d for r in reports for d in r.partial_delays]
    finals = [d for r in reports for d in r.final_delays]
    lags = [d for r in reports for d in r.end_lags]
    kinds: dict[str, int] = {}
    for report in reports:
        for kind, count in report.errors.items():
            kinds[kind] = kinds.get(kind, 0) + count
    errors = sum(kinds.values())
    cpu = sum(r.cpu_s for r in reports)
    window = max((r.window_s for r in reports), default=0.0)
    late_p95 = max((r.tick_late_ms_p95 for r in reports), default=0.0)
    result = RunResult(
        config=config, repeat=repeat, streams=streams, held=False, fail_reasons=[],
        errors=errors, refusals=sum(r.refusals for r in reports), error_kinds=kinds,
        partials=len(partials), partial_p50=_pct(partials, 50), partial_p95=_pct(partials, 95),
        partial_p99=_pct(partials, 99), final_p50=_pct(finals, 50), final_p95=_pct(finals, 95),
        end_lag_p50=_pct(lags, 50), end_lag_p95=_pct(lags, 95),
        end_lag_max=round(max(lags), 3) if lags else None, server=server,
        client_procs=len(reports),
        client_cpu_pct=round(100 * cpu / window, 1) if window else 0.0,
        client_cpu_pct_per_stream=round(100 * cpu / window / streams, 4) if window else 0.0,
        client_tick_late_ms_p95=late_p95,
        client_tick_late_ms_max=max((r.tick_late_ms_max for r in reports), default=0.0),
        client_write_backlog_max=max((r.write_backlog_max for r in reports), default=0),
        client_connect_s=round(max((r.connect_s for r in reports), default=0.0), 2),
    )
    result.fail_reasons = _fail_reasons(result, args)
    result.held = not result.fail_reasons
    return result


def _fail_reasons(r: RunResult, args: argparse.Namespace) -> list[str]:
    reasons = []
    if r.errors:
        reasons.append(f"{r.errors} stream errors")
    if r.partial_p95 is None:
        reasons.append("no partials in the window")
    elif r.partial_p95 > args.held_p95_s:
        reasons.append(f"p95 partial {r.partial_p95} s")
    if r.end_lag_p95 is None or r.end_lag_p95 > args.held_end_lag_s:
        reasons.append(f"p95 end lag {r.end_lag_p95} s")
    if r.client_tick_late_ms_p95 > max(CLIENT_LATE_MIN_MS, CLIENT_LATE_FRAMES * args.frame_ms):
        reasons.append(f"client-limited: frame clock {r.client_tick_late_ms_p95} ms late at "
                       "p95 (add --client-procs)")
    return reasons


def summarise_config(held: list[int], runs: list[RunResult]) -> dict:
    """Median over repeats of the held N, and of each figure at each repeat's held N."""
    at_held = [r for r in runs if r.held and r.streams == held[r.repeat - 1]]
    return {
        "held": held,
        "held_median": statistics.median(held) if held else 0,
        "at_held_median": {key: _median([_figure(r, key) for r in at_held])
                           for key in MEDIAN_KEYS},
        "runs": [{"repeat": r.repeat, "streams": r.streams, "held": r.held,
                  "partial_p95": r.partial_p95, "end_lag_p95": r.end_lag_p95,
                  "fail_reasons": r.fail_reasons} for r in runs],
    }


MEDIAN_KEYS = ("partial_p50", "partial_p95", "partial_p99", "end_lag_p95", "online_busy",
               "final_busy", "loop_busy", "loop_lag_ms_p95", "frame_us", "chunks_per_s",
               "mean_batch", "server_cpu_pct", "server_tree_cpu_pct", "rss_mb",
               "client_cpu_pct_per_stream", "steal_pct")


def _figure(r: RunResult, key: str) -> float | None:
    return getattr(r, key) if hasattr(r, key) else r.server.get(key)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 4) if present else None


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


# ---- the printed table ---------------------------------------------------------------

HEADER = ("config", "rep", "N", "held", "err", "p50", "p95", "p99", "end95", "onl.busy",
          "fin.busy", "loop", "lag95ms", "frame_us", "chunk/s", "batch", "srv.cpu%", "all.cpu%",
          "rssMB", "cli.cpu%", "steal%")


def row(r: RunResult) -> str:
    s = r.server
    cells = (r.config, r.repeat, r.streams, "yes" if r.held else "NO", r.errors,
             r.partial_p50, r.partial_p95, r.partial_p99, r.end_lag_p95, s.get("online_busy"),
             s.get("final_busy"), s.get("loop_busy"), s.get("loop_lag_ms_p95"),
             s.get("frame_us"), s.get("chunks_per_s"), s.get("mean_batch"),
             s.get("server_cpu_pct"), s.get("server_tree_cpu_pct"), s.get("rss_mb"),
             r.client_cpu_pct, s.get("steal_pct"))
    line = " ".join(f"{'-' if c is None else c!s:>8}" for c in cells)
    return line if r.held else f"{line}   ({'; '.join(r.fail_reasons)})"
