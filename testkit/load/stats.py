"""Every request of a load run as a ``Sample``; ``LoadResult`` turns samples into throughput,
percentiles and status counts. Nothing here knows about a particular bench's report."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One request: when it was due, when it really went out, when it ended and how."""

    scheduled: float  # monotonic; for closed loop, the moment it was sent
    sent: float
    done: float
    status: int  # 0: transport error or client timeout (no HTTP answer)
    retry_after: str | None = None
    error: str | None = None  # exception type when there was no HTTP answer
    timings: dict[str, float] | None = None
    batch_size: int | None = None

    @property
    def latency(self) -> float:
        return self.done - self.scheduled


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class LoadResult:
    """Samples of one run; ``window`` is the measured interval (warm-up and tail excluded)."""

    label: str
    mode: str  # "closed" or "open"
    level: float  # concurrency (closed) or offered rate in requests/s (open)
    window: tuple[float, float]
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.window[1] - self.window[0]

    @property
    def measured(self) -> list[Sample]:
        """Closed loop: answers that arrived inside the window. Open loop: requests due inside it."""
        lo, hi = self.window
        if self.mode == "open":
            return [s for s in self.samples if lo <= s.scheduled < hi]
        return [s for s in self.samples if lo <= s.done <= hi]

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.measured if s.status == 200]

    @property
    def throughput(self) -> float:
        """Successful answers per second that *arrived* inside the window (both modes)."""
        lo, hi = self.window
        return sum(1 for s in self.samples if s.status == 200 and lo <= s.done <= hi) / self.seconds

    def latency_ms(self, q: float) -> float:
        return percentile([s.latency for s in self.ok], q) * 1000

    def send_lag_ms(self, q: float) -> float:
        """How late the client sent requests (open loop): large values mean the generator could not keep up."""
        return percentile([s.sent - s.scheduled for s in self.measured], q) * 1000

    def statuses(self) -> dict[int, int]:
        return dict(sorted(Counter(s.status for s in self.measured).items()))

    def mean_timing(self, key: str, per_image: bool = False) -> float:
        values = [s.timings[key] / ((s.batch_size or 1) if per_image else 1) for s in self.ok if s.timings]
        return statistics.fmean(values) if values else math.nan

    @property
    def mean_batch(self) -> float:
        sizes = [s.batch_size for s in self.ok if s.batch_size]
        return statistics.fmean(sizes) if sizes else math.nan

    def summary(self) -> dict[str, Any]:
        statuses = self.statuses()
        measured = len(self.measured)
        return {
            "label": self.label, "mode": self.mode, "level": self.level, "seconds": self.seconds,
            "requests": measured, "ok": len(self.ok), "throughput": self.throughput,
            "p50_ms": self.latency_ms(0.5), "p99_ms": self.latency_ms(0.99),
            "rejected_429": statuses.get(429, 0), "errors": measured - len(self.ok) - statuses.get(429, 0),
            "statuses": {str(k): v for k, v in statuses.items()}, "mean_batch": self.mean_batch,
            "transport_errors": dict(Counter(s.error for s in self.measured if s.error)),
            "send_lag_p99_ms": self.send_lag_ms(0.99),
        }
