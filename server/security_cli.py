"""Command-line options for TLS, tokens, origins and limits, and `captiond link`
(docs/security.md). Kept apart from server/cli.py, which only wires them in."""

from __future__ import annotations

import argparse
import os
import sys
import time
from urllib.parse import quote

from server.auth import AccessPolicy, TokenSpecError, parse_token_spec, parse_ttl, sign_link
from server.limits import ConnectionLimits
from server.tls import TLSConfigError, tls_from_args
from streaming.session import SessionLimits

TOKEN_ENV = "CAPTIOND_TOKEN"  # one token spec, or several separated by spaces


def add_security_arguments(serve: argparse.ArgumentParser) -> None:
    s = serve.add_argument_group("security (docs/security.md)")
    s.add_argument("--certfile", help="TLS certificate (PEM): serve wss:// and https://")
    s.add_argument("--keyfile", help="TLS private key (PEM), if not in --certfile")
    s.add_argument("--token", action="append", default=[], metavar="SECRET[:ROLES[:ROOMS]]",
                   help="require this token (repeatable; also $CAPTIOND_TOKEN). SECRET alone "
                        "has every role; SECRET:speaker+viewer:hall,lobby limits roles and "
                        "rooms (roles: speaker, viewer, admin)")
    s.add_argument("--public-room", action="append", default=[], metavar="ROOM",
                   help="a room anyone may watch without a token (repeatable; '*': all)")
    s.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin allowed besides same-origin pages, e.g. "
                        "https://obs.example.org (repeatable; '*': any)")
    s.add_argument("--insecure-open", action="store_true",
                   help="listen beyond localhost without any token (anyone may stream and watch)")
    lim = serve.add_argument_group("per-client limits")
    defaults = ConnectionLimits()
    lim.add_argument("--max-connections-per-address", type=int,
                     default=defaults.max_connections_per_address)
    lim.add_argument("--max-streams-per-token", type=int, default=None)
    lim.add_argument("--max-stream-duration", type=float, default=None, metavar="SECONDS",
                     help="audio seconds one stream may last")
    lim.add_argument("--max-audio-ahead", type=float, default=SessionLimits.max_audio_ahead_s,
                     metavar="SECONDS",
                     help="how far a live stream's audio may run ahead of real time")
    lim.add_argument("--max-hotwords", type=int, default=SessionLimits.max_hotwords)
    lim.add_argument("--max-upload-mb", type=float,
                     default=SessionLimits.max_file_bytes / 2**20,
                     help="size of one encoded file upload")


def security_from_args(args: argparse.Namespace) -> dict:
    """ServerConfig fields: tls, access, connection_limits (ValueError if unusable)."""
    specs = [*args.token, *os.environ.get(TOKEN_ENV, "").split()]
    return {
        "tls": tls_from_args(args.certfile, args.keyfile),
        "access": AccessPolicy(
            tokens=tuple(parse_token_spec(spec) for spec in specs),
            public_rooms=frozenset(args.public_room),
            allowed_origins=frozenset(o.rstrip("/") for o in args.allow_origin),
            insecure_open=args.insecure_open,
        ),
        "connection_limits": ConnectionLimits(args.max_connections_per_address,
                                              args.max_streams_per_token),
    }


def session_limits_from_args(args: argparse.Namespace) -> SessionLimits:
    return SessionLimits(
        max_frame_bytes=args.max_frame_bytes,
        max_file_bytes=int(args.max_upload_mb * 2**20),
        max_hotwords=args.max_hotwords,
        max_stream_s=args.max_stream_duration,
        max_audio_ahead_s=args.max_audio_ahead,
    )


CONFIG_ERRORS = (TokenSpecError, TLSConfigError)


def add_link_command(commands) -> None:
    p = commands.add_parser(
        "link", help="print a signed viewer link for a room (no long-lived secret in it)")
    p.add_argument("room")
    p.add_argument("--ttl", default="8h", help="how long the link works: 8h, 30m, 2d, 3600")
    p.add_argument("--token", default=None,
                   help="a server token with the viewer role for the room (default: "
                        "$CAPTIOND_TOKEN, its first token)")
    p.add_argument("--base-url", default="http://127.0.0.1:10095",
                   help="the address viewers open, e.g. https://captions.example.org")
    p.add_argument("--page", choices=["display", "overlay"], default="display")
    p.set_defaults(func=_link)


def _link(args: argparse.Namespace) -> int:
    spec = args.token or next(iter(os.environ.get(TOKEN_ENV, "").split()), None)
    if spec is None:
        print("captiond link: give --token or set CAPTIOND_TOKEN (a token of the server)",
              file=sys.stderr)
        return 2
    try:
        ttl = parse_ttl(args.ttl)
        grant = parse_token_spec(spec)
    except (ValueError, TokenSpecError) as exc:
        print(f"captiond link: {exc}", file=sys.stderr)
        return 2
    t = sign_link(grant.secret, args.room, int(time.time()) + ttl)
    print(f"{args.base_url.rstrip('/')}/{args.page}/{quote(args.room, safe='')}?t={t}")
    return 0

