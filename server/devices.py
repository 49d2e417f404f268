"""The one device picker of every engine loader (docs/design.md §5)."""

from __future__ import annotations

BACKENDS = ("torch", "ctranslate2")


def pick_device(device: str = "auto", *, backend: str = "torch") -> str:
    """"auto" → cuda, then mps, then cpu, among what `backend` runs on; an
    explicit choice is returned as given.

    Paraformer runs on torch; Whisper runs on CTranslate2, which has no mps and
    may see no GPU where torch does (a CPU-only wheel), so it is asked itself.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if device != "auto":
        return device
    if _cuda_available(backend):
        return "cuda"
    if backend == "torch" and _mps_available():
        return "mps"
    return "cpu"


def _cuda_available(backend: str) -> bool:
    if backend == "ctranslate2":
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    import torch

    return torch.cuda.is_available()


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()
