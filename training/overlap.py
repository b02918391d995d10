"""Does ``dif eval`` score the images the fingerprint trained on?

A fingerprint scores its own training images far better than new ones, so an evaluation on them
reports 1.000 that says nothing about detection. The artifact records ``data_digest`` (labels,
names and contents of every training image) and the folders it trained on (``provenance``).
When those folders still hold exactly the digested images, the check compares contents image by
image; when they moved or changed, only the whole-set digest is left to compare with.
"""

from __future__ import annotations

from pathlib import Path

from dif.artifact import Fingerprint
from dif.errors import DifError
from training.data import LabelledImages, file_digest, scan, with_extra_reals
from training.evaluate import real_pool


def training_images(fp: Fingerprint) -> LabelledImages | None:
    """The images ``fp`` trained on, if its recorded folders (relative ones are read from the current
    directory, as the trainer wrote them) still hold exactly what ``data_digest`` covers."""
    recorded = fp.metadata.get("data_digest")
    provenance = fp.metadata.get("provenance") or {}
    if not recorded or not provenance.get("data"):
        return None
    try:
        images = with_extra_reals(scan(provenance["data"]), [Path(p) for p in provenance.get("extra_real") or []])
    except (DifError, OSError):
        return None
    return images if images.digest() == recorded else None


def null_fitting_digests(fingerprints: list[Fingerprint]) -> set[str]:
    """Contents of the photos that only fitted these fingerprints' nulls (``--null-reals``): a
    false-positive rate measured on them would be flattered by construction."""
    return {d for fp in fingerprints for d in (fp.metadata.get("provenance") or {}).get("null_real_sha256") or []}


def unseen_by(fingerprints: list[Fingerprint], paths: list[Path]) -> list[Path]:
    """``paths`` less the photos any of ``fingerprints`` fitted its null on."""
    fitted = null_fitting_digests(fingerprints)
    return [p for p in paths if file_digest(p) not in fitted]


def training_overlap(fp: Fingerprint, data_dir: Path, reals: list[Path] | None = None) -> str | None:
    """A one-line warning when the evaluated images (``data_dir`` and the ``reals`` pool) include
    ``fp``'s training images, else None."""
    evaluated = scan(data_dir)
    pool = real_pool(reals) if reals else LabelledImages([], [])
    # data_dir's own 0_real counts too: a photo that fitted the null flatters the rate wherever it sits.
    evaluated_digests = [file_digest(p) for p in [*evaluated.paths, *pool.paths]]
    fitted = null_fitting_digests([fp])
    null_fitted = sum(d in fitted for d in evaluated_digests)
    if null_fitted:
        return (f"{null_fitted} of the {len(evaluated_digests)} evaluated images fitted {fp.name!r}'s null "
                "(--null-reals): its false-positive rate on them is flattered; measure it on photos it never saw")
    training = training_images(fp)
    if training is not None:
        shared = set(evaluated_digests) & {file_digest(p) for p in training.paths}
        if not shared:
            return None
        return (f"{len(shared)} of the {len(evaluated_digests)} evaluated images trained {fp.name!r} (same content "
                "as its training images): these figures do not measure detection of new images")
    if fp.metadata.get("data_digest") == evaluated.digest():
        return (f"{data_dir} holds the very images {fp.name!r} trained on (its data_digest): "
                "these figures do not measure detection of new images")
    return None
