"""Speed options of the Paraformer engine: half precision on GPU, int8 Linear on CPU."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from streaming.engines import funasr_adapter

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTIZE_MODES = ("int8",)


def online_dtype(name: str | None, device: str) -> torch.dtype:
    """The online model's dtype; half precision only where it is fast (CUDA)."""
    if name is None:
        return torch.float32
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {name!r}")
    dtype = _DTYPES[name]
    if dtype != torch.float32 and not str(device).startswith("cuda"):
        raise ValueError(f"dtype {name} needs a CUDA device (got {device!r})")
    return dtype


def quantize_linear(*models: Any, mode: str, device: str) -> None:
    """Dynamic int8 quantisation of every nn.Linear, in place, in each loaded AutoModel."""
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, not {mode!r}")
    if str(device) != "cpu":
        raise ValueError("int8 dynamic quantisation runs on the CPU only")
    for model in models:
        if model is None:
            continue
        with warnings.catch_warnings():
            # torch.ao.quantization and its quantized tensors are deprecated in favour
            # of torchao, which is not installed; the eager dynamic path still works
            # and is what we measure.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantiz", category=UserWarning)
            torch.ao.quantization.quantize_dynamic(
                funasr_adapter.network(model), {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )


FSMN_CONVS = ("conv", "unfold", "native")


class UnfoldDepthwiseConv1d(torch.nn.Module):
    """An FSMN memory block (depthwise, bias-free, stride 1 `Conv1d`) computed as an
    unfold and a weighted sum over the kernel taps.

    Same arithmetic, without a convolution library: on a GPU, cuDNN plans each
    new input shape, and a live server's batch size changes every step (the
    H200 profile in bench/RESULTS.md found 54 % of the online lane in these
    convolutions). Measured on an H200: no faster than cuDNN at steady batch sizes and
    slower than "native"; kept as an option.
    """

    def __init__(self, conv: torch.nn.Conv1d) -> None:
        super().__init__()
        self.weight = conv.weight  # (C, 1, K): the same Parameter, so .to() moves it
        self.kernel_size = conv.kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) → (B, C, L - K + 1)
        taps = x.unfold(2, self.kernel_size[0], 1)  # (B, C, L - K + 1, K), a view
        return torch.einsum("bctk,ck->bct", taps, self.weight[:, 0, :])


class NativeDepthwiseConv1d(torch.nn.Module):
    """An FSMN memory block's `Conv1d` run with cuDNN switched off, so that PyTorch's
    own depthwise kernel computes it (same weights, same call). The flag is
    process-wide while the call runs; on the CPU it changes nothing."""

    def __init__(self, conv: torch.nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.backends.cudnn.flags(enabled=False):
            return self.conv(x)


def swap_fsmn_convs(model: torch.nn.Module, kind: str = "unfold") -> int:
    """Swap every FSMN block's depthwise Conv1d for `UnfoldDepthwiseConv1d` (or, with
    kind="native", `NativeDepthwiseConv1d`); how many."""
    wrap = UnfoldDepthwiseConv1d if kind == "unfold" else NativeDepthwiseConv1d
    swapped = 0
    for module in model.modules():
        conv = getattr(module, "fsmn_block", None)
        if (isinstance(conv, torch.nn.Conv1d) and conv.bias is None
                and conv.groups == conv.in_channels == conv.out_channels
                and conv.stride == (1,) and conv.dilation == (1,) and conv.padding == (0,)):
            module.fsmn_block = wrap(conv)
            swapped += 1
    return swapped
