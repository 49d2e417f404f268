"""Retention settings (docs/transcripts.md): the defaults `--keep-days` and
`--keep-finals`, and rooms with their own rules.

A room's rules are written `ROOM:RULES`, e.g. `board:forever`,
`standup:days=7`, `hall:days=90,finals=forever`: `days` and `finals` override
the defaults for that room, `forever` lifts a limit, and a rule left out is
the default's. In the config file the same rules are tables:

    [retention.rooms."standup"]
    keep_days = 7
    keep_finals = "forever"
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from server.store.base import Retention

FOREVER = "forever"
_RULES = {"days": "max_age_days", "finals": "max_finals_per_room"}
_TABLE_KEYS = {"keep_days": "days", "keep_finals": "finals"}


def checked_spec(spec: str) -> str:
    """The argparse type of `--room-retention`: the spec, once it parses (kept
    as text, so `captiond config show` prints it as it was written)."""
    room_rules(spec)
    return spec


def room_rules(spec: str) -> tuple[str, dict[str, float | int | None]]:
    """`ROOM:RULES` → (room, {Retention field: limit, None for forever})."""
    room, sep, rules = spec.rpartition(":")
    if not sep or not room or not rules:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: write ROOM:RULES, e.g. board:forever or standup:days=7,finals=500")
    if rules.strip() == FOREVER:
        return room, dict.fromkeys(_RULES.values())
    limits = {}
    for rule in rules.split(","):
        name, _, value = (part.strip() for part in rule.partition("="))
        if name not in _RULES:
            raise argparse.ArgumentTypeError(
                f"{spec!r}: unknown rule {name!r} (days=N, finals=N, or forever)")
        limits[_RULES[name]] = _limit(value, name, spec)
    return room, limits


def _limit(value: str, name: str, spec: str) -> float | int | None:
    if value == FOREVER:
        return None
    try:
        limit = float(value) if name == "days" else int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: {name} takes a number >= 0 or {FOREVER}, not {value!r}")
    return limit


def specs_from_tables(tables: Mapping[str, Any], where: str) -> list[str]:
    """The file's `[retention.rooms."<room>"]` tables (or `room = "forever"`)
    as `ROOM:RULES` specs, so they pass through the same checks as the flag."""
    specs = []
    for room, table in tables.items():
        if isinstance(table, str):
            specs.append(f"{room}:{table}")
            continue
        if not isinstance(table, dict) or not table or set(table) - set(_TABLE_KEYS):
            raise ValueError(f"{where}: [retention.rooms.{room!r}] takes keep_days and "
                             f"keep_finals (a number or \"{FOREVER}\"), not {table!r}")
        rules = ",".join(f"{_TABLE_KEYS[key]}={value}" for key, value in table.items())
        specs.append(f"{room}:{rules}")
    return specs


def retention_from_args(keep_days: float | None, keep_finals: int | None,
                        room_specs: Sequence[str]) -> Retention:
    """The defaults, and each named room's rules over them (a later spec for
    the same room wins, so a flag overrides the file)."""
    defaults = Retention(keep_days, keep_finals)
    own: dict[str, dict] = {}
    for room, limits in map(room_rules, room_specs):
        own.setdefault(room, {}).update(limits)
    return replace(defaults, rooms={room: replace(defaults, **limits)
                                    for room, limits in own.items()})


def add_retention_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--keep-days", type=float, default=None,
                       help="delete finals older than this many days (default: keep)")
    group.add_argument("--keep-finals", type=int, default=None,
                       help="keep only each room's newest N finals (default: all)")
    group.add_argument("--room-retention", type=checked_spec, action="append", default=[],
                       metavar="ROOM:RULES",
                       help="a room's own retention (repeatable; config file: "
                            "[retention.rooms.\"ROOM\"]): board:forever, standup:days=7, "
                            "hall:days=90,finals=forever; rules left out are the defaults'")
