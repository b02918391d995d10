"""Fixtures for the lineage tests: a synthetic family (built once) and the imported reference fingerprints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dif.artifact import save_fingerprint
from training.importer import import_reference, reference_folders
from training.lineage_family import FamilyConfig, Member, build_families

# One family (five generators, ~15 s); `python -m bench.lineage_report` measures the same statistics
# over many seeds, three families to a population.
FAMILY_SEEDS = [0]


@pytest.fixture(scope="session")
def family(ltim: Path) -> Iterator[list[Member]]:
    """A family of five generators (parent, two children, two unrelated) with trained fingerprints.

    One thread: these are many small tensors, and a shared CPU makes thread
    hand-offs cost more than the work.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield build_families(FAMILY_SEEDS, ltim, FamilyConfig(keep_images=True))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def reference_artifacts(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 12 reference fingerprints converted to artifacts (one folder each)."""
    out = tmp_path_factory.mktemp("reference-artifacts")
    for folder in reference_folders(reference_dir):
        fp = import_reference(folder)
        save_fingerprint(fp, out / fp.name)
    return out
