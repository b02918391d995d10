"""Shared test fixtures: the shared sample data must be present (CI fails, never skips, without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.paths import LTIM, REFERENCE


def pytest_sessionstart(session: pytest.Session) -> None:
    if not LTIM.is_dir():
        raise pytest.UsageError(f"{LTIM} is missing: the tests need ../shared beside the repository")


@pytest.fixture(scope="session")
def ltim() -> Path:
    return LTIM


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE
