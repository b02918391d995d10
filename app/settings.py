"""Service configuration, read from ``DIF_*`` environment variables.

The names are a contract with the Docker, Kubernetes and README docs: keep them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dif.decision import DEFAULT_INCONCLUSIVE_RATE, DEFAULT_RATE, MAX_RATE, MIN_RATE, OperatingPoint
from dif.provenance import check_trust_anchors

# The embedded fingerprints live beside the packages, not beside the working directory,
# so `dif serve` finds them wherever it is started from.
DEFAULT_FINGERPRINTS_DIR = Path(__file__).resolve().parent.parent / "fingerprints"
MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIF_", extra="ignore")

    device: Literal["auto", "cpu", "cuda"] = "auto"
    fingerprints_dir: Path = DEFAULT_FINGERPRINTS_DIR
    extractor_dir: Path | None = None
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    max_batch_size: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(5, ge=0)
    queue_capacity: int = Field(256, ge=1)
    request_timeout_s: float = Field(30, gt=0)
    max_upload_bytes: int = Field(20 * MIB, ge=1)
    max_pixels: int = Field(40_000_000, ge=1)
    max_files_per_request: int = Field(16, ge=1)
    decode_threads: int = Field(2, ge=1)
    torch_threads: int = Field(0, ge=0)  # 0 keeps torch's default
    # bf16 + channels-last for a learned extractor on a GPU; fixed filters always run fp32.
    precision: Literal["fp32", "bf16"] = "fp32"
    api_key: SecretStr | None = None
    # NoDecode: accept "https://a,https://b" as well as a JSON list.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    drain_timeout_s: float = Field(25, ge=0)
    # The chance that a real photo is answered `fake` by the whole loaded set (dif.decision).
    false_positive_rate: float = Field(DEFAULT_RATE, ge=MIN_RATE, le=MAX_RATE)
    # Looser rate below which an image that is not `fake` is answered `inconclusive`.
    inconclusive_rate: float = Field(DEFAULT_INCONCLUSIVE_RATE, ge=MIN_RATE, le=MAX_RATE)
    # Read declared provenance (C2PA, XMP, EXIF, PNG text) of every upload (docs/provenance.md).
    provenance: bool = True
    # PEM bundle of CA certificates whose C2PA signers are trusted. Unset: none is, so no
    # manifest can decide a verdict. Read and checked once, when the service is built.
    c2pa_trust_anchors: Path | None = None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_key", "c2pa_trust_anchors", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # An empty DIF_API_KEY= in a compose file means "no key", not "the empty key" (and
        # an empty DIF_C2PA_TRUST_ANCHORS= "no anchors", not the current directory).
        return None if value == "" else value

    @model_validator(mode="after")
    def _band_above_rate(self) -> Settings:
        if self.inconclusive_rate < self.false_positive_rate:
            raise ValueError(f"DIF_INCONCLUSIVE_RATE ({self.inconclusive_rate:g}) must be at least "
                             f"DIF_FALSE_POSITIVE_RATE ({self.false_positive_rate:g})")
        return self

    def operating_point(self, rate: float | None = None) -> OperatingPoint:
        """The default operating point, or a request's own rate with the band kept at least as loose."""
        chosen = self.false_positive_rate if rate is None else rate
        return OperatingPoint(chosen, max(chosen, self.inconclusive_rate))

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0

    def trust_anchors_pem(self) -> str | None:
        """The trust-anchor bundle, read and checked; ValueError (one line, naming the setting) if unusable.

        Checked before the server starts: an unusable bundle must stop the service, not leave
        every signer silently untrusted (or every manifest invalid) while it serves.
        """
        path = self.c2pa_trust_anchors
        if path is None:
            return None
        try:
            pem = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"DIF_C2PA_TRUST_ANCHORS={path}: cannot read a PEM bundle there: {exc}") from exc
        try:
            check_trust_anchors(pem)
        except ValueError as exc:
            raise ValueError(f"DIF_C2PA_TRUST_ANCHORS={path}: {exc}") from exc
        return pem
