"""POST /detect against a real server: response shape, several files, shared batches."""

from __future__ import annotations

import asyncio

import httpx

from .support import GENERATORS, ThreadServer, metric_value


def test_one_file_is_scored_against_every_generator(shared_server: ThreadServer, png_512: bytes) -> None:
    response = httpx.post(f"{shared_server.url}/detect", files={"file": ("fake.png", png_512, "image/png")},
                          timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["generator"] for s in body["scores"]] == list(GENERATORS)
    for score in body["scores"]:
        assert 0.0 <= score["score"] <= 1.0
        assert isinstance(score["fake"], bool) and score["fake"] == (score["score"] >= 0.5)
        assert isinstance(score["correlation"], float) and -1.0 <= score["correlation"] <= 1.0
    assert body["fake"] == any(s["fake"] for s in body["scores"])
    assert body["top"] == max(body["scores"], key=lambda s: s["score"])["generator"]
    assert (body["width"], body["height"], body["crops"]) == (512, 512, 4)
    assert body["filename"] == "fake.png"
    timings = body["timings_ms"]
    assert set(timings) == {"decode_queue_ms", "decode_ms", "crop_ms", "queue_ms", "residual_ms", "scoring_ms",
                            "total_ms"}
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
