"""The batching and admission policies (pure ``collect_batch``, ``estimated_wait_s``,
``admission_refusal``) and the Batcher's failure rules, without a server."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.admission import WAIT_BUDGET_FRACTION, Refusal, admission_refusal, estimated_wait_s
from app.batcher import Batcher, BatchPlan, collect_batch
from app.errors import DeadlineExceeded, InferenceFailed, QueueFull, ShuttingDown
from app.metrics import Metrics

# -- collect_batch -----------------------------------------------------------------------------


def test_empty_queue_waits_for_an_arrival() -> None:
    assert collect_batch([], now=10.0, max_batch_size=4, max_wait_s=0.005) == BatchPlan(0, math.inf)


def test_full_batch_goes_at_once_and_never_exceeds_the_maximum() -> None:
    assert collect_batch([1.0] * 4, now=1.0, max_batch_size=4, max_wait_s=1.0) == BatchPlan(4)
    assert collect_batch([1.0] * 9, now=1.0, max_batch_size=4, max_wait_s=1.0) == BatchPlan(4)


def test_partial_batch_waits_only_the_rest_of_the_oldest_jobs_budget() -> None:
    plan = collect_batch([10.000, 10.002], now=10.003, max_batch_size=8, max_wait_s=0.005)
    assert plan.take == 0
    assert plan.wait_s == pytest.approx(0.002)


def test_partial_batch_goes_when_the_oldest_job_has_waited_enough() -> None:
    assert collect_batch([10.0, 10.004], now=10.005, max_batch_size=8, max_wait_s=0.005) == BatchPlan(2)


def test_flush_sends_whatever_is_queued() -> None:
    assert collect_batch([10.0], now=10.0, max_batch_size=8, max_wait_s=5.0, flush=True) == BatchPlan(1)


def test_no_wait_when_no_admitted_image_is_still_on_its_way() -> None:
    assert collect_batch([10.0], now=10.0, max_batch_size=8, max_wait_s=5.0, incoming=0) == BatchPlan(1)
    assert collect_batch([10.0], now=10.0, max_batch_size=8, max_wait_s=5.0, incoming=2) == BatchPlan(0, 5.0)


def test_zero_wait_and_batch_size_one_never_wait() -> None:
    assert collect_batch([3.0], now=3.0, max_batch_size=8, max_wait_s=0.0) == BatchPlan(1)
    assert collect_batch([3.0, 3.0], now=3.0, max_batch_size=1, max_wait_s=1.0) == BatchPlan(1)


# -- estimated_wait_s and admission_refusal ---------------------------------------------------


def test_the_backlog_drains_at_the_pace_of_the_slower_stage() -> None:
    # Model-bound (a CPU): 10 images x 80 ms of forward pass; decoding on 2 threads keeps up.
    assert estimated_wait_s(10, 0.080, 0.040, decode_threads=2) == pytest.approx(0.8)
    # Decode-bound (a GPU): 5 ms forward, 60 ms decode shared by 2 threads = 30 ms per image.
    assert estimated_wait_s(10, 0.005, 0.060, decode_threads=2) == pytest.approx(0.3)
    assert estimated_wait_s(0, 0.1, 0.1, decode_threads=1) == 0.0


def test_admission_admits_while_capacity_and_the_wait_budget_allow() -> None:
    assert admission_refusal(in_flight=10, count=1, capacity=256, wait_s=2.0, budget_s=15.0) is None
    assert admission_refusal(in_flight=255, count=1, capacity=256, wait_s=14.9, budget_s=15.0) is None


def test_admission_refuses_past_capacity_with_the_time_to_drain_the_excess() -> None:
    # 4 + 4 images over a capacity of 6, 8 images take 4 s: the 2 extra ones drain in 1 s.
    assert admission_refusal(in_flight=4, count=4, capacity=6, wait_s=4.0, budget_s=15.0) == Refusal("capacity", 1)


def test_admission_refuses_a_backlog_that_would_outlast_the_budget() -> None:
    # 200 images at 80 ms = 16 s of work against a 10 s budget: retry once 6 s of it are done.
    assert admission_refusal(in_flight=199, count=1, capacity=256, wait_s=16.0, budget_s=10.0) == \
        Refusal("deadline", 6)


def test_an_idle_service_admits_even_a_request_slower_than_the_budget() -> None:
    # Refusing it would refuse it forever: it can only be served when nothing else is in flight.
    assert admission_refusal(in_flight=0, count=16, capacity=256, wait_s=40.0, budget_s=15.0) is None


def test_retry_after_is_whole_seconds_between_one_and_the_budget() -> None:
    assert admission_refusal(in_flight=5, count=1, capacity=256, wait_s=10.01, budget_s=10.0) == \
        Refusal("deadline", 1)
    assert admission_refusal(in_flight=999, count=1, capacity=256, wait_s=900.0, budget_s=10.0) == \
        Refusal("capacity", 10)
    assert admission_refusal(in_flight=99, count=1, capacity=256, wait_s=900.0, budget_s=10.0) == \
        Refusal("deadline", 10)


# -- Batcher ------------------------------------------------------------------------------------


class Recorder:
    """A ``run_batch`` that doubles its inputs, records batch sizes, and can fail or block."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.fail_next = False
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.sizes.append(len(items))
        self.release.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("GPU fell off the bus")
        return [2 * item for item in items]


