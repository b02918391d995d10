"""deploy/k8s: rendered like kustomize, validated with kubernetes-validate, and checked for
the things a schema cannot see (probes, drain budget, selectors, security)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DEPLOY, REPO, kubernetes_validate, run, settings_from_env, tool
from .dockerfile import Dockerfile
from .kustomize import render

BASE = DEPLOY / "k8s" / "base"
GPU = DEPLOY / "k8s" / "overlays" / "gpu"
OLDEST_KUBERNETES = "1.28.0"  # autoscaling/v2, policy/v1 and the probes used are all GA there
NO_SCHEMA = "Couldn't find schema for kind ServiceMonitor"  # a CRD: checked by hand below

Objects = dict[str, dict[str, Any]]


def rendered(folder: Path) -> Objects:
    return {obj["kind"]: obj for obj in render(folder)}


def pod(objects: Objects) -> dict[str, Any]:
    return objects["Deployment"]["spec"]["template"]  # type: ignore[no-any-return]


def container(objects: Objects) -> dict[str, Any]:
    return pod(objects)["spec"]["containers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("folder", [BASE, GPU], ids=["base", "gpu"])
def test_renderer_agrees_with_kubectl_kustomize(folder: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # optional: the checks below use tests/ship/kustomize.py either way
        pytest.skip("kubectl is not installed: only the built-in renderer is used")
    result = run([kubectl, "kustomize", str(folder)], timeout=60)
    assert result.returncode == 0, result.stderr
    theirs = sorted(yaml.safe_load_all(result.stdout), key=lambda o: (o["kind"], o["metadata"]["name"]))
    ours = sorted(render(folder), key=lambda o: (o["kind"], o["metadata"]["name"]))
    assert ours == theirs


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, None], ids=["oldest", "newest"])
@pytest.mark.parametrize("folder", [BASE, GPU], ids=["base", "gpu"])
def test_kubernetes_validate_strict(folder: Path, version: str | None, tmp_path: Path) -> None:
    output = kubernetes_validate(render(folder), tmp_path / "rendered.yaml", version)
    checked = [line for line in output.splitlines() if "passed for resource" in line]
    assert len(checked) == len(render(folder)) - 1, output  # everything but the ServiceMonitor
    assert all(NO_SCHEMA in line for line in output.splitlines() if line.startswith("WARN")), output


def test_strict_validation_catches_a_typo(tmp_path: Path) -> None:
    objects = render(BASE)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    result = run([tool("kubernetes-validate"), "--strict", str(manifest)], timeout=120)
    assert result.returncode != 0 and "readOnlyRootFileSystem" in result.stdout + result.stderr


def test_every_file_is_used() -> None:
    for folder in (BASE, GPU):
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
        listed = set(spec.get("resources", [])) | {p["path"] for p in spec.get("patches", [])}
        files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert files <= listed, f"{folder}: {sorted(files - listed)} not in kustomization.yaml"


@pytest.mark.parametrize("folder", [BASE, GPU], ids=["base", "gpu"])
def test_configmap_holds_valid_settings(folder: Path) -> None:
    data = rendered(folder)["ConfigMap"]["data"]
    assert all(key.startswith("DIF_") for key in data)
    settings = settings_from_env(data)
    assert settings.device == ("cuda" if folder == GPU else "cpu")
    assert settings.max_batch_size == (16 if folder == GPU else 4)


@pytest.mark.parametrize("folder", [BASE, GPU], ids=["base", "gpu"])
def test_probes_and_shutdown_budget(folder: Path) -> None:
    objects = rendered(folder)
    c = container(objects)
    port_names = {p["name"] for p in c["ports"]}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in port_names
    drain = float(objects["ConfigMap"]["data"]["DIF_DRAIN_TIMEOUT_S"])
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = pod(objects)["spec"]["terminationGracePeriodSeconds"]
    # preStop, then uvicorn's wait for open requests, then the queue drain (each <= drain).
    assert grace > float(sleep[1]) + 2 * drain


def test_security_context_matches_the_image() -> None:
    objects = rendered(BASE)
    spec = pod(objects)["spec"]
    user = Dockerfile.parse(REPO / "Dockerfile").stage("runtime").last("USER")
    assert user is not None
    uid, gid = (int(x) for x in user.args.split(":"))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (uid, gid)
    assert spec["automountServiceAccountToken"] is False
    sc = container(objects)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # Read-only root: /tmp (HOME in the image) must be a volume.
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    resources = container(objects)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def test_selectors_and_references_line_up() -> None:
    objects = rendered(BASE)
    labels = pod(objects)["metadata"]["labels"]
    deployment = objects["Deployment"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"

    def selects(selector: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(objects["Service"]["spec"]["selector"])
    assert selects(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] > objects["PodDisruptionBudget"]["spec"][
        "minAvailable"], "otherwise the budget blocks every node drain"
    assert container(objects)["envFrom"][0]["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    service_port = objects["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] in {p["name"] for p in container(objects)["ports"]}


def test_service_monitor_scrapes_the_service() -> None:
    # kubernetes-validate has no schema for this CRD, so its shape is checked here.
    objects = rendered(BASE)
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = objects["Service"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"


def test_gpu_overlay_requests_a_gpu_and_the_cuda_image() -> None:
    base, gpu = rendered(BASE), rendered(GPU)
    c = container(gpu)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"] == container(base)["image"] + "-cuda"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod(gpu)["spec"]["tolerations"])
    # The patch adds to the base container, it does not replace it.
    assert c["securityContext"] == container(base)["securityContext"]
    assert c["readinessProbe"] == container(base)["readinessProbe"]
