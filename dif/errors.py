"""Error types shared by the CLI, the trainer and the service.

Each error carries a stable ``code`` and the HTTP status the service maps it to,
so a bad upload becomes a clear 4xx instead of a 500.
"""

from __future__ import annotations


class DifError(Exception):
    """Base class: ``code`` is machine-readable, the message says what to do."""

    code = "dif_error"
    status = 400


class UnsupportedImage(DifError):
    code = "unsupported_media_type"
    status = 415


class CorruptImage(DifError):
    code = "corrupt_image"
    status = 400


class ImageTooLarge(DifError):
    code = "image_too_large"
    status = 413


class ImageTooSmall(DifError):
    code = "image_too_small"
    status = 422


class ArtifactError(DifError):
    """A fingerprint or extractor artifact is missing, malformed or unsafe."""

    code = "invalid_artifact"
    status = 422


class DatasetError(DifError):
    code = "invalid_dataset"
    status = 422


class InvalidRate(DifError):
    """A requested false-positive rate outside what the null model supports."""

    code = "invalid_rate"
    status = 422
