"""Readiness, graceful shutdown on SIGTERM, hot reload, startup failures, the ``serve`` command."""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from app.commands import cmd_serve
from app.service import Service
from dif_cli import build_parser
from testkit.fingerprints import write_artifacts
from testkit.servers import ThreadServer, is_ready, make_settings, metric_value, run_app_to_exit, wait_until

from .support import error_of


def test_readyz_is_503_until_warm_while_healthz_answers(serve, png_512: bytes) -> None:  # type: ignore[no-untyped-def]
    warm = threading.Event()

    def hold_warm_up(server: ThreadServer) -> None:
        original = server.service.engine.warm_up

        def gated(*args: Any, **kwargs: Any) -> float:
            assert warm.wait(60)
            return original(*args, **kwargs)

        server.service.engine.warm_up = gated  # type: ignore[method-assign]

    server = serve(wait_ready=False, before_start=hold_warm_up)
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        not_ready = httpx.get(f"{server.url}/readyz")
        assert not_ready.status_code == 503 and error_of(not_ready)["code"] == "not_ready"
        refused = httpx.post(f"{server.url}/detect", files={"file": ("a.png", png_512)})
        assert refused.status_code == 503 and error_of(refused)["code"] == "not_ready"
        assert "Retry-After" in refused.headers
        assert metric_value(server.metrics(), "dif_ready") == 0
    finally:
        warm.set()
    wait_until(lambda: is_ready(server.url), 30, "never became ready")
    assert metric_value(server.metrics(), "dif_ready") == 1


def test_readyz_is_503_from_the_moment_shutdown_begins(serve, png_512: bytes) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    server.service.begin_shutdown()  # what SIGTERM calls first
    wait_until(lambda: httpx.get(f"{server.url}/readyz").status_code == 503, 5, "readiness did not flip")
    assert error_of(httpx.get(f"{server.url}/readyz"))["code"] == "shutting_down"
    # Requests that still reach the process are answered, not dropped.
    late = httpx.post(f"{server.url}/detect", files={"file": ("a.png", png_512)}, timeout=30)
    assert late.status_code == 200, late.text
    assert metric_value(server.metrics(), "dif_ready") == 0


# Seconds from SIGTERM to the exit beyond DIF_DRAIN_TIMEOUT_S: interpreter teardown, not draining.
EXIT_SLACK_S = 5.0


