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

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        # An empty DIF_API_KEY= in a compose file means "no key", not "the empty key".
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
