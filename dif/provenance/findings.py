"""What a provenance read finds, the bounds on it, and the cleaning every attacker-written string goes through."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

C2paState = Literal["valid", "invalid", "absent"]
Trust = Literal["trusted", "untrusted", "unknown"]

# Real manifest stores are tens of KiB (a thumbnail and a few assertions) up to a few MiB
# for edits with many ingredient thumbnails; beyond this the parse is refused, not attempted.
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_ACTIONS = 32
MAX_INGREDIENTS = 16
MAX_INGREDIENT_DEPTH = 4
# Bounds on our own walk of the store c2pa returns, independent of what we report.
MAX_ASSERTIONS_WALKED = 256
MAX_INGREDIENTS_WALKED = 256
MAX_CODES = 32
MAX_EVIDENCE = 24
MAX_TEXT = 200
MAX_JSON_CHARS = 1 << 20
MAX_XMP_CHARS = 1 << 20
MAX_USER_COMMENT_BYTES = 64 * 1024
# Chunks/segments walked to measure a manifest store; a real 120 MB PNG written with
# libpng's 8 KiB IDAT chunks has ~15,000.
MAX_CONTAINER_STEPS = 100_000
# Occurrences of the JUMBF box type examined; random pixel data contains "jumb" rarely.
MAX_JUMBF_CANDIDATES = 64

AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
_IPTC_SOURCE_TYPE = re.compile(r"^https?://cv\.iptc\.org/newscodes/digitalsourcetype/([A-Za-z]+)/?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A validation status that is not a failure of integrity (trust and OCSP are reported apart).
TRUST_CODES = frozenset({"signingCredential.untrusted", "signingCredential.ocsp.skipped", "timeStamp.untrusted"})


@dataclass(frozen=True)
class C2paAction:
    action: str
    digital_source_type: str | None = None
    software_agent: str | None = None


@dataclass(frozen=True)
class C2paIngredient:
    title: str | None
    format: str | None
    relationship: str | None
    depth: int  # 1: ingredient of the active manifest, 2: ingredient of that ingredient, ...
    has_manifest: bool  # its own manifest is in the store (and was validated with it)
    digital_source_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class C2paSigner:
    issuer: str | None
    common_name: str | None
    time: str | None = None


@dataclass(frozen=True)
class C2paFinding:
    """What the C2PA manifest store says. ``valid``: signature and hashes check out (trust apart)."""

    state: C2paState = "absent"
    trust: Trust | None = None
    error: str | None = None
    validation_codes: tuple[str, ...] = ()  # failure codes as the C2PA spec names them
    claim_generator: str | None = None
    signer: C2paSigner | None = None
    digital_source_types: tuple[str, ...] = ()  # of the active manifest (actions, IPTC assertion)
    actions: tuple[C2paAction, ...] = ()
    ingredients: tuple[C2paIngredient, ...] = ()
    ingredient_count: int = 0  # direct ingredients of the active manifest, all of them
    manifest_bytes: int | None = None

    @property
    def ai_source_types(self) -> tuple[str, ...]:
        found = [t for t in self.digital_source_types if t in AI_SOURCE_TYPES]
        found += [t for i in self.ingredients for t in i.digital_source_types if t in AI_SOURCE_TYPES]
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class MetadataFinding:
    """Unsigned metadata (XMP, EXIF, PNG text). Anyone can write, strip or forge it."""

    digital_source_type: str | None = None  # XMP Iptc4xmpExt:DigitalSourceType
    creator_tool: str | None = None  # XMP xmp:CreatorTool
    remote_manifest: str | None = None  # XMP dcterms:provenance: a C2PA manifest kept elsewhere, never fetched
    software: str | None = None
    make: str | None = None
    model: str | None = None
    generator: str | None = None  # the generator tool this metadata names, only where the format is unambiguous
    generator_model: str | None = None
    generator_source: str | None = None  # where it was named, e.g. "png:parameters", "exif:UserComment"
    text_keys: tuple[str, ...] = ()  # generator-tool PNG text chunks present (their contents are not echoed)
    error: str | None = None


@dataclass(frozen=True)
class Provenance:
    """Declared provenance of one image; ``to_dict()`` is JSON-ready."""

    c2pa: C2paFinding
    metadata: MetadataFinding
    declared_ai: bool
    declared_generator: str | None
    declared_by: str | None  # "c2pa", "xmp", "png", "exif": where the declaration was read
    validated: bool  # the declaration comes from a C2PA manifest whose integrity validated
    trusted: bool  # ... and whose signer chains to a configured trust anchor
    evidence: tuple[str, ...]

    @property
    def decisive(self) -> bool:
        """A validated, trusted C2PA manifest declares the image AI-generated (or composited with AI)."""
        return self.declared_ai and self.validated and self.trusted

    def to_dict(self) -> dict[str, Any]:
        out = _jsonable(self)
        out["decisive"] = self.decisive
        return out


def clean(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A short, printable copy of an attacker-controlled string (None for non-strings and blanks)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub(" ", value[: limit * 4]).strip()
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def source_type(value: Any) -> str | None:
    """The IPTC code (``trainedAlgorithmicMedia``) of a digital source type URI; other values as given."""
    text = clean(value)
    if text is None:
        return None
    match = _IPTC_SOURCE_TYPE.match(text)
    return match.group(1) if match else text


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
