"""model_version counts the sets actually loaded: a failed /admin/reload does not use up a number."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from .support import error_of, write_artifacts


def test_a_failed_reload_does_not_skip_a_version(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = write_artifacts(tmp_path / "fingerprints", ["alpha", "beta"])
    server = serve(fingerprints=root, api_key="k")
    headers = {"X-API-Key": "k"}
    broken = root / "broken"
    shutil.copytree(root / "alpha", broken)
    (broken / "metadata.json").write_text("{ not json")
    refused = httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=30)
    assert refused.status_code == 422 and error_of(refused)["code"] == "invalid_artifact"
    shutil.rmtree(broken)
    reloaded = httpx.post(f"{server.url}/admin/reload", headers=headers, timeout=30)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["model_version"] == 2  # the set loaded at start-up was 1
    listed = httpx.get(f"{server.url}/generators", headers=headers, timeout=30).json()
    assert listed["model_version"] == 2
