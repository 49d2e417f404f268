"""Load FunASR models through the real `funasr.AutoModel` path (docs/design.md §5).

Accepts a FunASR alias (`paraformer-zh-streaming`), a hub id (`iic/...`) or a
local model directory. Ids already in the ModelScope (or Hugging Face) cache
are resolved to their directory first, by the hub libraries' own offline
lookup (server/model_hubs.py), so loading them never touches the network.
Only a model that is nowhere on disk triggers a download, and only
after a short reachability probe: offline, FunASR/ModelScope would otherwise
retry with back-off (measured here: ~22 s per model, longer where packets are
dropped instead of refused) and then fail with an unrelated error.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from server.devices import pick_device
from server.model_hubs import find_downloaded, is_model_dir, modelscope_cache_dir, resolve_hub_id
from streaming.engines import funasr_adapter
from streaming.errors import ModelNotFoundError

log = logging.getLogger(__name__)

ROLES = ("online", "offline", "punctuation")
_PROBE_TIMEOUT_S = 3.0


def _probe(url: str, timeout_s: float, answer: list[bool]) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            answer.append(True)
    except urllib.error.HTTPError:
        answer.append(True)  # the server answered: the network works
    except (OSError, ValueError):
        answer.append(False)


def hub_reachable(hub: str = "ms", timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """One HTTPS request with a hard deadline; honours HTTPS_PROXY like the hub clients.

    The request runs in a daemon thread because urlopen's timeout does not cover
    DNS: here, without network, name resolution alone blocked for ~20 s. This is
    model loading at startup, not the sans-I/O core, so a thread is acceptable.
    """
    if hub in ("hf", "huggingface"):
        url = os.getenv("HF_ENDPOINT", "https://huggingface.co")
    else:
        url = "https://" + os.getenv("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    answer: list[bool] = []
    worker = threading.Thread(target=_probe, args=(url, timeout_s, answer), daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(answer and answer[0])


def _looks_like_path(name: str) -> bool:
    """Hub ids are `org/name`; anything else with separators is a filesystem path."""
    return (
        name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _not_found(name: str, role: str, looked: list, reason: str) -> ModelNotFoundError:
    hub_id = resolve_hub_id(name)
    where = ", ".join(str(p) for p in looked) or "(nowhere)"
    if _looks_like_path(name) or Path(os.path.expanduser(name)).exists():
        hub_id = "iic/<model-id>"  # a path names no hub model; show the command's shape
    return ModelNotFoundError(
        f"The {role} model {name!r} could not be loaded: {reason}. Looked in: {where}. "
        f"To fix it, pass the local directory of a FunASR model, or download one on a "
        f"machine with internet access "
        f"(`captiond models download --dir DIR`, `modelscope download --model {hub_id} "
        f"--local_dir DIR`, or let `funasr.AutoModel(model={hub_id!r})` fill the "
        f"ModelScope cache at {modelscope_cache_dir()}), copy the directory here and "
        f"pass it as the model "
        f"(or set MODELSCOPE_CACHE to the copied cache); for tests "
        f"and benchmarks without real weights, generate random-weight models with "
        f"`captiond make-test-models DIR` and pass DIR/paraformer-streaming, "
        f"DIR/paraformer-offline and DIR/ct-punc."
    )


def locate_model(name_or_dir: str, *, role: str, hub: str = "ms") -> str:
    """What to hand AutoModel: a local directory, or a hub id worth downloading.

    Raises ModelNotFoundError quickly when neither exists.
    """
    path = Path(os.path.expanduser(name_or_dir))
    if path.exists():
        if is_model_dir(path):
            return str(path)
        raise _not_found(name_or_dir, role, [path], "the directory has no config.yaml "
                         "or configuration.json, so it is not a FunASR model directory")
    if _looks_like_path(name_or_dir):
        raise _not_found(name_or_dir, role, [path.absolute()], "the directory does not exist")
    cached, looked = find_downloaded(name_or_dir)
    if cached is not None:
        return str(cached)
    if not hub_reachable(hub):
        raise _not_found(name_or_dir, role, looked, "it is not in the local model cache and "
                         "the model hub is unreachable (offline?)")
    return resolve_hub_id(name_or_dir, hub)


def _torch_threads() -> int:
    import torch  # FunASR imports it anyway; here only once a model loads

    return torch.get_num_threads()


def load_funasr_model(
    name_or_dir: str, *, device: str, role: str, hub: str = "ms", **overrides: Any
) -> Any:
    """Build a `funasr.AutoModel` for one role ("online", "offline" or "punctuation")."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    target = locate_model(name_or_dir, role=role, hub=hub)
    kwargs: dict[str, Any] = dict(
        model=target, device=pick_device(device), hub=hub, disable_update=True,
        # disable_pbar: FunASR's generate then writes nothing to stdout (lane threads).
        disable_pbar=True, disable_log=True, log_level="ERROR",
        # AutoModel sets torch's thread count on the loading thread to `ncpu`
        # (default 4). That thread then runs its lane, whose count the server
        # set before loading (`--threads`, the final lane's half): keep it.
        ncpu=_torch_threads(),
    )
    kwargs.update(overrides)
    # FunASR prints its banner and download failures to stdout; keep them in the log.
    with funasr_adapter.captured_stdout() as out:
        try:
            funasr_adapter.check_funasr()  # importing FunASR prints notices too
            model = funasr_adapter.auto_model(**kwargs)
        except (OSError, RuntimeError, AssertionError, KeyError, AttributeError) as exc:
            if Path(target).is_dir():
                raise  # the files exist: a real loading bug, not a missing model
            raise _not_found(name_or_dir, role, [Path(target)],
                             f"download failed ({exc})") from exc
        finally:
            if out.getvalue().strip():
                log.debug("funasr: %s", out.getvalue().strip())  # notices, banners
    if not Path(funasr_adapter.model_path(model, target)).exists():
        raise _not_found(name_or_dir, role, [Path(target)], "the download produced no directory")
    funasr_adapter.check_model(model, role)
    return model
