"""deploy/prometheus with a real Prometheus (Debian package) against a live service, and the
Grafana dashboard's queries run against that Prometheus."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dif.artifact import save_fingerprint
from testkit.fingerprints import twin_fingerprint, write_artifacts
from testkit.paths import LTIM
from testkit.servers import ThreadServer, free_port, make_settings
from tests.service.support import GENERATORS

from .conftest import DEPLOY, run, tool

PROMETHEUS_DIR = DEPLOY / "prometheus"
HINT = "run scripts/ci-deps.sh (installs the Debian `prometheus` package)"


def test_promtool_accepts_the_config_and_rules() -> None:
    result = run([tool("promtool", HINT), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    result = run([tool("promtool", HINT), "test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def loopback_config(target: str, out: Path) -> Path:
    """The shipped config with the compose DNS discovery swapped for the loopback target and
    a 1 s cadence; job, path, relabelling and rule files stay as shipped."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "dif")
    assert job.pop("dns_sd_configs")[0]["port"] == 8000
    job["static_configs"] = [{"targets": [target]}]
    out.write_text(yaml.safe_dump(config))
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadServer, str]]:
    root = tmp_path_factory.mktemp("prometheus")
    fingerprints = write_artifacts(root / "fingerprints", GENERATORS)
    # Random fingerprints call every image real; this one is the posted image's own residual, so it
    # calls that image fake and the "detections by generator" panel has data.
    image = sorted((LTIM / "mj" / "1_fake").glob("*.png"))[0].read_bytes()
    save_fingerprint(twin_fingerprint("always-fake", image), fingerprints / "always-fake")
    server = ThreadServer(make_settings(fingerprints, max_batch_size=4))
    server.start()
    config = loopback_config(server.url.removeprefix("http://"), root / "prometheus.yml")
    port = free_port()
    log = root / "prometheus.log"
    proc = subprocess.Popen(
        [tool("prometheus", HINT), f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        cwd=root, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(3):
            assert httpx.post(f"{server.url}/detect", files={"file": ("a.png", image)}, timeout=60).status_code == 200
        # One refusal, so the rejections panel has a series too.
        assert httpx.post(f"{server.url}/detect", files={"file": ("a.txt", b"not an image")}).status_code == 415
        yield server, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)
        server.stop()
        if proc.returncode not in (0, -15):
            print(log.read_text()[-3000:])


def query(api: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/api/v1/query", params={"query": expr}, timeout=5)
    if response.status_code == 503:  # the TSDB is still opening
        return {"status": "starting", "data": {"result": []}}
    return response.json()  # type: ignore[no-any-return]


def eventually(api: str, expr: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = query(api, expr)
            if result["status"] == "success" and result["data"]["result"]:
                return result["data"]["result"]  # type: ignore[no-any-return]
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no data for {expr}"
        time.sleep(0.5)


def test_target_is_up(live: tuple[ThreadServer, str]) -> None:
    _, api = live
    up = eventually(api, 'up{job="dif"}')
    assert [float(s["value"][1]) for s in up] == [1.0]
    detections = eventually(api, 'sum(dif_detections_total{job="dif"})')
    assert float(detections[0]["value"][1]) == 3 * (len(GENERATORS) + 1)
    requests = eventually(api, 'dif_http_requests_total{job="dif",route="/detect",status="200"}')
    assert float(requests[0]["value"][1]) >= 3
    batches = eventually(api, 'dif_batch_size_images_count{job="dif"}')
    assert float(batches[0]["value"][1]) >= 1


def test_alert_rules_load_and_evaluate(live: tuple[ThreadServer, str]) -> None:
    _, api = live
    eventually(api, 'up{job="dif"}')
    deadline = time.monotonic() + 30
    while True:
        groups = httpx.get(f"{api}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("20") and r["health"] == "ok" for r in rules):
            break
        assert time.monotonic() < deadline, json.dumps(groups, indent=1)[:3000]
        time.sleep(0.5)
    assert not [r["name"] for r in rules if r["state"] != "inactive"], "a healthy service raises no alert"


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "dif.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_dashboard_query_returns_data(live: tuple[ThreadServer, str]) -> None:
    _, api = live
    # Grafana's variables as it would fill them: all instances, its default rate window.
    for title, expr in dashboard_exprs():
        concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        assert eventually(api, concrete), f"{title}: {concrete}"
