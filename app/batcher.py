"""Dynamic batching: concurrent requests share one forward pass.

Each image becomes a ``Job`` with its own ``asyncio.Future``. One worker task
takes jobs from the queue in batches chosen by ``collect_batch`` (a pure
function: it only looks at arrival times and the clock) and runs the batch in an
executor thread, so the event loop keeps accepting uploads while the model runs.

Failure rules: a batch that raises fails every future in it; if the worker loop
itself crashes, every queued future fails and the worker restarts; on shutdown the
queue is flushed without waiting for companions and whatever is left is failed,
so no request ever hangs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.errors import ApiError, DeadlineExceeded, InferenceFailed, QueueFull, ShuttingDown
from app.metrics import Metrics

log = logging.getLogger("app.batcher")

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchPlan:
    """``take`` jobs to run now, or (``take == 0``) wait up to ``wait_s`` for more."""

    take: int
    wait_s: float = 0.0


def collect_batch(arrivals: Sequence[float], now: float, max_batch_size: int, max_wait_s: float,
                  flush: bool = False, incoming: int | None = None) -> BatchPlan:
    """Decide the next batch from the queued jobs' arrival times (oldest first).

    A full batch goes at once. Otherwise the oldest job may wait ``max_wait_s`` for
    companions; after that (or when flushing for shutdown) whatever is queued goes.
    ``incoming`` is how many admitted images are still being decoded: when none are,
    no companion is on its way, so waiting would only add latency.
    """
    if not arrivals:
        return BatchPlan(0, math.inf)
    if len(arrivals) >= max_batch_size:
        return BatchPlan(max_batch_size)
    waited = now - arrivals[0]
    if flush or waited >= max_wait_s or incoming == 0:
        return BatchPlan(len(arrivals))
    return BatchPlan(0, max_wait_s - waited)


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


@dataclass(frozen=True)
class Done(Generic[R]):
    """A job's result plus what the batcher saw of it."""

    value: R
    queue_wait_s: float
    batch_size: int


@dataclass(eq=False)
class Job(Generic[P, R]):
    payload: P
    future: asyncio.Future[Done[R]]
    enqueued_at: float
    deadline: float


@dataclass
class Admission:
    """Slots reserved for one request; counts the images it has yet to submit."""

    count: int
    unsubmitted: int


PlanFn = Callable[[Sequence[float], float, int, float, bool, "int | None"], BatchPlan]


