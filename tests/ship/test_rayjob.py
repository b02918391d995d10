"""deploy/ray/rayjob.yaml: the KubeRay RayJob that runs `dif scan` on Kubernetes.

The RayJob's own fields are checked with check-jsonschema against tests/ship/rayjob.schema.json
(hand-written from KubeRay's ray.io/v1 CRD: no PyPI package ships it), every pod template with
kubernetes-validate --strict as a core/v1 PodTemplate, and the rest by hand: the entrypoint is
a `dif scan` our own parser accepts, the images are the Dockerfile's scan target, the GPU group
gets GPUs and the scan asks for them, the pods run as the image's user.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from dif_cli import build_parser

from .conftest import DEPLOY, REPO, kubernetes_validate, load_yaml_docs, run, tool
from .dockerfile import Dockerfile

MANIFEST = DEPLOY / "ray" / "rayjob.yaml"
SCHEMA = Path(__file__).parent / "rayjob.schema.json"
OLDEST_KUBERNETES = "1.28.0"


def rayjob() -> dict[str, Any]:
    docs = load_yaml_docs(MANIFEST)
    assert len(docs) == 1
    return docs[0]


def groups(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Head and worker groups by name ("head" for the head group)."""
    cluster = job["spec"]["rayClusterSpec"]
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def schema_check(job: dict[str, Any], tmp_path: Path) -> tuple[int, str]:
    instance = tmp_path / "rayjob.yaml"
    instance.write_text(yaml.safe_dump(job))
    result = run([tool("check-jsonschema"), "--schemafile", str(SCHEMA), str(instance)], timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_the_rayjob_fields_match_the_crd(tmp_path: Path) -> None:
    code, output = schema_check(rayjob(), tmp_path)
    assert code == 0, output


@pytest.mark.parametrize("path, value", [
    (("spec", "shutdownAfterJobFinish"), True),  # misspelt
    (("spec", "rayClusterSpec", "headGroupSpec", "rayStartParams", "num-cpus"), 0),  # must be a string
    (("spec", "submissionMode"), "K8sJob"),
])
def test_the_schema_catches_mistakes(path: tuple[str, ...], value: Any, tmp_path: Path) -> None:
    job = rayjob()
    node = job
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    code, output = schema_check(job, tmp_path)
    assert code != 0 and "Schema validation errors" in output, output


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, None], ids=["oldest", "newest"])
def test_every_pod_template_is_a_valid_pod_template(version: str | None, tmp_path: Path) -> None:
    templates = [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"dif-scan-{name}"},
                  "template": group["template"]} for name, group in groups(rayjob()).items()]
    output = kubernetes_validate(templates, tmp_path / "templates.yaml", version)
    assert sum("passed for resource" in line for line in output.splitlines()) == len(templates), output


def test_a_typo_in_a_pod_template_is_caught(tmp_path: Path) -> None:
    template = groups(rayjob())["gpu-score"]["template"]
    template["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalations"] = False
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"},
                                        "template": template}))
    result = run([tool("kubernetes-validate"), "--strict", str(manifest)], timeout=120)
    assert result.returncode != 0 and "allowPrivilegeEscalations" in result.stdout + result.stderr


def test_the_entrypoint_is_a_scan_our_parser_accepts() -> None:
    job = rayjob()
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["dif", "scan"]
    args = build_parser(["scan.commands"]).parse_args(argv[1:])
    assert args.ray_address == "auto", "joins the RayJob's cluster instead of starting its own"
    assert args.resume, "a retried job (backoffLimit) picks up where the last one stopped"
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["shutdownAfterJobFinishes"] is True
    gpus = {name: int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
            for name, g in groups(job).items()}
    assert gpus["gpu-score"] >= 1 and args.num_gpus_per_worker == 1, "one scoring actor per GPU"
    assert gpus["head"] == 0 and gpus["cpu-decode"] == 0


def test_images_and_user_are_the_scan_target() -> None:
    df = Dockerfile.parse(REPO / "Dockerfile")
    user = df.stage("scan").last("USER")
    assert user is not None
    uid, gid = (int(x) for x in user.args.split(":"))
    for name, group in groups(rayjob()).items():
        spec = group["template"]["spec"]
        container = spec["containers"][0]
        expected = "dif-service:0.1.0-scan-cuda" if name == "gpu-score" else "dif-service:0.1.0-scan"
        assert container["image"] == expected, name
        assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (uid, gid)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        # Ray's object store needs more than the 64 MiB /dev/shm a container gets; HOME=/tmp is Ray's scratch.
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert "emptyDir" in volumes[mounts["/tmp"]]
        # Our probes, in Python: KubeRay's defaults call wget, which the slim image lacks.
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["exec"]["command"][0] == "python", (name, probe)


def test_replica_bounds_and_ray_version() -> None:
    job = rayjob()
    for name, group in groups(job).items():
        if name != "head":
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
    assert groups(job)["head"]["rayStartParams"]["num-cpus"] == "0", "the head schedules, it does not decode"
    pins = [line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("scan = ")]
    lowest = pins[0].split('"ray[data]>=')[1].split('"')[0]
    assert job["spec"]["rayClusterSpec"]["rayVersion"].startswith(lowest + "."), "rayVersion is the image's Ray"
