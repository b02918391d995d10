"""/metrics: the series the issue lists, bounded labels and promtool's lint (a real Prometheus scrapes the
service in tests/ship/test_prometheus.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import httpx
import pytest

from testkit.images import tiny_png
from testkit.servers import ThreadServer, metric_value

from .support import GENERATORS

MISSING_TOOLS = "is missing: run scripts/ci-deps.sh (installs the Debian `prometheus` package)"


def traffic(server: ThreadServer, png: bytes) -> None:
    """One of each kind of request, so every family has samples."""
    assert httpx.post(f"{server.url}/detect", files={"file": ("a.png", png)}, timeout=30).status_code == 200
    assert httpx.post(f"{server.url}/detect", files={"file": ("t.png", tiny_png())}, timeout=30).status_code == 422
    assert httpx.get(f"{server.url}/generators/alpha").status_code == 200
    assert httpx.post(f"{server.url}/admin/reload").status_code == 403


def test_the_listed_series_are_exposed(shared_server: ThreadServer, png_512: bytes) -> None:
    traffic(shared_server, png_512)
    response = httpx.get(f"{shared_server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    families = {
        "dif_http_requests_total": "counter", "dif_http_request_duration_seconds": "histogram",
        "dif_queue_wait_seconds": "histogram", "dif_batch_size_images": "histogram",
        "dif_inference_duration_seconds": "histogram", "dif_preprocess_duration_seconds": "histogram",
        "dif_queue_depth_images": "gauge", "dif_generator_info": "gauge", "dif_detections_total": "counter",
        "dif_rejections_total": "counter", "dif_decode_failures_total": "counter",
    }
    for name, kind in families.items():
        assert f"# TYPE {name} {kind}" in text, f"{name} ({kind}) is not exposed"
    assert metric_value(text, "dif_http_requests_total", route="/detect", method="POST", status="200") >= 1
    assert metric_value(text, "dif_http_requests_total", route="/generators/{name}", method="GET",
                        status="200") >= 1
    for name in GENERATORS:
        assert metric_value(text, "dif_generator_info", generator=name, extractor="signlap@1",
                            crop_size="256") == 1
        assert sum(metric_value(text, "dif_detections_total", generator=name, verdict=v)
                   for v in ("fake", "real")) >= 1
    assert metric_value(text, "dif_decode_failures_total", reason="image_too_small") >= 1
    # A refused upload is a rejection too, not only a decode failure (the dashboard's panel).
    assert metric_value(text, "dif_rejections_total", reason="image_too_small") >= 1
    assert metric_value(text, "dif_rejections_total", reason="admin_disabled") >= 1
    assert metric_value(text, "dif_preprocess_duration_seconds_count", stage="decode") >= 1


def test_labels_stay_bounded(shared_server: ThreadServer) -> None:
    for _ in range(8):
        httpx.get(f"{shared_server.url}/{uuid.uuid4().hex}")
        httpx.get(f"{shared_server.url}/generators/{uuid.uuid4().hex}")
        httpx.request("BREW", f"{shared_server.url}/healthz")
    text = httpx.get(f"{shared_server.url}/metrics").text
    routes = set(re.findall(r'dif_http_requests_total\{[^}]*route="([^"]*)"', text))
    methods = set(re.findall(r'dif_http_requests_total\{[^}]*method="([^"]*)"', text))
    assert routes <= {"unmatched", "/healthz", "/readyz", "/metrics", "/detect", "/generators",
                      "/generators/{name}", "/generators/{name}/fingerprint.png",
                      "/generators/{name}/spectrum.png", "/admin/reload"}, routes
    assert methods <= {"GET", "POST", "DELETE", "other"}, methods


def test_promtool_accepts_the_live_output(shared_server: ThreadServer, png_512: bytes) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(f"promtool {MISSING_TOOLS}")
    traffic(shared_server, png_512)
    text = httpx.get(f"{shared_server.url}/metrics").text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        f"promtool check metrics failed:\n{result.stdout}{result.stderr}"
