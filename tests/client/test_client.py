"""dif.client.Client against a real DIF server, and against a stdlib HTTP server that answers 429."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from dif.client import Client, DetectResult, DifClientError, GeneratorInfo, LineageResult, retry_after_s
from testkit.fingerprints import write_artifacts
from testkit.images import tiny_png
from testkit.paths import REPO
from testkit.servers import ThreadServer
from tests.service.support import GENERATORS


@pytest.fixture
def server(serve: Callable[..., ThreadServer]) -> ThreadServer:
    return serve(api_key="k")


def test_detect_answers_each_image_typed_and_as_the_api_does(server: ThreadServer, png_512: bytes,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(png_512)
    with Client(server.url, api_key="k") as client:
        results = client.detect([path, png_512, str(path), png_512[:300]], fpr=0.05)
    assert [type(r) for r in results] == [DetectResult] * 4
    assert [r.filename for r in results] == ["photo.png", "image-1", "photo.png", "image-3"]
    assert [r.status for r in results] == [200, 200, 200, 400]
    direct = httpx.post(f"{server.url}/detect", files={"file": ("photo.png", png_512)}, params={"fpr": "0.05"},
                        headers={"X-API-Key": "k"}, timeout=30).json()
    for good in results[:3]:
        assert good.ok and good.error is None
        assert good.verdict == direct["verdict"] and good.fake == direct["fake"] and good.top == direct["top"]
        # Batched with other images or not, float sums may differ in the last digits.
        assert good.p_value == pytest.approx(direct["p_value"], rel=1e-4) and good.false_positive_rate == 0.05
        assert [s.generator for s in good.scores] == list(GENERATORS)
        assert [s.p_value for s in good.scores] == pytest.approx([s["p_value"] for s in direct["scores"]],
                                                                  rel=1e-4)
        assert all(isinstance(s.shift, tuple) and len(s.shift) == 2 for s in good.scores)
        assert (good.width, good.height, good.model_version) == (512, 512, 1)
    bad = results[3]
    assert not bad.ok and bad.error is not None and bad.error.code == "corrupt_image"
    assert bad.verdict is None and bad.scores == () and bad.candidates == ()


def test_a_refused_request_raises_with_the_status_and_code(server: ThreadServer, png_512: bytes) -> None:
    with Client(server.url, api_key="wrong") as client, pytest.raises(DifClientError) as refused:
        client.detect([png_512])
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    with Client(server.url, api_key="k") as client, pytest.raises(DifClientError) as all_bad:
        client.detect([tiny_png(16), png_512[:300]])
    assert (all_bad.value.status, all_bad.value.code) == (422, "image_too_small")
    with Client("http://127.0.0.1:9", timeout=2) as client, pytest.raises(DifClientError) as unreachable:
        client.generators()
    assert unreachable.value.status == 0


def test_generators_and_lineage(serve: Callable[..., ThreadServer], tmp_path: Path) -> None:
    names = [*GENERATORS, "delta", "epsilon"]  # lineage needs a population of at least 5
    server = serve(fingerprints=write_artifacts(tmp_path / "five", names), api_key="k")
    with Client(server.url, api_key="k") as client:
        generators = client.generators()
        assert [type(g) for g in generators] == [GeneratorInfo] * len(names)
        assert [g.name for g in generators] == sorted(names)
        assert all(g.crop_size == 256 for g in generators)
        pair = client.lineage("alpha", "beta")
        assert isinstance(pair, LineageResult) and (pair.a, pair.b) == ("alpha", "beta")
        assert isinstance(pair.related, bool) and pair.population == len(names)
        # An artifact of one's own, uploaded as the zip of its folder, against a loaded one.
        archive = Path(shutil.make_archive(str(tmp_path / "mine"), "zip", tmp_path / "five" / "gamma"))
        uploaded = client.lineage(archive, "beta")
        assert uploaded.b == "beta" and uploaded.population == len(names)
        with pytest.raises(DifClientError) as unknown:
            client.lineage("alpha", "nobody")
    assert (unknown.value.status, unknown.value.code) == (404, "generator_not_found")


MANY = {"request_id": "r", "total_ms": 1.0, "results": [{"filename": "a.png", "status": 200, "error": None,
        "verdict": "real", "fake": False, "top": None, "candidates": [], "p_value": 1.0, "scores": []}]}


class Throttling(BaseHTTPRequestHandler):
    """Answers the first ``refusals`` POSTs with 429 and ``retry_after``, then 200."""

    refusals = 2
    retry_after = "1"
    seen: list[float] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(time.monotonic())
        body: dict[str, Any]
        if len(self.seen) <= self.refusals:
            body, status = {"error": {"code": "queue_full", "message": "full"}}, 429
        else:
            body, status = MANY, 200
        data = json.dumps(body).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", self.retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def throttling() -> Iterator[tuple[str, type[Throttling]]]:
    handler = type("Handler", (Throttling,), {"seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_429_is_retried_after_retry_after(throttling: tuple[str, type[Throttling]]) -> None:
    url, handler = throttling
    with Client(url, retries=3) as client:
        [result] = client.detect([b"image"])
    assert result.verdict == "real" and len(handler.seen) == 3
    gaps = [b - a for a, b in zip(handler.seen, handler.seen[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps  # it waited the Retry-After each time


def test_429_retries_are_bounded_and_waits_capped(throttling: tuple[str, type[Throttling]]) -> None:
    url, handler = throttling
    handler.refusals, handler.retry_after = 10, "3600"
    waits: list[float] = []
    client = Client(url, retries=2)
    client.sleep = waits.append  # type: ignore[method-assign]
    with client, pytest.raises(DifClientError) as refused:
        client.detect([b"image"])
    assert (refused.value.status, refused.value.code) == (429, "queue_full")
    assert len(handler.seen) == 3 and waits == [30.0, 30.0]


def test_retry_after_forms() -> None:
    assert retry_after_s("2") == 2.0 and retry_after_s(None) == 1.0 and retry_after_s("soon") == 1.0
    assert retry_after_s("-5") == 0.0 and retry_after_s("nan") == 1.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT") == 0.0  # in the past


def test_the_client_imports_neither_the_server_nor_torch() -> None:
    code = ("import sys, dif.client; heavy = {'torch', 'fastapi', 'app', 'pydantic', 'uvicorn'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
