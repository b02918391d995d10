"""POST /detect against a real server: response shape, several files, shared batches."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from testkit.servers import ThreadServer, metric_value

from .support import GENERATORS


def test_one_file_is_scored_against_every_generator(shared_server: ThreadServer, png_512: bytes) -> None:
    response = httpx.post(f"{shared_server.url}/detect", files={"file": ("fake.png", png_512, "image/png")},
                          timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["generator"] for s in body["scores"]] == list(GENERATORS)
    for score in body["scores"]:
        assert 0.0 <= score["score"] <= 1.0 and 0.0 <= score["p_value"] <= 1.0
        assert isinstance(score["fake"], bool) and score["fake"] == (score["score"] >= 0.5)
        assert isinstance(score["correlation"], float) and -1.0 <= score["correlation"] <= 1.0
        assert score["statistic"] == score["z"]  # zero-shift fingerprints are decided on z
        assert score["grid_cosine"] is None  # not lattices: no grid cosine
    assert body["false_positive_rate"] == 0.01  # DIF_FALSE_POSITIVE_RATE's default
    family_p = min(1.0, min(s["p_value"] for s in body["scores"]) * len(GENERATORS))
    assert body["p_value"] == pytest.approx(family_p)
    assert body["fake"] == any(s["fake"] for s in body["scores"]) == (body["verdict"] == "fake")
    assert body["verdict"] == ("fake" if family_p <= 0.01 else "inconclusive" if family_p <= 0.05 else "real")
    # A generator is blamed only when it passes: random fingerprints find nothing in a real image.
    assert body["verdict"] == "real" and body["top"] is None and body["top_score"] is None
    assert (body["width"], body["height"], body["crops"]) == (512, 512, 4)
    assert body["filename"] == "fake.png"
    timings = body["timings_ms"]
    assert set(timings) == {"decode_queue_ms", "decode_ms", "provenance_ms", "crop_ms", "queue_ms", "residual_ms",
                            "scoring_ms", "total_ms"}
    assert timings["decode_ms"] > 0 and timings["residual_ms"] > 0 and timings["scoring_ms"] > 0
    assert timings["total_ms"] >= timings["decode_ms"]
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_a_callers_request_id_is_echoed(shared_server: ThreadServer, png_512: bytes) -> None:
    response = httpx.post(f"{shared_server.url}/detect", files={"file": ("a.png", png_512)},
                          headers={"X-Request-ID": "trace-42.abc"}, timeout=30)
    assert response.headers["X-Request-ID"] == "trace-42.abc"
    assert response.json()["request_id"] == "trace-42.abc"
    # An id that could break logs or headers is replaced, not echoed.
    odd = httpx.get(f"{shared_server.url}/healthz", headers={"X-Request-ID": "x" * 500})
    assert odd.headers["X-Request-ID"] != "x" * 500 and len(odd.headers["X-Request-ID"]) == 32


def test_several_files_answer_in_upload_order(shared_server: ThreadServer,
                                              image_blobs: list[tuple[str, bytes]]) -> None:
    chosen = image_blobs[:3]
    response = httpx.post(f"{shared_server.url}/detect",
                          files=[("files", (name, data)) for name, data in chosen], timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["filename"] for r in body["results"]] == [name for name, _ in chosen]
    for result in body["results"]:
        assert len(result["scores"]) == len(GENERATORS)
        assert result["crops"] >= 1
    # One request's images are queued together, so they share a forward pass.
    assert max(r["batch_size"] for r in body["results"]) >= 2


def test_concurrent_uploads_share_batches(shared_server: ThreadServer,
                                          image_blobs: list[tuple[str, bytes]]) -> None:
    before = shared_server.metrics()
    count_before = metric_value(before, "dif_batch_size_images_count")
    singles_before = metric_value(before, "dif_batch_size_images_bucket", le="1.0")
    pngs = [(n, d) for n, d in image_blobs if n.endswith(".png")][:12]

    async def upload_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=shared_server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/detect", files={"file": (n, d)}) for n, d in pngs))

    responses = asyncio.run(upload_all())
    assert [r.status_code for r in responses] == [200] * len(pngs)
    assert max(r.json()["batch_size"] for r in responses) > 1
    after = shared_server.metrics()
    batches = metric_value(after, "dif_batch_size_images_count") - count_before
    single_batches = metric_value(after, "dif_batch_size_images_bucket", le="1.0") - singles_before
    assert 0 < batches < len(pngs), f"{len(pngs)} uploads ran as {batches} forward passes"
    assert single_batches < batches, "the batch-size histogram shows no batch larger than 1"


def test_cors_origins_are_allowed_when_configured(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(cors_origins=["https://ui.example"])
    preflight = httpx.options(f"{server.url}/detect", headers={
        "Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ui.example"
    other = httpx.get(f"{server.url}/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_request_chooses_its_own_false_positive_rate(shared_server: ThreadServer, png_512: bytes) -> None:
    url = f"{shared_server.url}/detect"
    default = httpx.post(url, files={"file": ("a.png", png_512)}, timeout=30).json()
    for sent in ({"params": {"fpr": "0.2"}}, {"data": {"fpr": "0.2"}}):
        loose = httpx.post(url, files={"file": ("a.png", png_512)}, timeout=30, **sent)  # type: ignore[arg-type]
        assert loose.status_code == 200, loose.text
        body = loose.json()
        assert body["false_positive_rate"] == 0.2
        # Same image, same p-values: only the threshold (and so the score's scale) moved.
        assert [s["p_value"] for s in body["scores"]] == [s["p_value"] for s in default["scores"]]
        for s, d in zip(body["scores"], default["scores"], strict=True):
            assert s["score"] >= d["score"] and s["fake"] == (s["p_value"] * len(GENERATORS) <= 0.2)


@pytest.mark.parametrize("sent", [{"params": {"fpr": "0.5"}}, {"params": {"fpr": "abc"}}, {"data": {"fpr": "0"}},
                                  {"params": {"fpr": "0.01"}, "data": {"fpr": "0.01"}}, {"params": {"fpr": "nan"}}])
def test_an_unsupported_rate_is_refused_with_a_clear_422(shared_server: ThreadServer, png_512: bytes,
                                                         sent: dict[str, dict[str, str]]) -> None:
    response = httpx.post(f"{shared_server.url}/detect", files={"file": ("a.png", png_512)}, timeout=30,
                          **sent)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_rate" and "fpr" in error["message"]