def test_sigterm_under_load_answers_every_accepted_request(process_server, image_blobs) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM with a backlog: unready at once, every accepted request 200, exit within the drain budget."""
    drain_timeout_s = 20.0
    # Batches of 2 are slower than decoding, so a backlog builds up in the queue. Enough uploads
    # that it outlasts starting the readiness poller on a fast machine (24 drained first on CI).
    server = process_server(DIF_MAX_BATCH_SIZE="2", DIF_DRAIN_TIMEOUT_S=str(drain_timeout_s), DIF_LOG_LEVEL="info")
    assert server.proc is not None
    uploads = (image_blobs[::4] * 8)[:96]
    backlog = 6

    async def poll_readiness(ready_seen: asyncio.Event, stop: asyncio.Event) -> list[tuple[float, float, int]]:
        """/readyz on fresh connections until told to stop: (sent, answered, status; 0 = refused)."""
        seen: list[tuple[float, float, int]] = []
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=2, limits=limits) as probe:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status = (await probe.get("/readyz")).status_code
                except httpx.TransportError:
                    status = 0  # stopped listening: unready as far as any load balancer is concerned
                seen.append((sent, time.monotonic(), status))
                if status == 200:
                    ready_seen.set()
                await asyncio.sleep(0.005)
        return seen

    async def scenario() -> tuple[list[httpx.Response], list[float], float, list[tuple[float, float, int]], float,
                                  float]:
        finished: list[float] = []

        async def upload(client: httpx.AsyncClient, blob: tuple[str, bytes]) -> httpx.Response:
            response = await client.post("/detect", files={"file": blob})
            finished.append(time.monotonic())
            return response

        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client, \
                httpx.AsyncClient(base_url=server.url, timeout=10) as monitor:
            pending = [asyncio.create_task(upload(client, blob)) for blob in uploads]
            queued = 0.0
            for _ in range(1200):
                queued = metric_value((await monitor.get("/metrics")).text, "dif_queue_depth_images")
                if queued >= backlog:
                    break
                await asyncio.sleep(0.02)
            assert queued >= backlog, f"no backlog formed (queue depth {queued})"
            ready_seen, stop_polling = asyncio.Event(), asyncio.Event()
            polling = asyncio.create_task(poll_readiness(ready_seen, stop_polling))
            await asyncio.wait_for(ready_seen.wait(), 10)  # the poller runs, and saw 200, before the signal
            queued = metric_value((await monitor.get("/metrics")).text, "dif_queue_depth_images")
            signalled = time.monotonic()
            server.terminate()
            await asyncio.to_thread(server.proc.wait, drain_timeout_s + 60)
            exit_after_s = time.monotonic() - signalled
            stop_polling.set()
            readiness = await polling
            responses = await asyncio.gather(*pending)
        return responses, finished, signalled, readiness, exit_after_s, queued

    responses, finished, signalled, readiness, exit_after_s, queued_at_signal = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * len(uploads), [r.text[:200] for r in responses]
    # The scenario is only tested if a backlog was still queued when the signal went out.
    assert queued_at_signal >= 1, "the backlog drained before SIGTERM: send more uploads"
    answered_after_signal = sum(1 for t in finished if t > signalled)
    assert answered_after_signal >= max(backlog, queued_at_signal), f"{answered_after_signal} answers after SIGTERM"
    # Readiness is false for every probe sent after the signal (503 while uvicorn still listens,
    # then refused), and the first of them is answered at once.
    after = [(round(sent - signalled, 3), round(done - signalled, 3), status)
             for sent, done, status in readiness if sent >= signalled]
    assert after and after[0][1] < 0.5, f"first readiness answer after SIGTERM: {after[:3]}"
    assert all(status in (503, 0) for _, _, status in after), after
    # The whole drain (open requests, then the queue) fits DIF_DRAIN_TIMEOUT_S, so a grace period
    # sized from it is never cut short by SIGKILL.
    assert exit_after_s <= drain_timeout_s + EXIT_SLACK_S, f"exited {exit_after_s:.1f}s after SIGTERM"
    code = server.proc.returncode
    # uvicorn re-raises the signal after a clean shutdown, so "killed by SIGTERM" is a clean exit too.
    assert code in (0, -signal.SIGTERM), server.log()
    log = server.log()
    assert "stopped" in log and "Traceback" not in log, log
    try:
        httpx.get(f"{server.url}/healthz", timeout=2)
        raise AssertionError("the server still answers after shutdown")
    except httpx.ConnectError:
        pass


def test_the_drain_budget_runs_from_the_signal_not_per_phase(fingerprints_dir: Path) -> None:
    # uvicorn's wait for open requests and the queue's flush share one DIF_DRAIN_TIMEOUT_S.
    service = Service(make_settings(fingerprints_dir, drain_timeout_s=10))
    assert service.drain_time_left_s() == 10
    service.begin_shutdown()
    time.sleep(0.3)
    service.begin_shutdown()  # a second signal does not restart the clock
    assert 8.0 < service.drain_time_left_s() <= 9.7


def test_reload_under_load_loses_no_request(serve, tmp_path: Path, image_blobs) -> None:  # type: ignore[no-untyped-def]
    root = write_artifacts(tmp_path / "fingerprints", ["alpha", "beta"])
    server = serve(fingerprints=root, api_key="k")
    uploads = [blob for blob in image_blobs if blob[0].endswith(".png")][:8]

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": "k"}, timeout=60) as client:

            async def keep_uploading(offset: int) -> list[httpx.Response]:
                answers = []
                for i in range(200):  # bounded; normally ended by `stop`
                    if stop.is_set():
                        break
                    answers.append(await client.post("/detect", files={"file": uploads[(offset + i) % len(uploads)]}))
                return answers

            workers = [asyncio.create_task(keep_uploading(k)) for k in range(6)]
            reloads = []
            for step in range(3):
                await asyncio.sleep(0.4)
                await asyncio.to_thread(write_artifacts, root, [f"extra{step}"], 10 + step)
                reloads.append(await client.post("/admin/reload"))
            await asyncio.sleep(0.4)
            stop.set()
            detections = [r for answers in await asyncio.gather(*workers) for r in answers]
        return detections, reloads

    detections, reloads = asyncio.run(scenario())
    assert [r.status_code for r in reloads] == [200, 200, 200], [r.text for r in reloads]
    assert [r.json()["model_version"] for r in reloads] == [2, 3, 4]
    assert [len(r.json()["generators"]) for r in reloads] == [3, 4, 5]
    assert detections and all(r.status_code == 200 for r in detections), \
        [r.text[:200] for r in detections if r.status_code != 200]
    versions = {r.json()["model_version"] for r in detections}
    assert len(versions) >= 2, f"no request overlapped a reload: versions {versions}"
    for response in detections:
        body = response.json()
        # Each answer comes whole from one set: version v has v + 1 generators.
        assert len(body["scores"]) == body["model_version"] + 1, body["model_version"]
    listed = httpx.get(f"{server.url}/generators", headers={"X-API-Key": "k"}).json()
    assert listed["model_version"] == 4 and len(listed["generators"]) == 5
    assert metric_value(server.metrics(), "dif_reloads_total", result="success") == 3
    assert metric_value(server.metrics(), "dif_generators_loaded") == 5


def test_a_failed_reload_keeps_the_serving_set(serve, tmp_path: Path, png_512: bytes) -> None:  # type: ignore[no-untyped-def]
    root = write_artifacts(tmp_path / "fingerprints", ["alpha", "beta"])
    server = serve(fingerprints=root, api_key="k")
    headers = {"X-API-Key": "k"}
    broken = root / "broken"
    shutil.copytree(root / "alpha", broken)
    (broken / "metadata.json").write_text("{ not json")
    refused = httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=30)
    assert refused.status_code == 422
    assert error_of(refused)["code"] == "invalid_artifact" and "broken" in error_of(refused)["message"]
    still = httpx.post(f"{server.url}/detect", files={"file": ("a.png", png_512)}, headers=headers, timeout=30)
    assert still.status_code == 200 and len(still.json()["scores"]) == 2 and still.json()["model_version"] == 1
    assert metric_value(server.metrics(), "dif_reloads_total", result="failure") == 1
    # Fixed, it loads as the next version: the failed attempt did not use up a number.
    shutil.rmtree(broken)
    reloaded = httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=30)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["model_version"] == 2  # the set loaded at start-up was 1
    assert httpx.get(f"{server.url}/generators", headers=headers, timeout=30).json()["model_version"] == 2


def test_a_reload_that_fails_its_warm_up_uses_no_version(serve, tmp_path: Path, png_512: bytes) -> None:  # type: ignore[no-untyped-def]
    root = write_artifacts(tmp_path / "fingerprints", ["alpha", "beta"])
    server = serve(fingerprints=root, api_key="k")
    headers = {"X-API-Key": "k"}
    write_artifacts(root, ["gamma"], 5)
    engine = server.service.engine
    warm_up = engine.warm_up

    def out_of_memory(*args: Any, **kwargs: Any) -> float:
        # What a GPU says when the new set is built but does not fit beside the serving one.
        raise RuntimeError("CUDA out of memory (injected)")

    engine.warm_up = out_of_memory  # type: ignore[method-assign]
    failed = httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=30)
    assert failed.status_code == 500 and error_of(failed)["code"] == "internal_error"
    still = httpx.post(f"{server.url}/detect", files={"file": ("a.png", png_512)}, headers=headers, timeout=30)
    assert still.status_code == 200 and still.json()["model_version"] == 1 and len(still.json()["scores"]) == 2
    engine.warm_up = warm_up  # type: ignore[method-assign]
    reloaded = httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=30)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["model_version"] == 2 and len(reloaded.json()["generators"]) == 3
    assert metric_value(server.metrics(), "dif_reloads_total", result="failure") == 1


def test_startup_with_no_artifacts_fails_fast(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_app_to_exit({"DIF_FINGERPRINTS_DIR": str(empty)})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "DIF_FINGERPRINTS_DIR" in result.stdout + result.stderr


def test_dif_serve_is_registered() -> None:
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "9123"])
    assert args.func is cmd_serve and (args.host, args.port) == ("127.0.0.1", 9123)