def make_batcher(run: Recorder, **kwargs: object) -> Batcher[int, int]:
    options: dict[str, object] = {"max_batch_size": 4, "max_wait_s": 0.05, "capacity": 64}
    options.update(kwargs)
    return Batcher(run_batch=run, executor=ThreadPoolExecutor(1), metrics=Metrics(), **options)  # type: ignore[arg-type]


def running_batcher(run: Recorder, **kwargs: object) -> Batcher[int, int]:
    """A running batcher (call inside the event loop)."""
    batcher = make_batcher(run, **kwargs)
    batcher.start()
    return batcher


def submit_each(batcher: Batcher[int, int], values: Sequence[int]) -> list[asyncio.Future[Any]]:
    deadline = asyncio.get_running_loop().time() + 60
    return [batcher.submit(v, deadline=deadline) for v in values]


async def submit_all(batcher: Batcher[int, int], values: Sequence[int]) -> list[object]:
    return await asyncio.wait_for(asyncio.gather(*submit_each(batcher, values), return_exceptions=True), 10)


def run_rounds(run: Recorder, *rounds: Sequence[int], **kwargs: object) -> tuple[list[list[object]], Batcher[int, int]]:
    """A started batcher gets each round of values once the previous round is answered, then stops."""

    async def scenario() -> tuple[list[list[object]], Batcher[int, int]]:
        batcher = running_batcher(run, **kwargs)
        results = [await submit_all(batcher, values) for values in rounds]
        await batcher.stop(5)
        return results, batcher

    return asyncio.run(scenario())


def test_concurrent_jobs_share_batches_bounded_by_the_maximum() -> None:
    run = Recorder()
    (results,), _ = run_rounds(run, range(10))
    assert [r.value for r in results] == [2 * i for i in range(10)]  # type: ignore[attr-defined]
    assert run.sizes == [4, 4, 2]
    assert [r.batch_size for r in results] == [4] * 8 + [2] * 2  # type: ignore[attr-defined]


def test_a_failed_batch_fails_every_future_in_it_and_the_next_batch_works() -> None:
    run = Recorder()
    run.fail_next = True
    (failed, ok), batcher = run_rounds(run, [1, 2, 3], [5])
    assert run.sizes == [3, 1]
    assert all(isinstance(r, InferenceFailed) for r in failed), failed
    assert "GPU fell off the bus" in str(failed[0])
    assert ok[0].value == 10  # type: ignore[attr-defined]
    assert batcher.metrics.batch_failures._value.get() == 1


def test_a_crashing_worker_fails_all_queued_futures_then_restarts() -> None:
    run = Recorder()
    crashes = {"left": 1}

    def plan_that_crashes_once(*args: object) -> BatchPlan:
        if crashes["left"]:
            crashes["left"] -= 1
            raise ZeroDivisionError("bug in the batching policy")
        return collect_batch(*args)  # type: ignore[arg-type]

    (queued, later), batcher = run_rounds(run, [1, 2], [3], plan=plan_that_crashes_once)
    assert all(isinstance(r, InferenceFailed) for r in queued), queued
    assert later[0].value == 6  # type: ignore[attr-defined]
    assert batcher.metrics.worker_restarts._value.get() == 1


def test_admission_refuses_past_capacity_with_a_retry_after() -> None:
    async def scenario() -> None:
        batcher = running_batcher(Recorder(), capacity=3)
        with batcher.admit(2):
            with pytest.raises(QueueFull) as refused:
                with batcher.admit(2):
                    pass
            assert int(refused.value.headers["Retry-After"]) >= 1
            with batcher.admit(1):
                pass
        with batcher.admit(3):  # slots come back when requests finish
            pass
        await batcher.stop(1)
        with pytest.raises(ShuttingDown):
            with batcher.admit(1):
                pass

    asyncio.run(scenario())


