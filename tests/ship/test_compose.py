"""docker-compose.yml against the compose-spec schema, and what it promises on top of it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from app.settings import Settings

from .conftest import DEPLOY, REPO, run, settings_from_env, tool
from .dockerfile import Dockerfile

COMPOSE = REPO / "docker-compose.yml"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def interpolate(value: Any) -> Any:
    """Compose's ${VAR:-default}, with no VAR set: the default."""
    if isinstance(value, str):
        return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
    return value


def schema_check(path: Path) -> tuple[int, str]:
    # check-jsonschema ships the compose-spec schema (vendored from compose-spec/compose-spec).
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    return result.returncode, result.stdout + result.stderr


def test_valid_against_the_compose_spec_schema() -> None:
    code, output = schema_check(COMPOSE)
    assert code == 0, output


def test_the_schema_check_catches_mistakes(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["dif"]["stop_grace_periods"] = "60s"  # a typo compose would reject
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    code, output = schema_check(path)
    assert code != 0 and "stop_grace_periods" in output, output


def service_settings(service: dict[str, Any]) -> Settings:
    return settings_from_env({k: interpolate(v) for k, v in service["environment"].items()})


def test_cpu_service_settings_hardening_and_drain() -> None:
    dif = compose()["services"]["dif"]
    settings = service_settings(dif)
    assert settings.device == "cpu" and settings.max_batch_size == 4
    assert dif["read_only"] is True and "/tmp" in dif["tmpfs"]
    grace = int(dif["stop_grace_period"].removesuffix("s"))
    assert grace > 2 * settings.drain_timeout_s, "uvicorn's wait and the queue drain must fit before SIGKILL"
    assert dif["build"]["context"] == "." and interpolate(dif["ports"][0]) == "8000:8000"


def test_fingerprint_mount_replaces_the_baked_set() -> None:
    df = Dockerfile.parse(REPO / "Dockerfile")
    baked = df.env_of(df.stage("runtime"), {})["DIF_FINGERPRINTS_DIR"]
    for name in ("dif", "dif-gpu"):
        mounts = [interpolate(v) for v in compose()["services"][name]["volumes"]]
        assert f"./fingerprints:{baked}:ro" in mounts


def test_gpu_profile_reserves_a_device_and_builds_cuda_torch() -> None:
    gpu = compose()["services"]["dif-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert "download.pytorch.org/whl/cu" in gpu["build"]["args"]["TORCH_INDEX_URL"]
    assert service_settings(gpu).device == "cuda"
    assert "dif" in gpu["networks"]["default"]["aliases"], "Prometheus discovers replicas by this alias"


def test_prometheus_and_grafana_mount_the_shipped_files() -> None:
    services = compose()["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert services["grafana"]["profiles"] == ["grafana"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = interpolate(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{source} is mounted but missing"


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/dif.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    dashboard = json.loads((DEPLOY / "grafana/dashboards/dif.json").read_text())
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in ("batch size", "queue depth", "latency percentiles", "by generator"):
        assert wanted in titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert all(t["datasource"]["uid"] == uid and t["expr"] for t in panel["targets"])
