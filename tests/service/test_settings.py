"""Settings from DIF_* variables, and refusing artifact sets the service cannot serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.engine import load_model_set
from app.settings import DEFAULT_FINGERPRINTS_DIR, Settings
from dif.artifact import save_fingerprint
from dif.errors import ArtifactError
from dif.extractors import create
from testkit.fingerprints import make_fingerprint, write_artifacts
from testkit.paths import REPO


def test_defaults_match_the_documented_contract() -> None:
    s = Settings()
    assert (s.device, s.host, s.port, s.max_batch_size, s.max_wait_ms) == ("auto", "0.0.0.0", 8000, 16, 5)
    assert (s.queue_capacity, s.request_timeout_s, s.max_upload_bytes) == (256, 30, 20 * 1024 * 1024)
    assert (s.max_pixels, s.max_files_per_request, s.decode_threads, s.torch_threads) == (40_000_000, 16, 2, 0)
    assert (s.api_key, s.cors_origins, s.log_level, s.drain_timeout_s, s.extractor_dir) == (None, [], "info", 25,
                                                                                           None)
    assert s.fingerprints_dir == DEFAULT_FINGERPRINTS_DIR == REPO / "fingerprints"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "DIF_DEVICE": "cpu", "DIF_FINGERPRINTS_DIR": str(tmp_path), "DIF_EXTRACTOR_DIR": str(tmp_path / "x"),
        "DIF_HOST": "127.0.0.1", "DIF_PORT": "9000", "DIF_MAX_BATCH_SIZE": "32", "DIF_MAX_WAIT_MS": "2.5",
        "DIF_QUEUE_CAPACITY": "64", "DIF_REQUEST_TIMEOUT_S": "7", "DIF_MAX_UPLOAD_BYTES": "1000",
        "DIF_MAX_PIXELS": "5000", "DIF_MAX_FILES_PER_REQUEST": "3", "DIF_DECODE_THREADS": "4",
        "DIF_TORCH_THREADS": "1", "DIF_API_KEY": "hunter2-key", "DIF_CORS_ORIGINS": "https://a.example, https://b.example",
        "DIF_LOG_LEVEL": "WARNING", "DIF_DRAIN_TIMEOUT_S": "5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.fingerprints_dir == tmp_path and s.extractor_dir == tmp_path / "x"
    assert (s.device, s.host, s.port, s.max_batch_size, s.max_wait_s) == ("cpu", "127.0.0.1", 9000, 32, 0.0025)
    assert (s.queue_capacity, s.request_timeout_s, s.max_upload_bytes, s.max_pixels) == (64, 7, 1000, 5000)
    assert (s.max_files_per_request, s.decode_threads, s.torch_threads, s.drain_timeout_s) == (3, 4, 1, 5)
    assert s.api_key is not None and s.api_key.get_secret_value() == "hunter2-key" and "hunter2" not in repr(s)
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.log_level == "warning"
    monkeypatch.setenv("DIF_CORS_ORIGINS", '["https://c.example"]')
    monkeypatch.setenv("DIF_API_KEY", "")
    s = Settings()
    assert s.cors_origins == ["https://c.example"] and s.api_key is None


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIF_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        Settings()


def test_a_set_mixing_extractors_is_refused(tmp_path: Path) -> None:
    write_artifacts(tmp_path, ["alpha"])
    save_fingerprint(make_fingerprint("beta", 1, extractor=create("laplacian@1").describe()), tmp_path / "beta")
    with pytest.raises(ArtifactError, match="different residual extractors") as refused:
        load_model_set(tmp_path, None, torch.device("cpu"), 1)
    assert "laplacian@1" in str(refused.value) and "signlap@1" in str(refused.value)


def test_a_fingerprint_made_with_other_extractor_weights_is_refused(tmp_path: Path) -> None:
    extractor = {**create("signlap@1").describe(), "digest": "0" * 64}
    save_fingerprint(make_fingerprint("alpha", 0, extractor=extractor), tmp_path / "alpha")
    with pytest.raises(ArtifactError, match="other weights"):
        load_model_set(tmp_path, None, torch.device("cpu"), 1)


def test_an_empty_folder_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="DIF_FINGERPRINTS_DIR"):
        load_model_set(tmp_path, None, torch.device("cpu"), 1)
