"""The client subcommands of `captiond`: `mic`, `file`, `watch`.

`server/cli.py` calls `add_client_commands(subparsers)`. Every command returns
an exit code; failures a user can act on (server unreachable, refused for load,
unreadable file, no microphone) print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_URL = "ws://127.0.0.1:10095"
TOKEN_ENV = "CAPTIOND_TOKEN"  # the server reads the same variable
EXIT_ERROR = 1  # the server or the connection failed
EXIT_USAGE = 2  # bad input: file, device, output format
EXIT_PARTIAL = 3  # a batch finished, but some of its inputs failed (listed on stderr)
EXIT_INTERRUPTED = 130  # quit with a second Ctrl-C, as shells report SIGINT


def add_client_commands(commands: argparse._SubParsersAction) -> None:
    _add_mic(commands)
    _add_file(commands)
    _add_watch(commands)


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", nargs="?", default=DEFAULT_URL,
                   help=f"captiond server (default {DEFAULT_URL})")
    p.add_argument("--mode", default="2pass", choices=["2pass", "online", "offline"],
                   help="2pass: partials + corrected finals (default); online: partials "
                        "only; offline: finals only")
    p.add_argument("--hotwords", help='words to favour: "word word" or a JSON {word: weight}')
    p.add_argument("--room", help="also show the captions to the viewers of this room")
    p.add_argument("--speaker", help="display name in the room")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE",
                   help="write the transcript; format by extension: .txt .json .srt .vtt "
                        "(repeatable)")
    _add_token_option(p)


def _add_token_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"the server's access token (default: ${TOKEN_ENV})")


def _add_mic(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("mic", help="live captions from a microphone",
                            description="Live captions from a microphone. Ctrl-C ends the "
                                        "stream after its last final; twice quits at once.")
    _add_stream_options(p)
    p.add_argument("--device", help="input device index or name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input-wav", metavar="WAV",
                   help="play this 16-bit WAV as the microphone, in real time (demos, tests)")
    p.set_defaults(func=_mic)


def _add_file(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "file", help="caption audio/video files, write transcripts",
        description="Caption one file (finals on stdout), or transcribe many: files, "
                    "directories (recursive) and glob patterns, --jobs at a time, in offline "
                    "mode; a rerun skips inputs whose transcripts are up to date.")
    p.add_argument("path", nargs="+", help="audio or video files FFmpeg reads, directories, "
                                           "globs; a last argument that is a URL names the server")
    _add_stream_options(p)
    p.set_defaults(mode=None)  # one file: 2pass; a batch: offline
    batch = p.add_argument_group("batch (several inputs, a directory or a glob)")
    batch.add_argument("-j", "--jobs", type=int, help="files transcribed at once (default 4)")
    batch.add_argument("--out", metavar="DIR",
                       help="write transcripts under DIR (default: beside each input)")
    batch.add_argument("-f", "--format", action="append", metavar="FMT",
                       help="transcript formats, e.g. -f srt -f txt or -f srt,json "
                            "(txt json srt vtt; default txt)")
    batch.add_argument("--force", action="store_true",
                       help="transcribe again inputs whose transcripts are up to date")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=None,
                      help="send at real-time pace (default for online and 2pass)")
    pace.add_argument("--no-realtime", dest="realtime", action="store_false",
                      help="send as fast as the server accepts (default for offline)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(func=_file)


def _add_watch(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("watch", help="show a room's captions in the terminal")
    p.add_argument("room")
    p.add_argument("url", nargs="?", default=DEFAULT_URL,
                   help=f"captiond server (default {DEFAULT_URL}); a signed link's "
                        "?t=… may be part of it")
    _add_token_option(p)
    p.set_defaults(func=_watch)


def normalize_url(url: str, token: str | None = None) -> str:
    """Accept `host:port` and http(s) URLs as well as ws(s); add `?token=`."""
    for web, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(web):
            url = ws + url[len(web):]
            break
    url = url if "://" in url else f"ws://{url}"
    if token:
        url += ("&" if "?" in url else "?") + "token=" + quote(token, safe="")
    return url


# ---- commands -------------------------------------------------------------------


def _mic(args: argparse.Namespace) -> int:
    from clients.audio_input import WavInputStream, open_microphone
    from clients.mic import MicOptions, run_mic

    if args.list_devices:
        return _run_command(_print_devices)
    options = MicOptions(normalize_url(args.url, args.token), args.mode, args.hotwords, args.room,
                         args.speaker, outputs=args.output)
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    if args.input_wav:
        def open_stream(callback):
            return WavInputStream(args.input_wav, callback)
    else:
        def open_stream(callback):
            return open_microphone(device, callback)
    return _run_command(lambda: run_mic(options, open_stream))


def _file(args: argparse.Namespace) -> int:
    from clients.file import FileOptions, transcribe_file

    paths, url = _paths_and_url(args.path, args.url, args.token)
    if _is_batch(args, paths):
        return _file_batch(args, paths, url)
    options = FileOptions(paths[0], url, args.mode or "2pass", args.realtime, args.hotwords,
                          args.room, args.speaker, args.output, args.progress)
    return _run_command(lambda: transcribe_file(options))


def _paths_and_url(paths: list[str], url: str, token: str | None) -> tuple[list[str], str]:
    """`captiond file a.wav b.wav host:10095`: the last of several is the server
    when it reads as one and names no file."""
    last = paths[-1]
    if len(paths) > 1 and url == DEFAULT_URL and not os.path.exists(last) and (
            "://" in last or re.fullmatch(r"[\w.-]+:\d+", last)):
        return paths[:-1], normalize_url(last, token)
    return paths, normalize_url(url, token)


def _is_batch(args: argparse.Namespace, paths: list[str]) -> bool:
    asked = args.jobs is not None or args.out or args.format or args.force
    pattern = not os.path.exists(paths[0]) and any(c in paths[0] for c in "*?[")
    return bool(asked) or len(paths) > 1 or os.path.isdir(paths[0]) or pattern


def _file_batch(args: argparse.Namespace, paths: list[str], url: str) -> int:
    from clients.batch import BatchOptions
    from clients.transcript_files import FORMATS

    formats = [f.strip().lstrip(".").lower() for value in args.format or ["txt"]
               for f in value.split(",") if f.strip()]
    problems = [f"unknown format {f!r} (use {', '.join(FORMATS)})" for f in formats
                if f not in FORMATS]
    if args.output or args.room or args.speaker:
        problems.append("-o/--room/--speaker take one file; a batch writes --format files")
    if args.mode not in (None, "offline"):
        problems.append("a batch runs in offline mode (finals only, as fast as the server goes)")
    if args.jobs is not None and args.jobs < 1:
        problems.append("--jobs must be at least 1")
    if problems:
        print(f"captiond: {problems[0]}", file=sys.stderr)
        return EXIT_USAGE
    options = BatchOptions(paths, url, list(dict.fromkeys(formats)),
                           Path(args.out) if args.out else None, args.jobs or 4,
                           hotwords=args.hotwords, force=args.force, progress=args.progress)
    outcome: list[int] = []
    code = _run_command(lambda: _report_batch(options, outcome))
    return outcome[0] if code == 0 and outcome else code


async def _report_batch(options: Any, outcome: list[int]) -> None:
    from clients.batch import transcribe_batch

    report = await transcribe_batch(options)
    for source, why in report.failures:
        print(f"captiond: failed: {source}: {why}", file=sys.stderr)
    print(f"captiond: {report.summary()}", file=sys.stderr)
    if report.failures:
        outcome.append(EXIT_PARTIAL)
    else:
        outcome.append(EXIT_USAGE if report.total == 0 else 0)


def _watch(args: argparse.Namespace) -> int:
    from clients.watch import watch_room

    # Ctrl-C is how one leaves `watch`: not a failure.
    url = normalize_url(args.url, args.token)
    return _run_command(lambda: watch_room(url, args.room), quit_code=0)


async def _print_devices() -> None:
    from clients.audio_input import list_devices

    print(list_devices())


def _run_command(make: Callable[[], Coroutine[Any, Any, Any]], quit_code: int = EXIT_INTERRUPTED
                 ) -> int:
    """Run a client coroutine; turn the failures users cause or meet into one line."""
    try:
        asyncio.run(make())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return quit_code
    except Exception as exc:  # noqa: BLE001 — mapped to a message, see _describe
        code, message = _describe(exc)
        print(f"captiond: {message}", file=sys.stderr)
        return code
    return 0


def _describe(exc: Exception) -> tuple[int, str]:
    from clients.audio_input import AudioDecodeError, MicrophoneError
    from clients.client import ConnectError, ServerError
    from clients.transcript_files import UnknownFormat

    if isinstance(exc, ServerError):
        return EXIT_ERROR, exc.describe()
    if isinstance(exc, ConnectError):
        return EXIT_ERROR, str(exc)
    if isinstance(exc, (AudioDecodeError, MicrophoneError, UnknownFormat)):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, OSError):  # e.g. an output file in a missing directory
        return EXIT_ERROR, f"{getattr(exc, 'filename', '') or ''} {exc.strerror or exc}".strip()
    raise exc  # a bug: keep the traceback


def main(argv: list[str] | None = None) -> int:
    """`python -m clients.cli COMMAND …`: the client commands without the server's CLI."""
    parser = argparse.ArgumentParser(prog="captiond")
    add_client_commands(parser.add_subparsers(required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
