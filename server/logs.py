"""Logging setup for every captiond process (docs/operations.md).

- `text` (default): one human-readable line per record.
- `json`: one JSON object per line (time, level, logger, message, and the
  record's `fields` for structured lines such as a connection's end).
- Transcript text goes only to the `captiond.transcripts` logger, which is
  off unless `--log-transcripts`: captions may be confidential.
- FunASR and ModelScope log their loading chatter (hub, checkpoint paths,
  banners) on the root logger; it is kept only at `--log-level debug`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
_CHATTY = tuple(f"{os.sep}{name}{os.sep}" for name in ("funasr", "modelscope"))


@dataclass(frozen=True)
class LogOptions:
    level: str = "info"  # debug, info, warning
    format: str = "text"  # or "json"
    transcripts: bool = False  # --log-transcripts: caption text in the log


_active = LogOptions()


def active_options() -> LogOptions:
    """What this process was set up with: front-end workers are set up the same."""
    return _active


class JsonFormatter(logging.Formatter):
    def __init__(self, tag: str | None = None) -> None:
        super().__init__()
        self.tag = tag  # e.g. the front-end worker's index

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, timezone.utc)
        entry = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.tag is not None:
            entry["process"] = self.tag
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _not_library_chatter(record: logging.LogRecord) -> bool:
    # FunASR calls logging.info() on the root logger, so its name says nothing;
    # where the call was made does.
    return not (record.name == "root" and any(part in record.pathname for part in _CHATTY)
                and record.levelno < logging.ERROR)


def setup_logging(options: LogOptions, tag: str | None = None) -> None:
    """Configure the root logger; `tag` names the process in every line."""
    global _active
    _active = options
    level = options.level
    handler = logging.StreamHandler(sys.stderr)
    if options.format == "json":
        handler.setFormatter(JsonFormatter(tag))
    else:
        name = f"%(name)s[{tag}]" if tag else "%(name)s"
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace("%(name)s", name)))
    if level != "debug":
        handler.addFilter(_not_library_chatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # websockets logs every HTTP answer at INFO (one per probe and scrape), the
    # hub libraries their cache lookups.
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for chatty in ("websockets.server", "modelscope_hub", "modelscope", "huggingface_hub"):
        logging.getLogger(chatty).setLevel(quiet)
    # modelscope_hub installs its own handler (plain text, not propagated) and
    # resets its level on first use, unless its logger has a handler: give it
    # one like ours, whose own level does the filtering.
    hub_handler = logging.StreamHandler(sys.stderr)
    hub_handler.setFormatter(handler.formatter)
    hub_handler.setLevel(quiet)
    hub = logging.getLogger("modelscope_hub")
    hub.handlers[:] = [hub_handler]
    hub.propagate = False
    logging.getLogger("captiond.transcripts").setLevel(
        logging.INFO if options.transcripts else logging.CRITICAL + 1)
