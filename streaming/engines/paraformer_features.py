"""FunASR's online fbank + LFR + CMVN frontend, batched across streams (docs/design.md §6).

Theory of operation. `WavFrontendOnline` (funasr/frontends/wav_frontend.py)
turns one stride of one stream into features in three steps, each with
look-back that we keep per stream in a `FrontendState`:

1. Kaldi fbank (kaldi-native-fbank or torchaudio's kaldi.fbank, same maths):
   samples scaled to the int16 range, 25 ms frames every 10 ms with
   `snip_edges` (only whole frames; FunASR never changes that option), no
   dither when the model config says 0, DC removal, pre-emphasis 0.97, the
   configured window, a 512-point power spectrum, Kaldi mel banks
   (20 Hz … Nyquist) and log floored at FLT_EPSILON. The samples past the
   last whole frame wait for the next call (FunASR's `input_cache`).
2. LFR: output frame k stacks fbank frames k*lfr_n … k*lfr_n + lfr_m - 1.
   The first fbank frame of a stream is repeated (lfr_m - 1) // 2 times in
   front; fbank frames that cannot yet start a complete stack wait
   (`lfr_splice_cache`). A non-final call emits only complete stacks; the
   final one emits ceil((T - (lfr_m - 1) // 2) / lfr_n) stacks, padding
   with the last frame.
3. CMVN from am.mvn: (x + shift) * scale.

Here the per-stream part is index arithmetic on a few ints per row
(numpy), and the arithmetic runs once per call for all rows: one gather
frames every row's samples, one window multiply, one rfft, one mel matmul,
one log, one gather stacks the LFR frames, one add and multiply apply
CMVN. The waveform look-back lives on the host (it arrives from there);
the fbank look-back (at most lfr_m - 1 frames) stays on the device.

FunASR's cache also carries the waveform behind each emitted frame (for
VAD alignment); it never feeds the features, so it is not kept. Precision:
float32 throughout, as kaldi-native-fbank; the two FFTs round differently
(at most ≈ 3e-4 after CMVN, see the tests). On CUDA the mel matmul follows
torch's float32 matmul setting: TF32 (10-bit mantissa) there would add
error of order 1e-3 (an estimate, not measured).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Kaldi defaults that FunASR's WavFrontendOnline leaves alone.
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
INT16_SCALE = float(1 << 15)  # forward_fbank scales the float samples by 1 << 15
LOG_FLOOR = float(np.finfo(np.float32).eps)  # FLT_EPSILON, kaldi's floor before the log
# Frames per block of fbank arithmetic on the CPU: 1024 x 512 floats is 2 MB per
# temporary (cache-sized); 256-4096 measured within 15 % of each other.
FBANK_BLOCK = 1024
# Mel filters per band of the CPU's mel product (see `_mel_bands`).
MEL_BAND_FILTERS = 16


@dataclass
class FrontendState:
    """One stream's look-back, as `WavFrontendOnline`'s cache dict keeps it."""

    # Samples behind the last whole fbank frame (FunASR's `input_cache`), unscaled.
    waveform: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # Fbank frames waiting for a complete LFR stack (`lfr_splice_cache`), float32 on
    # the device; None until the stream's first fbank frame.
    splice: Tensor | None = None


@dataclass
class _Rows:
    """One call's rows as int arrays: where each row's frames sit in the frame pool.

    A row's t-th frame (look-back first, then this call's) is at pool index
    `cache_at + t` for t < cached, else `new_at + t - cached`. On a stream's
    first call there is no look-back tensor: its left context is its first new
    frame repeated, so every t < cached maps to `new_at` (`repeat_first`).
    """

    cached: np.ndarray  # look-back frames (for a first call: the repeats)
    cache_at: np.ndarray
    repeat_first: np.ndarray  # bool: the look-back is the first new frame repeated
    new_frames: np.ndarray
    new_at: np.ndarray
    stacks: np.ndarray  # LFR frames emitted; -1 = FunASR returns no feature matrix
    keep_from: np.ndarray  # frames from here on become the look-back; -1 = unchanged

    def pool_index(self, row: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Pool indices of frames t (any shape, broadcast with `row`) of rows `row`."""
        cached = self.cached[row]
        in_cache = np.where(self.repeat_first[row], self.new_at[row],
                            self.cache_at[row] + t)
        return np.where(t < cached, in_cache, self.new_at[row] + t - cached)


