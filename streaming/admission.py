"""Admission control: refuse a new live stream (1013) rather than let every
stream fall behind real time (docs/design.md §8). Pure and clock-free.

Capacity model. A live stream sends one chunk of `d` seconds of audio every
`d` seconds. The runner measures every online batch: `b` chunks took `t`
seconds. We fit the cost per second of audio, y(b) = t / d ≈ α + β·b, by
least squares with exponential forgetting. N streams batched by up to B need
load(N) = α + β·N of one engine thread if N ≤ B, else N/B · (α + β·B).
A stream is admitted if load(N + 1) stays under the target utilisation.
Until batches of two different sizes have been seen the intercept is
unknown, and the model falls back to cost proportional to batch size, which
underestimates what batching saves: it errs on the side of keeping real time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionPolicy:
    target_utilization: float = 0.8  # leave headroom for final passes and jitter
    max_streams: int | None = None  # an operator's hard cap, on top of the model
    saturated_utilization: float = 0.97  # measured: the engine thread is never idle
    enabled: bool = True  # off: admit everything (benchmarks that look for the limit)


class CapacityModel:
    def __init__(self, forgetting: float = 0.98) -> None:
        self.forgetting = forgetting
        self._sums = [0.0] * 6  # weight, Σb, Σy, Σb², Σb·y, Σy/b
        self._sizes: set[int] = set()

    def record(self, batch_size: int, compute_s: float, chunk_audio_s: float) -> None:
        if batch_size < 1 or chunk_audio_s <= 0:
            return
        b, y = float(batch_size), compute_s / chunk_audio_s
        decayed = [value * self.forgetting for value in self._sums]
        for i, term in enumerate((1.0, b, y, b * b, b * y, y / b)):
            decayed[i] += term
        self._sums = decayed
        self._sizes.add(batch_size)

    @property
    def known(self) -> bool:
        return self._sums[0] > 0

    def coefficients(self) -> tuple[float, float]:
        """(α, β): fixed cost per batch and cost per stream, per second of audio."""
        w, sb, sy, sbb, sby, sy_per_b = self._sums
        denominator = w * sbb - sb * sb
        if len(self._sizes) > 1 and denominator > 1e-12:
            beta = (w * sby - sb * sy) / denominator
            alpha = (sy - beta * sb) / w
            if beta > 0 and alpha >= 0:
                return alpha, beta
        return 0.0, sy_per_b / w  # proportional: no batching benefit assumed

    def load(self, streams: int, max_batch_size: int) -> float:
        """Fraction of one engine thread that `streams` live streams need."""
        alpha, beta = self.coefficients()
        if streams <= max_batch_size:
            return alpha + beta * streams if streams else 0.0
        return streams / max_batch_size * (alpha + beta * max_batch_size)

    def capacity(self, max_batch_size: int, target: float, limit: int = 100_000) -> int:
        """The most streams whose load stays within `target`."""
        low, high = 0, limit
        while low < high:
            middle = (low + high + 1) // 2
            if self.load(middle, max_batch_size) <= target + 1e-9:  # float noise
                low = middle
            else:
                high = middle - 1
        return low


class UtilizationMeter:
    """Share of recent wall time the engine thread spent computing."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._spans: deque[tuple[float, float]] = deque()

    def record(self, start: float, end: float) -> None:
        self._spans.append((start, end))

    def utilization(self, now: float) -> float:
        horizon = now - self.window_s
        while self._spans and self._spans[0][1] <= horizon:
            self._spans.popleft()
        busy = sum(end - max(start, horizon) for start, end in self._spans)
        return min(1.0, busy / self.window_s)


class AdmissionController:
    def __init__(self, policy: AdmissionPolicy, max_batch_size: int) -> None:
        self.policy = policy
        self.max_batch_size = max_batch_size
        self.model = CapacityModel()
        self.meter = UtilizationMeter()

    def capacity(self) -> int | None:
        """Streams this engine can keep in real time, as measured so far."""
        limits = [self.policy.max_streams] if self.policy.max_streams is not None else []
        if self.model.known:
            target = self.policy.target_utilization
            limits.append(self.model.capacity(self.max_batch_size, target))
        return min(limits) if limits else None

    def record_batch(self, batch_size: int, start: float, end: float, chunk_audio_s: float) -> None:
        """An online batch of `batch_size` chunks ran from `start` to `end`."""
        self.meter.record(start, end)
        self.model.record(batch_size, end - start, chunk_audio_s)

    def refusal(self, live_streams: int, now: float) -> str | None:
        """Why one more live stream would be refused, or None to admit it."""
        if not self.policy.enabled or live_streams == 0:
            return None  # a lone stream pushes nobody behind: better slow than refused
        capacity = self.capacity()
        if capacity is not None and live_streams + 1 > capacity:
            return (f"the server is at capacity ({capacity} live streams in real time); "
                    "try again later or another server")
        if self.meter.utilization(now) >= self.policy.saturated_utilization:
            return "the server is saturated right now; try again in a moment"
        return None
