"""FunASR models on ModelScope and Hugging Face, through the hubs' own libraries.

Downloading and finding what is already downloaded both go through
`modelscope`'s and `huggingface_hub`'s `snapshot_download`; finding uses their
local-files-only mode, which never touches the network. So a change of cache
layout in those libraries (ModelScope moved its cache in 1.38) is theirs to
handle, not ours. Their endpoints follow their own variables:
MODELSCOPE_ENDPOINT and HF_ENDPOINT, and their caches MODELSCOPE_CACHE and
HF_HOME / HF_HUB_CACHE.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from streaming.engines import funasr_adapter

log = logging.getLogger(__name__)

HUBS = {"modelscope": "ms", "huggingface": "hf"}  # our names -> FunASR's
HUB_NAMES = {short: name for name, short in HUBS.items()}


def resolve_hub_id(name: str, hub: str = "ms") -> str:
    """FunASR alias → hub id (`paraformer-zh-streaming` → `iic/...-online` on ms)."""
    if "/" in name:
        return name  # already an id; importing FunASR for its table costs seconds
    with funasr_adapter.captured_stdout():  # importing FunASR prints an ffmpeg notice
        return funasr_adapter.hub_name_map(hub).get(name, name)


def is_model_dir(path: Path) -> bool:
    """A directory FunASR's local-path loader understands."""
    return path.is_dir() and (
        (path / "configuration.json").is_file() or (path / "config.yaml").is_file()
    )


def local_snapshot(repo_id: str, hub: str) -> tuple[Path | None, str]:
    """The hub library's downloaded copy of `repo_id`, found offline, or None
    and what the library said about where it looked."""
    try:
        if hub == "ms":
            from modelscope.hub.snapshot_download import snapshot_download
        else:
            from huggingface_hub import snapshot_download
        found = Path(snapshot_download(repo_id, cache_dir=cache_dir(hub), local_files_only=True))
    except Exception as exc:  # each library has its own "not cached" errors
        return None, f"{HUB_NAMES[hub]} cache: {exc}"
    if not is_model_dir(found):
        return None, f"{HUB_NAMES[hub]} cache: {found} holds no FunASR model"
    return found, ""


def find_downloaded(name: str) -> tuple[Path | None, list[str]]:
    """A FunASR alias or hub id already downloaded from either hub, offline."""
    looked = []
    for hub in ("ms", "hf"):
        found, where = local_snapshot(resolve_hub_id(name, hub), hub)
        if found is not None:
            return found, []
        looked.append(where)
    return None, looked


def download(name: str, hub: str, directory: str | None) -> Path:
    """Fetch one model with its hub's library (which shows a progress bar);
    into `directory`/<model> when given, else into the hub's cache."""
    repo_id = resolve_hub_id(name, hub)
    target = None
    if directory is not None:
        target = str(Path(directory).expanduser() / repo_id.rsplit("/", 1)[-1])
    log.info("downloading %s from %s%s", repo_id, HUB_NAMES[hub],
             f" into {target}" if target else "")
    if hub == "ms":
        from modelscope.hub.snapshot_download import snapshot_download
    else:
        from huggingface_hub import snapshot_download
    return Path(snapshot_download(repo_id, cache_dir=cache_dir(hub), local_dir=target))


def cache_dir(hub: str) -> str | None:
    """The cache the environment names now. Both libraries read it once and keep
    it (measured: a second MODELSCOPE_CACHE in one process was not seen), so it
    is passed on each call; the layout inside stays the library's business."""
    if hub == "ms":
        return os.getenv("MODELSCOPE_CACHE") or None
    if os.getenv("HF_HUB_CACHE"):
        return os.getenv("HF_HUB_CACHE")
    return os.path.join(os.path.expanduser(os.getenv("HF_HOME", "~/.cache/huggingface")), "hub")


def modelscope_cache_dir() -> Path:
    # For messages only; the library decides (cache moved from .../hub in 1.38).
    return Path(os.path.expanduser(os.getenv("MODELSCOPE_CACHE", "~/.cache/modelscope")))
