"""The Dockerfile: hadolint, and the promises of README.md checked on the file itself."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import REPO, run, settings_from_env, tool
from .dockerfile import IMAGE_PATHS, Dockerfile, Stage, build_context

DOCKERFILE = REPO / "Dockerfile"


def parsed() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE)


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), "--no-color", str(DOCKERFILE)], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def copied(stage: Stage) -> tuple[list[str], list[str]]:
    """A stage's ``COPY --from`` stages (each must copy exactly the venv) and its context sources."""
    stages, sources = [], []
    for inst in stage.all("COPY"):
        flags, words = inst.flags_and_words()
        if "from" in flags:
            assert words == ["/opt/venv", "/opt/venv"], inst.args  # nothing else leaves a build stage
            stages.append(flags["from"])
        else:
            sources += words[:-1]
    return stages, sorted(sources)


def test_multi_stage_and_the_runtime_gets_only_the_venv_and_data() -> None:
    df = parsed()
    # The service image is the last stage, so a plain `docker build .` makes it; scans have a target.
    assert [s.name for s in df.stages] == ["build", "build-scan", "scan", "runtime"]
    assert copied(df.stage("runtime")) == (["build"], ["docker/healthcheck.py", "fingerprints"]), \
        "the runtime holds no source tree, and no Ray"
    assert "slim" in df.global_args["PYTHON_IMAGE"]


def test_the_scan_target_adds_ray_to_the_same_venv_and_runs_as_the_same_user() -> None:
    df = parsed()
    build_scan, scan, runtime = df.stage("build-scan"), df.stage("scan"), df.stage("runtime")
    assert build_scan.base == "build", "the scan venv is the service's venv plus the extra"
    install = " ".join(inst.args for inst in build_scan.all("RUN"))
    assert '"/src[scan-cluster]"' in install and "dif scan --help" in install
    extras = {line.split(" = ")[0]: line for line in (REPO / "pyproject.toml").read_text().splitlines()
              if line.startswith(("scan = ", "scan-cluster = "))}
    assert '"ray[data]>=' in extras["scan"] and '"dif-service[scan]"' in extras["scan-cluster"]
    assert '"ray[default]>=' in extras["scan-cluster"], "KubeRay's `ray job submit` needs the job server"
    assert not build_scan.all("COPY"), "the code is the build stage's; only Ray is added"
    assert "scan" in [i.flags_and_words()[1][0] for i in df.stage("build").all("COPY")], \
        "every image has the scan package (dif --help lists its commands, dif detect needs no Ray)"
    assert copied(scan) == (["build-scan"], ["fingerprints"])
    assert scan.base == runtime.base
    user, service_user = scan.last("USER"), runtime.last("USER")
    assert user is not None and service_user is not None and user.args == service_user.args
    env = df.env_of(scan, {"PATH": "/usr/bin"})
    assert env["PATH"].startswith("/opt/venv/bin:") and env["HOME"] == "/tmp"
    assert settings_from_env(env).fingerprints_dir == Path("/opt/dif/fingerprints")
    entry, cmd = scan.last("ENTRYPOINT"), scan.last("CMD")
    assert entry and cmd and entry.exec_form() + cmd.exec_form() == ["dif", "scan", "--help"]


def test_runs_as_a_numeric_non_root_user() -> None:
    user = parsed().stage("runtime").last("USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0, user.args


def test_cpu_torch_by_default_cuda_by_build_argument() -> None:
    df = parsed()
    args = df.args_of(df.stage("build"))
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert re.fullmatch(r"torch==[\d.]+", args["TORCH_SPEC"])
    install = (REPO / "docker" / "install.sh").read_text()
    assert '--index-url "$TORCH_INDEX_URL"' in install
    assert "whl/cu" in DOCKERFILE.read_text(), "the header shows the CUDA build"
    # The Makefile installs the same torch pin, so the image and `make run` serve with the same build.
    assert f"TORCH_PIN ?= {args['TORCH_SPEC']}" in (REPO / "Makefile").read_text()


def test_fingerprints_are_baked_in_where_the_service_looks() -> None:
    df = parsed()
    runtime = df.stage("runtime")
    env = df.env_of(runtime, {"PATH": "/usr/bin"})
    destinations = {inst.flags_and_words()[1][-1] for inst in runtime.all("COPY")
                    if inst.flags_and_words()[1][0] == "fingerprints"}
    assert destinations == {env["DIF_FINGERPRINTS_DIR"]}
    settings_from_env(env)  # every DIF_ value the image sets is valid
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_healthcheck_entrypoint_and_cmd_are_exec_form() -> None:
    runtime = parsed().stage("runtime")
    health, entry, cmd = runtime.last("HEALTHCHECK"), runtime.last("ENTRYPOINT"), runtime.last("CMD")
    assert health and entry and cmd
    assert health.exec_form() == ["python", "/opt/dif/healthcheck.py"]
    assert "--start-period=" in health.args
    assert entry.exec_form() + cmd.exec_form() == ["dif", "serve"]


def test_build_context_holds_every_copy_source_and_nothing_else() -> None:
    context = set(build_context(REPO, REPO / ".dockerignore"))
    for stage in parsed().stages:
        for inst in stage.all("COPY"):
            flags, words = inst.flags_and_words()
            if "from" in flags:
                continue
            for source in words[:-1]:
                assert source in context or f"{source}/" in context, f"COPY {source} is excluded by .dockerignore"
    allowed = ("dif/", "dif_cli/", "app/", "training/", "scan/", "fingerprints/", "docker/")
    stray = [p for p in context if "/" in p.rstrip("/") and not p.startswith(allowed)]
    assert not stray, f"sent to the Docker daemon for nothing: {stray[:10]}"
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in context)


def test_uses_only_the_paths_the_smoke_test_maps() -> None:
    text = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    for path in re.findall(r"(?<![\w.:/-])/opt/[\w./-]*|(?<![\w.:/-])/src\b[\w./-]*", text):
        assert IMAGE_PATHS.match(path), f"{path}: add it to IMAGE_PATHS in tests/ship/dockerfile.py"


def test_install_script_is_valid_sh(tmp_path: Path) -> None:
    script = REPO / "docker" / "install.sh"
    assert run(["sh", "-n", str(script)]).returncode == 0
    assert run(["sh", str(script), "nonsense", str(tmp_path)]).returncode == 2