class KaldiFbank:
    """Kaldi's log-mel fbank (step 1 above) for many sample arrays in one computation;
    shared by the online frontend here and the offline one (paraformer_offline_features.py)."""

    def __init__(self, frontend: Any, frame_length: int, frame_shift: int,
                 device: str | torch.device) -> None:
        """`frontend`: FunASR's WavFrontend(Online), for fs, window, n_mels, dither and
        CMVN; `frame_length`/`frame_shift` in samples."""
        self.device = torch.device(device)
        self.lfr_m, self.lfr_n = int(frontend.lfr_m), int(frontend.lfr_n)
        self.dither = float(frontend.dither)
        self.frame_length, self.frame_shift = int(frame_length), int(frame_shift)
        self.n_fft = 1 << max(0, (self.frame_length - 1).bit_length())  # round_to_power_of_two
        self.n_mels = int(frontend.n_mels)
        self._window = torch.from_numpy(
            _window(frontend.window, self.frame_length)).to(self.device)
        banks = _kaldi_mel_banks(self.n_mels, self.n_fft, float(frontend.fs))
        self._mel = torch.from_numpy(banks.T.copy()).to(self.device)  # (n_fft // 2 + 1, n_mels)
        # One product on a GPU; on the CPU a few smaller ones over the bins each band
        # of filters covers (a quarter of the arithmetic).
        self._mel_bands = None if self.device.type == "cuda" else _mel_bands(banks, self.device)
        cmvn = frontend.cmvn
        self._cmvn = None if cmvn is None else (
            torch.as_tensor(cmvn, dtype=torch.float32)[:, : self.feature_dim].to(self.device))

    @property
    def feature_dim(self) -> int:
        return self.n_mels * self.lfr_m

    def _fbank(self, samples: list[np.ndarray], counts: np.ndarray) -> Tensor:
        """Log-mel fbank frames of every row, concatenated in row order: (F, n_mels).

        The frames go through in blocks of FBANK_BLOCK: each block's
        temporaries (frames, FFT input, spectrum) then stay in the CPU's cache.
        One pass over all frames at once measured 2-2.5x slower on the CPU for
        a few hundred streams (tens of MB per temporary, bench/RESULTS.md).
        """
        total = int(counts.sum())
        out = torch.empty(total, self.n_mels, device=self.device)
        if total == 0:
            return out
        view, first = self._frame_view(samples, counts)
        block = total if self.device.type == "cuda" else FBANK_BLOCK
        padded = torch.zeros(min(block, total), self.n_fft, device=self.device)
        for at in range(0, total, block):
            frames = view.index_select(0, first[at : at + block])  # (≤ block, frame_length)
            self._log_mel(frames, padded[: frames.shape[0]], out[at : at + frames.shape[0]])
        return out

    def _log_mel(self, frames: Tensor, padded: Tensor, out: Tensor) -> None:
        """Step 1's arithmetic on some frames, written into `out`. `padded` is the
        FFT input: its columns past frame_length stay zero between calls."""
        if self.dither != 0.0:  # Kaldi's Gaussian dither; random, so never bit-equal
            frames.add_(torch.randn_like(frames), alpha=self.dither)
        frames.sub_(frames.mean(dim=1, keepdim=True))
        # Pre-emphasis and window written straight into the zero-padded FFT input.
        torch.sub(frames[:, 1:], frames[:, :-1], alpha=PREEMPHASIS,
                  out=padded[:, 1 : self.frame_length])
        torch.mul(frames[:, :1], 1.0 - PREEMPHASIS, out=padded[:, :1])
        padded[:, : self.frame_length].mul_(self._window)
        spectrum = torch.view_as_real(torch.fft.rfft(padded))  # (F, n_fft // 2 + 1, 2)
        power = torch.addcmul(spectrum[..., 0].square(), spectrum[..., 1], spectrum[..., 1])
        if self._mel_bands is None:
            torch.matmul(power, self._mel, out=out)
        else:
            for (low, high), (first, last), weights in self._mel_bands:
                out[:, first:last] = power[:, low:high] @ weights
        out.clamp_min_(LOG_FLOOR).log_()

    def _frame_view(self, samples: list[np.ndarray], counts: np.ndarray) -> tuple[Tensor, Tensor]:
        """Every row's frames as rows `first` of one strided view, samples scaled to
        the int16 range.

        Each row's samples start at a multiple of the frame shift in one flat
        buffer, so every frame of every row is a row of the buffer's strided
        view (`unfold`): one `index_select` picks them.
        """
        shift = self.frame_shift
        row_shifts = np.array([-(-len(x) // shift) for x in samples])  # in frame shifts
        row_at = np.concatenate(([0], np.cumsum(row_shifts)[:-1]))
        flat = np.zeros((int(row_shifts.sum()) + -(-self.frame_length // shift)) * shift,
                        np.float32)
        for x, at in zip(samples, row_at):
            flat[at * shift : at * shift + len(x)] = x
        first = np.repeat(row_at, counts) + _ranks(counts)  # frame starts, in shifts
        # Scaling by 2**15 is exact, and cheaper on the samples than on the frames.
        view = torch.from_numpy(flat).to(self.device).mul_(INT16_SCALE).unfold(
            0, self.frame_length, shift)
        return view, torch.from_numpy(first).to(self.device)


class BatchedOnlineFrontend(KaldiFbank):
    """`extract_fbank(..., frontend=WavFrontendOnline, cache=...)` for many streams per call."""

    def __init__(self, frontend: Any, device: str | torch.device,
                 dtype: torch.dtype = torch.float32) -> None:
        if frontend.lfr_m == 1 and frontend.lfr_n == 1:
            # WavFrontendOnline itself fails there (it reads an unset splice index).
            raise ValueError("WavFrontendOnline needs LFR (lfr_m > 1 or lfr_n > 1)")
        super().__init__(frontend, frontend.frame_sample_length,
                         frontend.frame_shift_sample_length, device)
        self.dtype = dtype

    def new_state(self) -> FrontendState:
        return FrontendState()

    def extract(
        self, states: Sequence[FrontendState], audios: Sequence[np.ndarray],
        is_final: Sequence[bool],
    ) -> list[Tensor | None]:
        """Features of one stride per stream, updating each stream's look-back.

        `audios` are float32 samples at the frontend rate in [-1, 1], exactly what
        `extract_fbank` is given. Per row: the (T, D) LFR+CMVN features
        `extract_fbank(...)[0][0]` would return (T may be 0 on a final call with
        too few frames), or None where FunASR returns no feature matrix.
        """
        if not states:
            return []
        samples = [self._frame(s, a) for s, a in zip(states, audios)]
        new_frames = np.array([self._frames_in(len(x)) for x in samples], dtype=np.int64)
        fbank = self._fbank(samples, new_frames)
        cached = [s.splice for s in states if s.splice is not None]
        pool = torch.cat(cached + [fbank]) if cached else fbank
        rows = self._plan(states, new_frames, sum(c.shape[0] for c in cached), is_final)
        self._update_look_back(states, rows, pool)
        return self._stack(rows, pool)

    # -- per row: framing and index arithmetic -------------------------------

    def _frames_in(self, samples: int) -> int:
        if samples < self.frame_length:
            return 0
        return (samples - self.frame_length) // self.frame_shift + 1

    def _frame(self, state: FrontendState, audio: np.ndarray) -> np.ndarray:
        """forward_fbank's framing: the samples of whole frames now, the rest waits."""
        wave = np.concatenate((state.waveform, np.asarray(audio, dtype=np.float32).reshape(-1)))
        n = self._frames_in(len(wave))
        state.waveform = wave[n * self.frame_shift :].copy()
        return wave[: (n - 1) * self.frame_shift + self.frame_length] if n else wave[:0]

    def _plan(
        self, states: Sequence[FrontendState], new_frames: np.ndarray, fbank_at: int,
        is_final: Sequence[bool],
    ) -> _Rows:
        """WavFrontendOnline.forward's LFR branches, row by row, on ints only."""
        batch = len(states)
        cached = np.array([0 if s.splice is None else s.splice.shape[0] for s in states])
        first = np.array([s.splice is None for s in states]) & (new_frames > 0)
        cached[first] = (self.lfr_m - 1) // 2  # the first frame, repeated as left context
        new_at = fbank_at + np.concatenate(([0], np.cumsum(new_frames)[:-1]))
        cache_at = np.concatenate(([0], np.cumsum(cached * ~first)[:-1]))
        cache_at[first] = new_at[first]
        stacks = np.full(batch, -1)
        keep_from = np.full(batch, -1)
        for i, final in enumerate(is_final):
            total = int(cached[i] + new_frames[i])
            if total == 0 or (new_frames[i] == 0 and not final):
                continue  # no features, nothing changes
            if not final and total < self.lfr_m:
                keep_from[i] = 0  # too few for one stack: they all wait
                continue
            stacks[i], keep_from[i] = _lfr_counts(total, self.lfr_m, self.lfr_n, bool(final))
        return _Rows(cached, cache_at, first, new_frames, new_at, stacks, keep_from)

    # -- batched tensor work ------------------------------------------------

    def _update_look_back(
        self, states: Sequence[FrontendState], rows: _Rows, pool: Tensor,
    ) -> None:
        """New lfr_splice_cache of every row that changes it, in one gather."""
        changed = np.flatnonzero(rows.keep_from >= 0)
        if changed.size == 0:
            return
        lengths = rows.cached[changed] + rows.new_frames[changed] - rows.keep_from[changed]
        row = np.repeat(changed, lengths)
        t = np.repeat(rows.keep_from[changed], lengths) + _ranks(lengths)
        index = torch.from_numpy(rows.pool_index(row, t)).to(self.device)
        kept = pool.index_select(0, index)  # a compact copy: the pool is not held on to
        for i, at, length in zip(changed, np.cumsum(lengths) - lengths, lengths):
            states[i].splice = kept[at : at + length]

    def _stack(self, rows: _Rows, pool: Tensor) -> list[Tensor | None]:
        """LFR stacks of all rows in one gather and CMVN once, split per row."""
        counts = np.maximum(rows.stacks, 0)
        row = np.repeat(np.arange(len(counts)), counts)
        last = (rows.cached + rows.new_frames - 1)[row]
        # Frames k*n … k*n + m - 1 of stack k; the final call pads with the last
        # frame, which clamping to it reproduces.
        t = _ranks(counts)[:, None] * self.lfr_n + np.arange(self.lfr_m)[None, :]
        t = np.minimum(t, last[:, None])
        feats = torch.zeros(0, self.feature_dim, device=self.device)
        if row.size:
            index = torch.from_numpy(rows.pool_index(row[:, None], t).reshape(-1))
            feats = pool.index_select(0, index.to(self.device)).reshape(-1, self.feature_dim)
            if self._cmvn is not None:
                feats = (feats + self._cmvn[0]) * self._cmvn[1]
        feats = feats.to(self.dtype)
        ends = np.cumsum(counts)
        return [None if s < 0 else feats[e - s : e] for s, e in zip(rows.stacks, ends)]


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0 … c-1 for every count c, concatenated."""
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.arange(int(counts.sum())) - np.repeat(starts, counts)


def _lfr_counts(frames: int, lfr_m: int, lfr_n: int, final: bool) -> tuple[int, int]:
    """WavFrontendOnline.apply_lfr's counts: (stacks emitted, first frame kept back)."""
    stacks = int(math.ceil((frames - (lfr_m - 1) // 2) / lfr_n))
    last_idx = (frames - lfr_m) // lfr_n + 1
    if not final and lfr_m - (frames - last_idx * lfr_n) > 0:
        stacks = last_idx  # only complete stacks; the rest waits
    stacks = max(stacks, 0)
    return stacks, min(frames - 1, stacks * lfr_n)


def _mel_bands(banks: np.ndarray, device: torch.device) -> list[tuple]:
    """The mel product in bands of MEL_BAND_FILTERS filters, each over only the FFT
    bins its filters cover: ((first bin, end bin), (first filter, end filter),
    (bins, filters) weights). Each bin feeds at most two (neighbouring) filters, so
    the full (bins, n_mels) product multiplies mostly zeros; the bands skip them
    (2.2x faster on one core of the 2-core dev machine, 1,024 frames; 20 filters per
    band were 1.6x). Same terms, summed in another order: within float32 rounding."""
    bands = []
    for first in range(0, banks.shape[0], MEL_BAND_FILTERS):
        last = min(first + MEL_BAND_FILTERS, banks.shape[0])
        used = np.flatnonzero(banks[first:last].any(axis=0))
        low, high = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        weights = torch.from_numpy(banks[first:last, low:high].T.copy()).to(device)
        bands.append(((low, high), (first, last), weights))
    return bands


def _window(kind: str, length: int) -> np.ndarray:
    """Kaldi's frame windows (computed in double, applied in float)."""
    i = np.arange(length, dtype=np.float64)
    a = 2 * np.pi / (length - 1)
    windows = {
        "hamming": lambda: 0.54 - 0.46 * np.cos(a * i),
        "hanning": lambda: 0.5 - 0.5 * np.cos(a * i),
        "hann": lambda: 0.5 - 0.5 * np.cos(2 * np.pi / length * i),  # periodic, as knf
        "povey": lambda: (0.5 - 0.5 * np.cos(a * i)) ** 0.85,
        "rectangular": lambda: np.ones(length),
        "sine": lambda: np.sin(0.5 * a * i),
        "blackman": lambda: 0.42 - 0.5 * np.cos(a * i) + 0.08 * np.cos(2 * a * i),
    }
    if kind not in windows:
        raise ValueError(f"unsupported fbank window {kind!r}")
    return windows[kind]().astype(np.float32)


def _kaldi_mel_banks(n_mels: int, n_fft: int, fs: float) -> np.ndarray:
    """Kaldi's triangular mel filters over FFT bins 0 … n_fft/2: (n_mels, n_fft // 2 + 1).

    Kaldi never uses the Nyquist bin: its column is zero (it keeps the matmul
    on the whole, contiguous spectrum).

    Computed in float32 like kaldi-native-fbank, so the weights match to the bit
    or nearly.
    """
    f32 = np.float32

    def mel(freq: np.ndarray) -> np.ndarray:
        return f32(1127.0) * np.log(f32(1.0) + freq / f32(700.0))

    nyquist = f32(0.5) * f32(fs)
    low, high = mel(f32(LOW_FREQ)), mel(nyquist)
    delta = (high - low) / f32(n_mels + 1)
    bins = mel(f32(fs) / f32(n_fft) * np.arange(n_fft // 2, dtype=f32))
    banks = np.zeros((n_mels, n_fft // 2), dtype=f32)
    for b in range(n_mels):
        left, center, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        rising = (bins > left) & (bins <= center)
        falling = (bins > center) & (bins < right)
        banks[b, rising] = (bins[rising] - left) / (center - left)
        banks[b, falling] = (right - bins[falling]) / (right - center)
    return np.pad(banks, ((0, 0), (0, 1)))