def test_admission_refuses_once_the_measured_backlog_exceeds_the_budget() -> None:
    async def scenario() -> None:
        # A 2 s timeout leaves 1 s of admitted backlog; each image costs 0.3 s of forward pass.
        batcher = make_batcher(Recorder(), capacity=100, request_timeout_s=2.0)
        batcher.admission.seed_costs(0.3)
        batcher.start()
        assert batcher.admission.wait_budget_s == pytest.approx(2.0 * WAIT_BUDGET_FRACTION)
        with batcher.admit(3):  # 0.9 s
            with pytest.raises(QueueFull) as refused:
                with batcher.admit(1):  # 1.2 s > 1 s
                    pass
            assert refused.value.headers["Retry-After"] == "1"
            assert "DIF_REQUEST_TIMEOUT_S" in refused.value.message
        with batcher.admit(3):  # the backlog drained: admitted again
            pass
        # Slow decoding on one thread makes the same backlog too long as well.
        batcher.admission.seed_costs(0.01)
        for _ in range(30):
            batcher.admission.observe_prepare(0.5)
        with batcher.admit(2):
            with pytest.raises(QueueFull):
                with batcher.admit(1):
                    pass
        await batcher.stop(1)

    asyncio.run(scenario())


def test_stop_flushes_the_queue_without_waiting_for_companions() -> None:
    run = Recorder()

    async def scenario() -> tuple[list[object], float]:
        batcher = running_batcher(run, max_batch_size=64, max_wait_s=30.0)
        futures = submit_each(batcher, range(5))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.stop(10)
        results = await asyncio.gather(*futures, return_exceptions=True)
        return results, loop.time() - started

    results, elapsed = asyncio.run(scenario())
    assert [r.value for r in results] == [0, 2, 4, 6, 8]  # type: ignore[attr-defined]
    assert elapsed < 5, "draining waited for the 30 s batching window"
    assert run.sizes == [5]


def test_stop_fails_what_it_cannot_drain_in_time() -> None:
    run = Recorder()
    run.release.clear()  # the model hangs

    async def scenario() -> list[object]:
        batcher = running_batcher(run, max_batch_size=1, max_wait_s=0.0)
        futures = submit_each(batcher, range(3))
        await asyncio.sleep(0.05)
        await batcher.stop(0.2)
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
        run.release.set()
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, ShuttingDown) for r in results), results


def test_jobs_past_their_deadline_are_failed_without_running() -> None:
    run = Recorder()
    run.release.clear()

    async def scenario() -> list[object]:
        batcher = running_batcher(run, max_batch_size=1, max_wait_s=0.0)
        loop = asyncio.get_running_loop()
        blocker = batcher.submit(0, deadline=loop.time() + 60)
        await asyncio.sleep(0.05)  # the worker is now stuck on the blocker
        late = batcher.submit(1, deadline=loop.time() + 0.01)
        await asyncio.sleep(0.1)
        run.release.set()
        results = await asyncio.gather(blocker, late, return_exceptions=True)
        await batcher.stop(5)
        return results

    results = asyncio.run(scenario())
    assert isinstance(results[1], DeadlineExceeded)
    assert run.sizes == [1], "the expired job was run anyway"


def test_a_lone_request_does_not_wait_for_companions_but_a_decoding_one_is_waited_for() -> None:
    run = Recorder()

    async def scenario() -> tuple[float, list[int]]:
        batcher = running_batcher(run, max_batch_size=8, max_wait_s=30.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with batcher.admit(1) as admission:
            await batcher.submit(1, loop.time() + 60, admission)
        alone = loop.time() - started
        with batcher.admit(2) as admission:
            first = batcher.submit(2, loop.time() + 60, admission)
            await asyncio.sleep(0.2)  # the second image is still "decoding": the first waits for it
            assert not first.done()
            second = batcher.submit(3, loop.time() + 60, admission)
            await asyncio.wait_for(asyncio.gather(first, second), 5)
        await batcher.stop(5)
        return alone, run.sizes

    alone, sizes = asyncio.run(scenario())
    assert alone < 5, "a request with nothing else in flight sat out the batching window"
    assert sizes == [1, 2]


def test_a_failed_decode_releases_the_batch_it_was_holding_back() -> None:
    run = Recorder()

    async def scenario() -> list[int]:
        batcher = running_batcher(run, max_batch_size=8, max_wait_s=30.0)
        loop = asyncio.get_running_loop()
        with batcher.admit(2) as admission:
            first = batcher.submit(1, loop.time() + 60, admission)
            # the request's second image fails to decode: leaving the admission ends the wait
        await asyncio.wait_for(first, 5)
        await batcher.stop(5)
        return run.sizes

    assert asyncio.run(scenario()) == [1]
