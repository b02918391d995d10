"""Admission control: whether one more request's images may enter the batcher, or get 429 at once.

The policy is pure (``admission_refusal``, ``estimated_wait_s``); ``AdmissionControl`` keeps the
counts it needs (images admitted, images admitted but still being decoded) and the smoothed
per-image costs that estimate how long the admitted backlog takes, for admission and Retry-After.
The batcher owns one and tells it when images are submitted and batches are scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.errors import QueueFull
from app.metrics import Metrics

# Share of the request timeout that the admitted backlog may take. The rest is margin for what
# the estimate does not see: the upload and multipart parsing before admission, and a sudden
# change of per-image cost (bigger images, another process taking the CPU) before the smoothed
# costs catch up.
WAIT_BUDGET_FRACTION = 0.5


@dataclass(frozen=True)
class Refusal:
    """Why an admission is refused, and in how many whole seconds a retry has a chance."""

    reason: str
    retry_after_s: int


def estimated_wait_s(backlog: int, forward_per_image_s: float, prepare_per_image_s: float,
                     decode_threads: int) -> float:
    """Seconds until ``backlog`` admitted images are answered, at the pace of the slower stage.

    Images flow through decoding (``decode_threads`` in parallel) and then the single inference
    thread, so the pipeline drains at the slower of the two rates. Both costs are wall-clock
    times measured under the current load, so CPU contention between the stages is included.
    """
    per_image = max(forward_per_image_s, prepare_per_image_s / max(1, decode_threads))
    return backlog * per_image


def admission_refusal(in_flight: int, count: int, capacity: int, wait_s: float, budget_s: float) -> Refusal | None:
    """Admit ``count`` more images, or refuse them (``None`` admits).

    ``wait_s`` is the estimated wait of the whole backlog including the new images. Refused when
    the images would exceed ``capacity``, or when the backlog already holds more work than
    ``budget_s`` (part of the request timeout): admitting then would only queue work that times
    out (504) after holding memory and a slot. An idle service always admits, so a request that
    is slow on its own is served rather than refused forever.
    """
    excess_s = wait_s - budget_s
    if in_flight + count > capacity:
        drain_s = wait_s * (in_flight + count - capacity) / max(1, in_flight + count)
        return Refusal("capacity", _retry_after(drain_s, budget_s))
    if in_flight > 0 and excess_s > 0:
        return Refusal("deadline", _retry_after(excess_s, budget_s))
    return None


def _retry_after(seconds: float, budget_s: float) -> int:
    # Whole seconds (RFC 9110 delay-seconds), at least 1; never more than the wait budget, since
    # the backlog turns over completely within it.
    upper = max(1, math.ceil(budget_s)) if math.isfinite(budget_s) else 3600
    return min(max(1, math.ceil(seconds)), upper)


@dataclass
class Admission:
    """Slots reserved for one request; counts the images it has yet to submit."""

    count: int
    unsubmitted: int


@dataclass
class AdmissionControl:
    """The admitted backlog of one batcher and the costs that estimate how long it takes."""

    metrics: Metrics
    capacity: int = 256
    # A request must be answered within this (DIF_REQUEST_TIMEOUT_S); admission keeps the
    # estimated backlog within WAIT_BUDGET_FRACTION of it (see ``admission_refusal``).
    request_timeout_s: float = math.inf
    decode_threads: int = 1
    admitted: int = field(default=0, init=False)
    incoming: int = field(default=0, init=False)  # admitted, not yet submitted (decoding)
    # Wall-clock seconds per image of the forward pass and of decode + crop, smoothed
    # (exponentially, so they follow load changes within a few batches).
    _per_image_s: float = field(default=0.01, init=False)
    _prepare_per_image_s: float = field(default=0.0, init=False)

    def seed_costs(self, forward_per_image_s: float) -> None:
        """Start the forward-pass estimate from a measured value (the warm-up) instead of a guess."""
        self._per_image_s = forward_per_image_s

    def observe_prepare(self, seconds: float) -> None:
        """One image's decode + crop time (from the decode pool)."""
        self._prepare_per_image_s = 0.8 * self._prepare_per_image_s + 0.2 * seconds

    def observe_forward(self, seconds: float, images: int) -> None:
        """One batch of ``images`` scored in ``seconds``."""
        self._per_image_s = 0.8 * self._per_image_s + 0.2 * seconds / images

    @property
    def wait_budget_s(self) -> float:
        return WAIT_BUDGET_FRACTION * self.request_timeout_s

    def estimated_wait_s(self, extra: int = 0) -> float:
        return estimated_wait_s(self.admitted + extra, self._per_image_s, self._prepare_per_image_s,
                                self.decode_threads)

    def reserve(self, count: int) -> Admission:
        """``count`` slots for one request, or ``QueueFull`` (429) when the service is full or backlogged."""
        wait_s = self.estimated_wait_s(count)
        refusal = admission_refusal(self.admitted, count, self.capacity, wait_s, self.wait_budget_s)
        if refusal is not None:
            raise QueueFull(self._refusal_message(refusal, wait_s), refusal.retry_after_s)
        self.admitted += count
        self.incoming += count
        self.metrics.in_flight.set(self.admitted)
        return Admission(count, count)

    def submitted(self, admission: Admission | None) -> None:
        """One of the request's images reached the queue: it is no longer on its way."""
        if admission is not None and admission.unsubmitted > 0:
            admission.unsubmitted -= 1
            self.incoming -= 1

    def release(self, admission: Admission) -> None:
        """The request is answered; images it never submitted (a decode failed) will not come."""
        self.admitted -= admission.count
        self.incoming -= admission.unsubmitted
        admission.unsubmitted = 0
        self.metrics.in_flight.set(self.admitted)

    def _refusal_message(self, refusal: Refusal, wait_s: float) -> str:
        if refusal.reason == "capacity":
            return (f"{self.admitted} images are already in flight (DIF_QUEUE_CAPACITY={self.capacity}); "
                    "retry later")
        return (f"{self.admitted} images in flight would take about {wait_s:.1f}s, more than the "
                f"{self.wait_budget_s:.1f}s of backlog admitted ({WAIT_BUDGET_FRACTION:g} x DIF_REQUEST_TIMEOUT_S); "
                "retry later")
