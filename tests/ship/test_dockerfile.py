"""The Dockerfile: hadolint, and the promises of README.md checked on the file itself."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import REPO, run, settings_from_env, tool
from .dockerfile import IMAGE_PATHS, Dockerfile, build_context

DOCKERFILE = REPO / "Dockerfile"


def parsed() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE)


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), "--no-color", str(DOCKERFILE)], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_and_the_runtime_gets_only_the_venv_and_data() -> None:
    df = parsed()
    assert [s.name for s in df.stages] == ["build", "runtime"]
    runtime = df.stage("runtime")
    sources = []
    for inst in runtime.all("COPY"):
        flags, words = inst.flags_and_words()
        if "from" in flags:
            assert words == ["/opt/venv", "/opt/venv"], inst.args  # nothing else leaves the build stage
        else:
            sources += words[:-1]
    assert sorted(sources) == ["docker/healthcheck.py", "fingerprints"], "the runtime holds no source tree"
    assert "slim" in df.global_args["PYTHON_IMAGE"]


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
    allowed = ("dif/", "app/", "training/", "fingerprints/", "docker/")
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
