"""`captiond models download|list`: prepare FunASR models on a machine with
internet, carry them to one without (docs/operations.md).

The models are the configured ones (`online_model`, `offline_model`,
`punc_model`: flags, CAPTIOND_* or the config file, as for `serve`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from server.config import ParaformerOptions
from server.model_hubs import HUBS, download, find_downloaded, is_model_dir, resolve_hub_id

ROLES = (("online_model", "--online-model"), ("offline_model", "--offline-model"),
         ("punc_model", "--punc-model"))


def add_models_commands(commands) -> list[argparse.ArgumentParser]:
    """Add `models download` and `models list`; return their parsers (config layers)."""
    models = commands.add_parser("models", help="download and list FunASR models")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    fetch = actions.add_parser("download", help="fetch the configured models with the hub's "
                                                "own library; print the serve command")
    fetch.add_argument("--hub", choices=sorted(HUBS), default="modelscope")
    fetch.add_argument("--dir", default=None,
                       help="put each model in DIR/<name> (default: the hub's cache)")
    fetch.set_defaults(func=_download)
    show = actions.add_parser("list", help="show which configured models are on this machine")
    show.add_argument("--dir", default=None, help="also list the models in DIR")
    show.set_defaults(func=_list)
    for parser in (fetch, show):
        parser.add_argument("--config", metavar="FILE", help="TOML settings file")
        parser.add_argument("--online-model", default=ParaformerOptions.online_model)
        parser.add_argument("--offline-model", default=ParaformerOptions.offline_model)
        parser.add_argument("--punc-model", default=ParaformerOptions.punc_model,
                            help="'none': no punctuation model")
    return [fetch, show]


def _configured(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, model) for each configured model; local directories are left out."""
    named = [(flag, getattr(args, dest)) for dest, flag in ROLES]
    return [(flag, name) for flag, name in named
            if name and str(name).lower() != "none" and not Path(name).expanduser().exists()]


def _download(args: argparse.Namespace) -> int:
    hub = HUBS[args.hub]
    fetched = []
    for flag, name in _configured(args):
        try:
            fetched.append((flag, download(name, hub, args.dir)))
        except Exception as exc:  # the hub libraries raise their own error types
            print(f"captiond: downloading {name} from {args.hub} failed: {exc}",
                  file=sys.stderr)
            return 1
    if not fetched:
        print("nothing to download: the configured models are local directories")
        return 0
    options = " ".join(f"{flag} {shlex.quote(str(path))}" for flag, path in fetched)
    print("\nDownloaded. Start the server with these models (no network needed):")
    print(f"  captiond serve {options}")
    print("or put these lines in the config file:")
    for flag, path in fetched:
        print(f"  {flag[2:].replace('-', '_')} = {str(path)!r}")
    return 0


def _list(args: argparse.Namespace) -> int:
    missing = 0
    for flag, name in _configured(args):
        found, _ = find_downloaded(name)
        where = str(found) if found else "not downloaded (captiond models download)"
        missing += found is None
        print(f"{flag[2:]:<14} {name}  ({resolve_hub_id(name)})\n{'':<14} {where}")
    if args.dir:
        root = Path(args.dir).expanduser()
        dirs = sorted(p for p in root.iterdir() if is_model_dir(p)) if root.is_dir() else []
        print(f"\nmodel directories in {root}:" if dirs else f"\nno model directories in {root}")
        for path in dirs:
            print(f"  {path}")
    return 1 if missing else 0
