"""The running service: settings, metrics, engine, batcher, thread pools and readiness.

Lifecycle (driven by the app's lifespan and by the server's signal handler):
STARTING (artifacts loaded, warming up) -> READY -> DRAINING (SIGTERM seen) -> STOPPED.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from app.batcher import Batcher
from app.engine import Engine, ImageScores, ModelSet, PreparedImage, resolve_device
from app.metrics import Metrics
from app.settings import Settings
from dif.decision import OperatingPoint
from dif.provenance import c2pa_version

log = logging.getLogger("app.service")
T = TypeVar("T")


class Phase(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"
    STOPPED = "stopped"


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.device = resolve_device(settings.device)
        # Read and checked here, before the server starts: a bad bundle is a one-line configuration
        # error (`dif serve: error: DIF_C2PA_TRUST_ANCHORS=...`), like an invalid DIF_* value.
        self.trust_anchors = settings.trust_anchors_pem()
        self.engine = Engine(settings.fingerprints_dir, settings.extractor_dir, self.device, settings.max_pixels,
                             settings.precision, settings.provenance, self.trust_anchors)
        # Threads are started lazily by the pools. One inference thread: batches run one at a
        # time and each uses all of torch's intra-op threads.
        self.decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="dif-decode")
        self.infer_pool = ThreadPoolExecutor(1, thread_name_prefix="dif-infer")
        self.batcher: Batcher[PreparedImage, ImageScores] = Batcher(
            run_batch=self.engine.run_batch, executor=self.infer_pool, metrics=self.metrics,
            max_batch_size=settings.max_batch_size, max_wait_s=settings.max_wait_s,
            capacity=settings.queue_capacity, request_timeout_s=settings.request_timeout_s,
            decode_threads=settings.decode_threads,
        )
        self.phase = Phase.STARTING
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warmup: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._shutdown_at: float | None = None  # monotonic time of the first begin_shutdown

    async def start(self) -> None:
        """Load and validate the artifacts (a bad set stops startup), start the batcher, warm up."""
        self._loop = asyncio.get_running_loop()
        if self.settings.torch_threads > 0:
            torch.set_num_threads(self.settings.torch_threads)
        model = await asyncio.to_thread(self.engine.load)
        self.engine.install(model)
        self._publish(model)
        if self.settings.provenance:
            await asyncio.to_thread(self._log_provenance)
        self.batcher.start()
        # Warm-up runs after startup so /healthz answers and /readyz says 503 meanwhile.
        self._warmup = asyncio.create_task(self._warm_up(model), name="dif-warmup")

    def _log_provenance(self) -> None:
        # c2pa_version also loads the native library (~60 ms), which the first upload with a
        # manifest would otherwise pay for.
        version = c2pa_version()
        if version is None:
            log.warning("provenance: the c2pa bindings cannot be loaded; C2PA manifests are reported "
                        "invalid, never validated (XMP, EXIF and PNG text are still read)")
            return
        anchors = f"trust anchors from {self.settings.c2pa_trust_anchors}" if self.trust_anchors \
            else "no trust anchors (DIF_C2PA_TRUST_ANCHORS unset): no signer is trusted, no manifest decides a verdict"
        log.info("provenance: %s; %s", version, anchors)

    async def _warm_up(self, model: ModelSet) -> None:
        started = time.perf_counter()
        try:
            per_image_s = await self._in_infer_thread(self.engine.warm_up, model)
        except Exception:
            log.exception("warm-up failed; the service stays unready")
            self.phase = Phase.FAILED
            return
        # Admission estimates the backlog from measured costs from the very first request on.
        self.batcher.admission.seed_costs(per_image_s)
        if self.phase is Phase.STARTING:
            self.phase = Phase.READY
            self.metrics.ready.set(1)
            log.info("ready: %d generators, warm-up took %.2fs", len(model.names), time.perf_counter() - started)

    def begin_shutdown(self) -> None:
        """Flip readiness and flush the queue. Safe to call from a signal handler or another thread."""
        if self.phase is Phase.STOPPED:
            return
        if self._shutdown_at is None:
            self._shutdown_at = time.monotonic()
        self.phase = Phase.DRAINING
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # Metrics and the batcher take locks or touch the loop: do that on the loop.
            loop.call_soon_threadsafe(self._drain_now)

    def _drain_now(self) -> None:
        self.metrics.ready.set(0)
        self.batcher.begin_drain()

    async def stop(self) -> None:
        """Answer every accepted image, then release the threads."""
        self.begin_shutdown()
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            await asyncio.gather(self._warmup, return_exceptions=True)
        await self.batcher.stop(self.drain_time_left_s())
        self.phase = Phase.STOPPED
        self.metrics.ready.set(0)
        # No waiting here: a forward pass stuck past the drain timeout must not freeze the event loop.
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.infer_pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")

    def drain_time_left_s(self) -> float:
        """What is left of DIF_DRAIN_TIMEOUT_S since shutdown began.

        One budget for the whole drain: uvicorn's wait for open requests and then the queue's
        flush share it, so SIGTERM-to-exit stays within DIF_DRAIN_TIMEOUT_S (plus teardown) and a
        grace period sized from it is enough, instead of each phase taking the full timeout.
        """
        if self._shutdown_at is None:
            return self.settings.drain_timeout_s
        return max(0.0, self.settings.drain_timeout_s - (time.monotonic() - self._shutdown_at))

    async def reload(self) -> ModelSet:
        """Load and warm a new set beside the serving one, then swap it in."""
        async with self._reload_lock:
            try:
                model = await asyncio.to_thread(self.engine.load)
                await self._in_infer_thread(self.engine.warm_up, model)
            except Exception:
                self.metrics.reloads.labels(result="failure").inc()
                raise
            self.engine.install(model)
            self._publish(model)
            self.metrics.reloads.labels(result="success").inc()
            return model

    async def prepare(self, data: bytes, point: OperatingPoint, filename: str | None = None) -> PreparedImage:
        loop = asyncio.get_running_loop()
        item = await loop.run_in_executor(self.decode_pool, self.engine.prepare, data, time.perf_counter(), point,
                                          filename)
        # Provenance is read on the decode threads too, so admission counts it in their cost.
        self.batcher.admission.observe_prepare(item.decode_s + item.provenance_s + item.crop_s)
        return item

    def _publish(self, model: ModelSet) -> None:
        self.metrics.set_generators(model.names, model.extractor_key, model.detector.crop_size)

    async def _in_infer_thread(self, fn: Callable[[ModelSet], T], model: ModelSet) -> T:
        # The inference thread, so warm-ups never run concurrently with a live batch.
        return await asyncio.get_running_loop().run_in_executor(self.infer_pool, fn, model)
