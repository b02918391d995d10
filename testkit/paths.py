"""Where the checkout and the shared, read-only data beside it (``../shared``) are."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
LTIM = DATA / "ltim"
REFERENCE = DATA / "reference-fingerprints"
CBSD68 = DATA / "real" / "cbsd68"

MIB = 1 << 20
