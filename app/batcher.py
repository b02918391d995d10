"""Dynamic batching: concurrent requests share one forward pass.

Each image becomes a ``Job`` with its own ``asyncio.Future``. One worker task
takes jobs from the queue in batches chosen by ``collect_batch`` (a pure
function: it only looks at arrival times and the clock) and runs the batch in an
executor thread, so the event loop keeps accepting uploads while the model runs.

Admission (how many images may be in flight, 429 otherwise) is ``app.admission``'s; the
batcher owns one ``AdmissionControl`` because the images still being decoded decide whether a
batch waits for companions.

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
from dataclasses import InitVar, dataclass, field
from typing import Generic, TypeVar

from app.admission import Admission, AdmissionControl
from app.errors import ApiError, DeadlineExceeded, InferenceFailed, ShuttingDown
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


PlanFn = Callable[[Sequence[float], float, int, float, bool, "int | None"], BatchPlan]


@dataclass
class Batcher(Generic[P, R]):
    """Queue + worker. ``run_batch`` maps payloads to results in order; it runs in ``executor``."""

    run_batch: Callable[[list[P]], list[R]]
    executor: Executor
    metrics: Metrics
    max_batch_size: int = 16
    max_wait_s: float = 0.005
    # AdmissionControl's: images in flight, request timeout (DIF_REQUEST_TIMEOUT_S), decode threads.
    capacity: InitVar[int] = 256
    request_timeout_s: InitVar[float] = math.inf
    decode_threads: InitVar[int] = 1
    plan: PlanFn = collect_batch
    clock: Callable[[], float] = time.monotonic
    admission: AdmissionControl = field(init=False)
    _queue: deque[Job[P, R]] = field(default_factory=deque, init=False)
    _arrived: asyncio.Event | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _draining: bool = field(default=False, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self, capacity: int, request_timeout_s: float, decode_threads: int) -> None:
        self.admission = AdmissionControl(self.metrics, capacity, request_timeout_s, decode_threads)

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

    @contextmanager
    def admit(self, count: int) -> Iterator[Admission]:
        """Reserve ``count`` slots from upload to answer; a full or backlogged service answers 429 at once."""
        if self._closed or not self.running:
            raise ShuttingDown()
        admission = self.admission.reserve(count)
        try:
            yield admission
        finally:
            self.admission.release(admission)
            self._wake()  # images that will never come (a decode failed) must not hold a batch back

    def submit(self, payload: P, deadline: float, admission: Admission | None = None) -> asyncio.Future[Done[R]]:
        if self._closed or not self.running:
            raise ShuttingDown()
        self.admission.submitted(admission)
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
                             self.admission.incoming)
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
        self.admission.observe_forward(elapsed, len(live))
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
