"""A folder of fingerprint artifacts loaded as one consistent set, with the extractor that made them.

The service (``app.engine``) and the offline scanners (``dif detect``, ``dif scan``) load a set
the same way, so the same folder is refused for the same reasons everywhere and an image scored
offline gets the numbers the service would give it. ``digest`` names the set in scan outputs:
two scans with the same digest decided with the same fingerprints, nulls and extractor weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dif.artifact import Fingerprint, load_all, tensor_digest
from dif.errors import ArtifactError
from dif.extractors import ResidualExtractor, create

# The set shipped beside the packages (the service's default too, see app.settings).
EMBEDDED_FINGERPRINTS = Path(__file__).resolve().parent.parent / "fingerprints"


@dataclass(frozen=True)
class FingerprintSet:
    fingerprints: list[Fingerprint]
    extractor: ResidualExtractor
    extractor_key: str
    digest: str  # sha256 over the extractor's weights and every fingerprint, null and detection rule


def default_fingerprints_dir() -> Path:
    """``DIF_FINGERPRINTS_DIR`` when set (as in the images), else the embedded set."""
    configured = os.environ.get("DIF_FINGERPRINTS_DIR")
    return Path(configured) if configured else EMBEDDED_FINGERPRINTS


def load_fingerprint_set(root: Path | str, extractor_dir: Path | str | None = None) -> FingerprintSet:
    """Load and validate every artifact under ``root``: one extractor, the weights they were made with."""
    fingerprints = load_all(root)
    if not fingerprints:
        raise ArtifactError(f"no fingerprint artifacts in {root}; point at a folder of artifacts (one sub-folder "
                            "per generator, made by `dif train`): DIF_FINGERPRINTS_DIR, or --fingerprints")
    keys = sorted({fp.extractor_key for fp in fingerprints})
    if len(keys) != 1:
        by_key = {k: [fp.name for fp in fingerprints if fp.extractor_key == k] for k in keys}
        raise ArtifactError(f"{root}: fingerprints were made with different residual extractors {by_key}; "
                            "one set must share one extractor, serve the others from another folder")
    extractor = create(keys[0], extractor_dir)
    identity = extractor.describe()
    stale = [fp.name for fp in fingerprints if fp.extractor.get("digest") not in (None, identity["digest"])]
    if stale:
        raise ArtifactError(f"{', '.join(stale)}: made with other weights of extractor {keys[0]} than the ones "
                            f"loaded (digest {str(identity['digest'])[:12]}); "
                            "check DIF_EXTRACTOR_DIR (--extractor-dir)")
    return FingerprintSet(fingerprints, extractor, keys[0], set_digest(fingerprints, identity))


def set_digest(fingerprints: list[Fingerprint], extractor: dict[str, str | int]) -> str:
    """Everything a verdict depends on besides the image and the rate, in a stable order."""
    h = hashlib.sha256(json.dumps(extractor, sort_keys=True).encode())
    for fp in sorted(fingerprints, key=lambda f: f.name):
        part = {"name": fp.name, "tensor": tensor_digest(fp.tensor), "detection": fp.detection.to_dict(),
                "null": fp.null_model.to_dict()}
        h.update(json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()
