"""Where `captiond`'s settings come from (docs/operations.md): built-in defaults,
then one TOML file (`--config FILE`, or `CAPTIOND_CONFIG`), then `CAPTIOND_*`
environment variables, then command-line flags, each overriding the one before.

Every setting is a command-line option; the file and the environment use the
same names (`max_batch_size`, `max-batch-size`, `CAPTIOND_MAX_BATCH_SIZE`).
The layers become the argument parser's defaults, so argparse's own types and
checks apply to them, and a flag always wins. Tables in the file only group
settings for people: `[batching] max_batch_size = 16` is `max_batch_size = 16`.
The one table that is data, `[retention.rooms."<room>"]`, becomes the
repeatable `--room-retention` (server/retention_options.py).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from server.retention_options import specs_from_tables

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


ENV_PREFIX = "CAPTIOND_"
SECRET_WORDS = ("token", "secret", "key", "password")
MASK = "********"
_SKIPPED = {"help", "config", "func", "version"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting in the file or the environment that captiond cannot take."""


def config_path(argv: list[str], environ: Mapping[str, str]) -> str | None:
    """`--config FILE` wherever it is on the command line, else CAPTIOND_CONFIG."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    return known.config or environ.get(ENV_PREFIX + "CONFIG") or None


def read_file(path: str) -> dict[str, Any]:
    """The file's settings, tables flattened."""
    try:
        with open(Path(path).expanduser(), "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    for name, value in document.items():
        items = value.items() if isinstance(value, dict) else [(name, value)]
        for key, setting in items:
            if (name, key) == ("retention", "rooms") and isinstance(setting, dict):
                try:
                    flat["room_retention"] = specs_from_tables(setting, path)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from exc
                continue
            flat[key.replace("-", "_")] = setting
    return flat


def settable(parsers: Iterable[argparse.ArgumentParser]) -> dict[str, list[tuple]]:
    """dest → [(parser, action)] for every option the file or environment may set
    (`serve` and `config show` share theirs)."""
    found: dict[str, list[tuple]] = {}
    for parser in parsers:
        for action in parser._actions:  # argparse has no public listing of its options
            if action.dest not in _SKIPPED and action.option_strings:
                found.setdefault(action.dest, []).append((parser, action))
    return found


def apply_layers(parsers: list[argparse.ArgumentParser], file_settings: Mapping[str, Any],
                 file_name: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Make the file's and the environment's values the parsers' defaults;
    return where each setting that is not a built-in default came from."""
    options = settable(parsers)
    unknown = sorted(set(file_settings) - set(options))
    if unknown:
        raise ConfigError(f"{file_name}: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(options))}")
    layers = [(file_settings, f"file {file_name}")]
    # Repeatable options take no variable here: a list in one string is
    # ambiguous, and --token reads its own CAPTIOND_TOKEN (server/security_cli.py).
    layers.append(({dest: environ[ENV_PREFIX + dest.upper()] for dest in options
                    if ENV_PREFIX + dest.upper() in environ
                    and not isinstance(options[dest][0][1], argparse._AppendAction)},
                   "environment"))
    origins = {}
    for settings, origin in layers:
        for dest, raw in settings.items():
            where = origin if origin != "environment" else ENV_PREFIX + dest.upper()
            for parser, action in options[dest]:
                parser.set_defaults(**{dest: _convert(action, raw, where)})
            origins[dest] = where
    return origins


def _convert(action: argparse.Action, raw: Any, where: str) -> Any:
    if isinstance(action, argparse._AppendAction):  # repeatable: a list in the file
        items = raw if isinstance(raw, list) else [raw]
        return [_convert_one(action, item, where) for item in items]
    return _convert_one(action, raw, where)


def _convert_one(action: argparse.Action, raw: Any, where: str) -> Any:
    name = action.option_strings[-1]
    if isinstance(action, argparse._StoreConstAction):  # store_true / store_false
        return _boolean(raw, name, where)  # the setting's own value: calibrate = false
    try:
        value = action.type(raw) if action.type and isinstance(raw, str) else raw
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {raw!r} for {name}: {exc}") from exc
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: {name} must be one of {choices}, not {raw!r}")
    return value


def _boolean(raw: Any, name: str, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigError(f"{where}: {name} takes true or false, not {raw!r}")


def is_secret(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def render(parsers: list[argparse.ArgumentParser], args: argparse.Namespace,
           origins: Mapping[str, str]) -> str:
    """The effective settings as a TOML file (secrets masked), each with its source."""
    lines = ["# captiond's effective configuration: built-in defaults, then the config",
             "# file, then CAPTIOND_* variables, then flags. Secrets are masked."]
    for dest, [(_, action), *_] in settable(parsers).items():
        value = getattr(args, dest, None)
        origin = origins.get(dest, "default")
        if value != _parsed_default(action):
            origin = "command line"
        if value is None:
            lines.append(f"# {dest} =  (unset; {origin})")
            continue
        # numbers named so (max_streams_per_token) are limits, not secrets
        masked = is_secret(dest) and not isinstance(value, (bool, int, float))
        shown = json.dumps(MASK) if masked else _toml_value(value)
        lines.append(f"{dest} = {shown}  # {origin}")
    return "\n".join(lines) + "\n"


def _parsed_default(action: argparse.Action) -> Any:
    # argparse passes string defaults through the option's type, as it does flags
    if isinstance(action.default, str) and action.type is not None:
        return action.type(action.default)
    return action.default


def _toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):  # repeatable options
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string
