"""GET /generators and each generator's details and pictures."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from testkit.servers import ThreadServer

from .support import GENERATORS, error_of


def test_list_describes_every_loaded_generator(shared_server: ThreadServer) -> None:
    response = httpx.get(f"{shared_server.url}/generators")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["extractor"] == "signlap@1" and body["crop_size"] == 256 and body["model_version"] == 1
    assert [g["name"] for g in body["generators"]] == list(GENERATORS)
    first = body["generators"][0]
    assert first["centres"] == {"real": 0.0, "fake": 0.02}
    assert first["crossval_accuracy"] == 0.75  # recorded by make_fingerprint
    assert first["extractor"]["id"] == "signlap" and first["extractor"]["version"] == 1
    assert first["metadata"]["name"] == "alpha" and "fingerprint_sha256" in first["metadata"]
    assert first["calibration"]["threshold"] == 0.01
    assert body["false_positive_rate"] == 0.01 and first["null"]["scale"] >= 1.0
    assert first["schema_version"] == 3


def test_each_generator_says_how_much_of_its_generator_it_catches(shared_server: ThreadServer) -> None:
    """TPR at the operating point with the generators loaded now, from the trainer's held-out p-values."""
    generators = httpx.get(f"{shared_server.url}/generators").json()["generators"]
    by_name = {g["name"]: g for g in generators}
    family = len(generators)
    # alpha: 6 of 10 held-out fakes at p = 1e-6 (passes 0.01 / 3), beta: 1e-4 (passes), gamma: 1e-2 (fails).
    assert by_name["alpha"]["tpr_at_fpr"] == {"0.01": 0.6, "0.05": 0.6} and by_name["alpha"]["weak"] is False
    assert by_name["beta"]["tpr_at_operating_point"] == 0.6 and by_name["beta"]["weak"] is False
    assert by_name["gamma"]["tpr_at_fpr"]["0.01"] == 0.0 and by_name["gamma"]["weak"] is True
    assert by_name["gamma"]["tpr_at_fpr"]["0.05"] == (0.6 if 1e-2 * family <= 0.05 else 0.0)


def test_one_generator(shared_server: ThreadServer) -> None:
    response = httpx.get(f"{shared_server.url}/generators/beta")
    assert response.status_code == 200
    assert response.json()["name"] == "beta"
    missing = httpx.get(f"{shared_server.url}/generators/delta")
    assert missing.status_code == 404
    assert "alpha" in error_of(missing)["message"]  # says what is loaded


def test_fingerprint_and_spectrum_pictures(shared_server: ThreadServer) -> None:
    for kind in ("fingerprint", "spectrum"):
        response = httpx.get(f"{shared_server.url}/generators/gamma/{kind}.png")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(response.content)) as picture:
            # A figure for people (picture, colour scale, caption), larger than the 256² pattern itself.
            assert picture.format == "PNG" and picture.width > 256 and picture.height > 256
    missing = httpx.get(f"{shared_server.url}/generators/delta/spectrum.png")
    assert missing.status_code == 404 and error_of(missing)["code"] == "generator_not_found"


def test_openapi_documents_the_api(shared_server: ThreadServer) -> None:
    spec = httpx.get(f"{shared_server.url}/openapi.json").json()
    assert {"/detect", "/generators", "/generators/{name}", "/healthz", "/readyz", "/metrics",
            "/admin/reload"} <= set(spec["paths"])
    detect = spec["paths"]["/detect"]["post"]
    assert "multipart/form-data" in detect["requestBody"]["content"]
    assert {"413", "415", "422", "429", "504"} <= set(detect["responses"])
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
