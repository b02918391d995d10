"""POST /detect with several `files`: each file answers for itself, a bad one does not sink the others."""

from __future__ import annotations

import httpx

from testkit.images import tiny_png
from testkit.servers import ThreadServer, metric_value

from .support import GENERATORS, error_of


def post_many(server: ThreadServer, files: list[tuple[str, bytes]]) -> httpx.Response:
    return httpx.post(f"{server.url}/detect", files=[("files", blob) for blob in files], timeout=60)


def test_a_bad_file_among_good_ones_fails_alone(shared_server: ThreadServer, png_512: bytes) -> None:
    before = metric_value(shared_server.metrics(), "dif_decode_failures_total", reason="corrupt_image")
    response = post_many(shared_server, [("good.png", png_512), ("broken.png", png_512[:300]),
                                         ("small.png", tiny_png(16)), ("again.png", png_512)])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["good.png", "broken.png", "small.png", "again.png"]
    assert [r["status"] for r in results] == [200, 400, 422, 200]
    for good in (results[0], results[3]):
        assert good["error"] is None
        assert good["verdict"] in {"fake", "inconclusive", "real"}
        assert [s["generator"] for s in good["scores"]] == list(GENERATORS)
        assert (good["width"], good["height"]) == (512, 512)
    broken, small = results[1], results[2]
    assert broken["error"]["code"] == "corrupt_image" and "broken.png" in broken["error"]["message"]
    assert small["error"]["code"] == "image_too_small"
    for bad in (broken, small):
        assert bad["verdict"] is None and bad["scores"] is None and bad["timings_ms"] is None
    after = metric_value(shared_server.metrics(), "dif_decode_failures_total", reason="corrupt_image")
    assert after == before + 1


def test_every_file_bad_answers_with_the_first_files_error(shared_server: ThreadServer, png_512: bytes) -> None:
    response = post_many(shared_server, [("small.png", tiny_png(16)), ("broken.png", png_512[:300])])
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "image_too_small" and "small.png" in error["message"]


def test_a_single_bad_file_keeps_its_own_status(shared_server: ThreadServer, png_512: bytes) -> None:
    response = httpx.post(f"{shared_server.url}/detect", files={"file": ("broken.png", png_512[:300])}, timeout=30)
    assert response.status_code == 400
    assert error_of(response)["code"] == "corrupt_image"
    ok = httpx.post(f"{shared_server.url}/detect", files={"file": ("good.png", png_512)}, timeout=30).json()
    assert ok["status"] == 200 and ok["error"] is None