@dataclass
class Batcher(Generic[P, R]):
    """Queue + worker. ``run_batch`` maps payloads to results in order; it runs in ``executor``."""

    run_batch: Callable[[list[P]], list[R]]
    executor: Executor
    metrics: Metrics
    max_batch_size: int = 16
    max_wait_s: float = 0.005
    capacity: int = 256
    # A request must be answered within this (DIF_REQUEST_TIMEOUT_S); admission keeps the
    # estimated backlog within WAIT_BUDGET_FRACTION of it (see ``admission_refusal``).
    request_timeout_s: float = math.inf
    decode_threads: int = 1
    plan: PlanFn = collect_batch
    clock: Callable[[], float] = time.monotonic
    _queue: deque[Job[P, R]] = field(default_factory=deque, init=False)
    _admitted: int = field(default=0, init=False)
    _incoming: int = field(default=0, init=False)  # admitted, not yet submitted (decoding)
    _arrived: asyncio.Event | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _draining: bool = field(default=False, init=False)
    _closed: bool = field(default=False, init=False)
    # Wall-clock seconds per image of the forward pass and of decode + crop, smoothed
    # (exponentially, so they follow load changes within a few batches): they estimate how long
    # the admitted backlog takes, for admission and Retry-After.
    _per_image_s: float = field(default=0.01, init=False)
    _prepare_per_image_s: float = field(default=0.0, init=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="dif-batcher")
        self._task.add_done_callback(self._on_worker_exit)

    def begin_drain(self) -> None:
        """Stop waiting for companions: every queued job goes out as soon as the model is free."""
        self._draining = True
        self._wake()

    async def stop(self, timeout_s: float) -> None:
        """Refuse new jobs, run the queued ones (up to ``timeout_s``), fail any left."""
        self._closed = True
        self.begin_drain()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except asyncio.TimeoutError:
                log.error("batcher did not drain within %.1fs; failing %d queued images", timeout_s, len(self._queue))
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._fail_queued(ShuttingDown())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- admission and submission ------------------------------------------------------------

    def seed_costs(self, forward_per_image_s: float) -> None:
        """Start the forward-pass estimate from a measured value (the warm-up) instead of a guess."""
        self._per_image_s = forward_per_image_s

    def observe_prepare(self, seconds: float) -> None:
        """One image's decode + crop time (from the decode pool)."""
        self._prepare_per_image_s = 0.8 * self._prepare_per_image_s + 0.2 * seconds

    @property
    def wait_budget_s(self) -> float:
        return WAIT_BUDGET_FRACTION * self.request_timeout_s

    def estimated_wait_s(self, extra: int = 0) -> float:
        return estimated_wait_s(self._admitted + extra, self._per_image_s, self._prepare_per_image_s,
                                self.decode_threads)

    @contextmanager
    def admit(self, count: int) -> Iterator[Admission]:
        """Reserve ``count`` slots from upload to answer; a full or backlogged service answers 429 at once."""
        if self._closed or not self.running:
            raise ShuttingDown()
        wait_s = self.estimated_wait_s(count)
        refusal = admission_refusal(self._admitted, count, self.capacity, wait_s, self.wait_budget_s)
        if refusal is not None:
            raise QueueFull(self._refusal_message(refusal, wait_s), refusal.retry_after_s)
        admission = Admission(count, count)
        self._admitted += count
        self._incoming += count
        self.metrics.in_flight.set(self._admitted)
        try:
            yield admission
        finally:
            self._admitted -= count
            self._incoming -= admission.unsubmitted
            admission.unsubmitted = 0
            self.metrics.in_flight.set(self._admitted)
            self._wake()  # images that will never come (a decode failed) must not hold a batch back

    def _refusal_message(self, refusal: Refusal, wait_s: float) -> str:
        if refusal.reason == "capacity":
            return (f"{self._admitted} images are already in flight (DIF_QUEUE_CAPACITY={self.capacity}); "
                    "retry later")
        return (f"{self._admitted} images in flight would take about {wait_s:.1f}s, more than the "
                f"{self.wait_budget_s:.1f}s of backlog admitted ({WAIT_BUDGET_FRACTION:g} x DIF_REQUEST_TIMEOUT_S); "
                "retry later")

    def submit(self, payload: P, deadline: float, admission: Admission | None = None) -> asyncio.Future[Done[R]]:
        if self._closed or not self.running:
            raise ShuttingDown()
        if admission is not None and admission.unsubmitted > 0:
            admission.unsubmitted -= 1
            self._incoming -= 1
        future: asyncio.Future[Done[R]] = asyncio.get_running_loop().create_future()
        self._queue.append(Job(payload, future, self.clock(), deadline))
        self.metrics.queue_depth.set(len(self._queue))
        self._wake()
        return future

    # -- worker ------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    async def _supervise(self) -> None:
        while True:
            try:
                await self._loop()
                return
            except asyncio.CancelledError:
                self._fail_queued(ShuttingDown())
                raise
            except Exception:
                log.exception("batcher worker crashed; failing %d queued images and restarting", len(self._queue))
                self.metrics.worker_restarts.inc()
                self._fail_queued(InferenceFailed("the batching worker crashed; retry the request"))

    async def _loop(self) -> None:
        assert self._arrived is not None
        while not (self._closed and not self._queue):
            self._drop_finished()
            arrivals = [job.enqueued_at for job in self._queue]
            plan = self.plan(arrivals, self.clock(), self.max_batch_size, self.max_wait_s, self._draining,
                             self._incoming)
            if plan.take <= 0:
                await self._wait_for_arrival(plan.wait_s)
                continue
            batch = [self._queue.popleft() for _ in range(min(plan.take, len(self._queue)))]
            self.metrics.queue_depth.set(len(self._queue))
            await self._run(batch)

    async def _wait_for_arrival(self, timeout_s: float) -> None:
        assert self._arrived is not None
        self._arrived.clear()
        if self._closed and not self._queue:
            return
        try:
            await asyncio.wait_for(self._arrived.wait(), None if math.isinf(timeout_s) else timeout_s)
        except asyncio.TimeoutError:
            pass

    def _drop_finished(self) -> None:
        """Forget jobs nobody waits for (request timed out or client went away); fail expired ones."""
        now = self.clock()
        kept: deque[Job[P, R]] = deque()
        for job in self._queue:
            if job.future.done():
                continue
            if now >= job.deadline:
                job.future.set_exception(DeadlineExceeded("the request deadline passed while it was queued"))
                continue
            kept.append(job)
        if len(kept) != len(self._queue):
            self._queue = kept
            self.metrics.queue_depth.set(len(kept))

    async def _run(self, batch: list[Job[P, R]]) -> None:
        started = self.clock()
        live = [job for job in batch if not job.future.done()]
        if not live:
            return
        for job in live:
            self.metrics.queue_wait.observe(started - job.enqueued_at)
        self.metrics.batch_size.observe(len(live))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, [job.payload for job in live])
            if len(results) != len(live):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(live)} inputs")
        except asyncio.CancelledError:
            _fail(live, ShuttingDown("the service stopped while this image was being scored"))
            raise
        except Exception as exc:
            log.exception("batch of %d images failed", len(live))
            self.metrics.batch_failures.inc()
            error = exc if isinstance(exc, ApiError) else InferenceFailed(
                f"scoring the batch of {len(live)} images failed: {type(exc).__name__}: {exc}")
            _fail(live, error)
            return
        elapsed = self.clock() - started
        self.metrics.inference.observe(elapsed)
        self._per_image_s = 0.8 * self._per_image_s + 0.2 * elapsed / len(live)
        for job, value in zip(live, results, strict=True):
            if not job.future.done():
                job.future.set_result(Done(value, started - job.enqueued_at, len(live)))

    def _fail_queued(self, error: Exception) -> None:
        jobs = list(self._queue)
        self._queue.clear()
        self.metrics.queue_depth.set(0)
        _fail(jobs, error)

    def _on_worker_exit(self, task: asyncio.Task[None]) -> None:
        # _supervise only ends on stop or cancel; anything else must not pass silently.
        if not task.cancelled() and task.exception() is not None:
            log.error("batcher supervisor died", exc_info=task.exception())
        self._fail_queued(ShuttingDown("the batching worker stopped"))


def _fail(jobs: Sequence[Job[P, R]], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
