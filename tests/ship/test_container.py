"""Container-equivalent smoke test: replay the Dockerfile on this host, without a Docker engine.

The build stage's instructions run in order against a copy of the build context (filtered
by .dockerignore): its COPY steps copy, its RUN steps run `docker/install.sh` in a fresh
virtual environment. The runtime stage's COPY steps and ENV follow, then its ENTRYPOINT +
CMD starts the service on the baked-in fingerprints, which must become ready and answer
/detect for a real image; the HEALTHCHECK command must pass, and SIGTERM must end it cleanly.

Like Docker, the test caches the build stage's first RUN layer (the torch install, ~1 GB)
under ~/.cache/dif-service/ship-layers, keyed on every instruction before it, the files
they copy and the environment; a change to any of them rebuilds it. The layer is restored
as hard links (pip replaces files, never writes into them, so the snapshot stays intact)
and the venv's scripts are rewritten for their new path. Everything after it, the project
install included, runs fresh every time.

Paths the image owns (/opt/venv, /opt/dif, /src) live under a temporary root here. The
adaptations (ADAPTED_BUILD, ADAPTED_RUN, and in replay()): torch comes from pip's local
configuration instead of PyTorch's index (no route to it from here), pip's cache stays on
(the image turns it off to keep layers small), the server binds loopback on a free port
with one torch thread (the machine is shared), and the user switch (USER 10001) and
`useradd` are not replayed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from testkit.paths import LTIM
from testkit.servers import free_port, wait_ready

from .conftest import REPO, run
from .dockerfile import IMAGE_PATHS, Dockerfile, Instruction, Stage, build_context

pytestmark = pytest.mark.slow

IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"  # the python base image's PATH
ADAPTED_BUILD = {"TORCH_INDEX_URL": "", "PYTHON": sys._base_executable}  # type: ignore[attr-defined]
ADAPTED_RUN = {"DIF_HOST": "127.0.0.1", "DIF_TORCH_THREADS": "1", "DIF_LOG_LEVEL": "warning"}
USER_SETUP = re.compile(r"^(groupadd|useradd)\b")
LAYERS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dif-service" / "ship-layers"


@dataclass
class Container:
    root: Path
    env: dict[str, str]
    workdir: Path
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    healthcheck: list[str]
    fingerprints: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def rooted(root: Path, text: str) -> str:
    """Map the paths the image creates into ``root`` (the host's own /opt/... stay as they are)."""
    return IMAGE_PATHS.sub(lambda m: f"{root}{m.group(0)}", text)


def host_env() -> dict[str, str]:
    """What a clean build needs from this host: pip's configuration and cache, proxies."""
    keep = {k: v for k, v in os.environ.items()
            if k.startswith("PIP_") or k.lower().endswith("_proxy") or k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
    return {"PATH": IMAGE_PATH, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8", **keep}


def copy_step(root: Path, context: Path, workdir: Path, words: list[str]) -> None:
    *sources, dest = words
    target = Path(rooted(root, dest)) if dest.startswith("/") else workdir / dest
    for source in sources:
        src = context / source
        assert src.exists(), f"COPY {source}: not in the build context (check .dockerignore)"
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            into = target / src.name if dest.endswith("/") or len(sources) > 1 else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into)


def cached_layer(key: str, root: Path, build: Callable[[Path], None]) -> None:
    """Restore the layer ``key`` into ``root``, building it first (into a folder of its own) if needed."""
    layer = LAYERS / key
    if not layer.is_dir():
        LAYERS.mkdir(parents=True, exist_ok=True)
        scratch = LAYERS / f"{key}.{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            build(scratch / "root")
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        (scratch / "origin").write_text(str(scratch / "root"))
        try:
            scratch.rename(layer)
        except OSError:  # another run built it meanwhile
            shutil.rmtree(scratch, ignore_errors=True)
        for old in LAYERS.iterdir():  # one layer is enough: drop the outdated ones
            if old.name != key and "." not in old.name:
                shutil.rmtree(old, ignore_errors=True)
    result = run(["cp", "-al", f"{layer / 'root'}/.", str(root)], timeout=120)
    assert result.returncode == 0, result.stderr
    origin = (layer / "origin").read_text().encode()
    # A venv names its own path only in bin/ (shebangs, activate scripts), never in site-packages.
    for script in (p for pattern in ("*/bin/*", "*/*/bin/*") for p in root.glob(pattern)):
        if script.is_file() and not script.is_symlink() and script.stat().st_size < 1_000_000:
            data = script.read_bytes()
            if origin in data:  # a shebang or activate script naming the venv's old place
                mode = script.stat().st_mode
                script.unlink()  # break the hard link before writing
                script.write_bytes(data.replace(origin, str(root).encode()))
                script.chmod(mode)


def replay(stage: Stage, dockerfile: Dockerfile, root: Path, context: Path, base_env: dict[str, str],
           overrides: dict[str, str], cache_first_run: bool = False) -> tuple[dict[str, str], Path]:
    """Run a stage's COPY/WORKDIR/RUN steps; returns its final environment and working folder."""
    workdir = root
    chain = hashlib.sha256(sys.version.encode())
    first_run = True
    # Only the values the Dockerfile sets are mapped: the host's variables keep their paths.
    env = {k: v if base_env.get(k) == v else rooted(root, v) for k, v in dockerfile.env_of(stage, base_env).items()}
    env.update(overrides)
    args = {k: rooted(root, v) for k, v in dockerfile.args_of(stage).items()}
    run_env = {**env, **args, **overrides}
    run_env.pop("PIP_NO_CACHE_DIR", None)
    for inst in stage.instructions:
        chain.update(f"{inst.keyword} {inst.args}\n".encode())
        if inst.keyword == "WORKDIR":
            workdir = Path(rooted(root, inst.args))
            workdir.mkdir(parents=True, exist_ok=True)
        elif inst.keyword == "COPY":
            flags, words = inst.flags_and_words()
            if "from" in flags:  # the build stage's venv: same path in both stages, already in place
                assert all(rooted(root, w) == rooted(root, words[-1]) for w in words[:-1]), inst.args
                continue
            copy_step(root, context, workdir, words)
            for source in words[:-1]:
                for path in sorted([context / source, *(context / source).rglob("*")]):
                    if path.is_file():
                        chain.update(path.read_bytes())
        elif inst.keyword == "RUN":
            if USER_SETUP.match(inst.args):
                continue

            def step(target: Path, inst: Instruction = inst, where: Path = workdir) -> None:
                result = run(["sh", "-c", rooted(target, inst.args)], timeout=500, cwd=where, env=run_env)
                assert result.returncode == 0, (f"RUN {inst.args} failed:\n{result.stdout[-3000:]}\n"
                                                f"{result.stderr[-3000:]}")

            if cache_first_run and first_run:
                chain.update(repr(sorted(run_env.items())).encode())
                cached_layer(chain.hexdigest()[:24], root, step)
            else:
                step(root)
            first_run = False
    return env, workdir


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    root = tmp_path_factory.mktemp("container")
    dockerfile = Dockerfile.parse(REPO / "Dockerfile")
    context = root / "context"
    for relative in build_context(REPO, REPO / ".dockerignore"):
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith("/"):
            (context / relative).mkdir(exist_ok=True)
        else:
            shutil.copy2(REPO / relative, context / relative)

    replay(dockerfile.stage("build"), dockerfile, root, context, host_env(), ADAPTED_BUILD, cache_first_run=True)
    runtime = dockerfile.stage("runtime")
    env, workdir = replay(runtime, dockerfile, root, context, {"PATH": IMAGE_PATH, "LANG": "C.UTF-8"}, {})

    fingerprints = Path(env["DIF_FINGERPRINTS_DIR"])
    assert any(fingerprints.glob("*/fingerprint.safetensors")), "the image would hold no fingerprints"

    port = free_port()
    env.update(ADAPTED_RUN, DIF_PORT=str(port))
    entry = runtime.last("ENTRYPOINT")
    command = runtime.last("CMD")
    assert entry and command
    argv = [rooted(root, a) for a in entry.exec_form() + command.exec_form()]
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable and executable.startswith(str(root)), f"{argv[0]} is not the image's own ({executable})"
    health = runtime.last("HEALTHCHECK")
    assert health is not None

    log = root / "server.log"
    proc = subprocess.Popen([executable, *argv[1:]], cwd=workdir, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    box = Container(root, env, workdir, f"http://127.0.0.1:{port}", proc, log,
                    [rooted(root, a) for a in health.exec_form()], fingerprints)
    try:
        wait_ready(box.url, 180, proc, box.output)
        yield box
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(root / "opt", ignore_errors=True)  # a torch venv is ~1 GB: don't keep it around


def test_serves_a_real_image(container: Container) -> None:
    image = sorted((LTIM / "sd14" / "1_fake").glob("*.png"))[0]
    response = httpx.post(f"{container.url}/detect", files={"file": (image.name, image.read_bytes())}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    names = sorted(p.name for p in container.fingerprints.iterdir() if (p / "fingerprint.safetensors").is_file())
    assert sorted(s["generator"] for s in body["scores"]) == names
    assert (body["top"] is None or body["top"] in names) and isinstance(body["fake"], bool)
    assert httpx.get(f"{container.url}/metrics").status_code == 200


def test_serves_the_page_from_the_installed_package(container: Container) -> None:
    # The page's files are package data: a wheel without them would answer / with a 500.
    for path, kind in (("/", "text/html"), ("/ui/app.js", "javascript"), ("/ui/app.css", "text/css")):
        response = httpx.get(f"{container.url}{path}", timeout=30)
        assert response.status_code == 200 and kind in response.headers["content-type"], (path, response.text[:200])


def test_healthcheck_command_passes(container: Container) -> None:
    result = run(container.healthcheck, timeout=30, env=container.env, cwd=container.workdir)
    assert result.returncode == 0, result.stderr


def test_runs_the_installed_package_not_the_checkout(container: Container) -> None:
    code = "import app, dif, training; print(app.__file__, dif.__file__, training.__file__)"
    result = run(["python", "-c", code], timeout=60, env=container.env, cwd=container.workdir)
    assert result.returncode == 0, result.stderr
    for path in result.stdout.split():
        assert path.startswith(str(container.root / "opt" / "venv")), path


def test_sigterm_drains_and_exits_cleanly(container: Container) -> None:
    container.proc.send_signal(signal.SIGTERM)
    drain = float(container.env.get("DIF_DRAIN_TIMEOUT_S", "25"))
    # uvicorn re-raises the signal after a clean shutdown: "killed by SIGTERM" is clean too.
    assert container.proc.wait(drain + 15) in (0, -signal.SIGTERM), container.output()
    assert "Traceback" not in container.output(), container.output()
