"""Declared provenance of an image: C2PA Content Credentials, IPTC DigitalSourceType, generator metadata.

A fingerprint is statistical evidence; many generated images also carry *declared* evidence. This
module reads it and says how far each piece can be trusted, never more:

* C2PA: the manifest store is parsed and validated by the C2PA reference implementation
  (``c2pa-python``, bindings to c2pa-rs). Integrity (signature and hashes) and trust (does the
  signer chain to a configured trust anchor) are reported separately: a self-made CA gives a
  manifest whose integrity is valid and whose signer is untrusted.
* XMP ``Iptc4xmpExt:DigitalSourceType``, EXIF ``Software``/``Make``/``Model``/``UserComment``
  and the PNG text chunks that generator tools write: unsigned, so strippable and forgeable.

Hostile input is a finding, never an exception: a malformed, truncated, oversized or
self-referencing manifest ends in ``c2pa.state == "invalid"`` with an ``error``. The work is
bounded (manifest size measured before the parser runs, ingredient count and depth, scan and
JSON sizes), and nothing is fetched over the network: remote manifests and OCSP are off.

See docs/provenance.md for the fields and how they should enter a verdict.
"""

from __future__ import annotations

import functools
import html
import io
import json
import mimetypes
import re
import warnings
from collections import deque
from dataclasses import dataclass, fields, is_dataclass
from types import ModuleType
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

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
_TRUST_CODES = frozenset({"signingCredential.untrusted", "signingCredential.ocsp.skipped", "timeStamp.untrusted"})

UNSIGNED = "unsigned metadata: strippable and forgeable"


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


def read_provenance(
    data: bytes,
    *,
    filename: str | None = None,
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
    trust_anchors: str | None = None,
) -> Provenance:
    """Read the declared provenance of an encoded image. Never raises on any input bytes.

    ``filename`` only hints the container when its leading bytes do not say; nothing is
    opened. ``trust_anchors`` is a PEM bundle of CA certificates whose signers count as
    trusted (e.g. the C2PA trust list); without it every signer is ``untrusted``.
    Blocking and CPU-bound (native code for C2PA): call it off the event loop.
    """
    data = bytes(data)
    c2pa = _guarded_c2pa(data, _media_type(data, filename), max_manifest_bytes, trust_anchors)
    metadata = _guarded_metadata(data)
    return _combine(c2pa, metadata)


def c2pa_version() -> str | None:
    """Versions of the C2PA bindings and library, or None where they cannot be loaded.

    The first call loads the native library (~60 ms): a service calls it at start-up.
    """
    module = _c2pa()
    if module is None:
        return None
    return f"c2pa-python {getattr(module, '__version__', '?')} (c2pa-rs {module.sdk_version()})"


def check_trust_anchors(pem: str) -> None:
    """Raise ValueError if this PEM bundle holds no usable certificate (check it once, at start-up).

    c2pa alone accepts an empty bundle, a key, or a CERTIFICATE block whose contents are not a
    certificate, and then trusts nobody: an operator who configured anchors would never learn
    that none took effect. So every CERTIFICATE block must parse, and there must be one.
    """
    # cryptography comes with c2pa-python (its dependency); imported here, as only start-up needs it.
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii", errors="replace"))
    except ValueError as exc:
        first = str(exc).split(". ", 1)[0]
        raise ValueError(f"trust anchors refused: no PEM certificate could be read ({_clean(first)})") from exc
    if not certificates:
        raise ValueError("trust anchors refused: no PEM certificate in the bundle")
    module = _c2pa()
    if module is None:
        raise ValueError("the c2pa bindings cannot be loaded")
    try:
        _context(module, pem).close()
    except Exception as exc:  # the bindings raise their own error types
        raise ValueError(f"trust anchors refused by c2pa: {_clean(str(exc))}") from exc


# ---- C2PA -------------------------------------------------------------------------------------


class _Refused(Exception):
    """The manifest store is not handed to the parser (too large, container too fragmented)."""


@functools.cache
def _c2pa() -> ModuleType | None:
    # Imported on first use: the native library is 23 MB and most images carry no manifest.
    try:
        import c2pa
    except Exception:  # ImportError, or OSError when the shared library cannot load
        return None
    return c2pa


def _context(module: ModuleType, trust_anchors: str | None) -> Any:
    # A Context per read: cheap (~0.15 ms, and only for images with a manifest), and it shares
    # no native state between threads or across a fork.
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors}
    return module.Context.from_dict(settings)


def _guarded_c2pa(data: bytes, media_type: str | None, max_bytes: int, anchors: str | None) -> C2paFinding:
    try:
        return _read_c2pa(data, media_type, max_bytes, anchors)
    except Exception as exc:  # a finding, never a 500: whatever the bytes do to our walk
        return C2paFinding(state="invalid", error=_clean(f"unreadable manifest: {exc}"))


def _read_c2pa(data: bytes, media_type: str | None, max_bytes: int, anchors: str | None) -> C2paFinding:
    try:
        size = _manifest_store_size(data)
    except _Refused as exc:
        return C2paFinding(state="invalid", error=_clean(str(exc)))
    if size is None:
        return C2paFinding()
    if size > max_bytes:
        return C2paFinding(state="invalid", manifest_bytes=size,
                           error=f"manifest store of {size} bytes is over the limit of {max_bytes}: not parsed")
    module = _c2pa()
    if module is None:
        return C2paFinding(state="invalid", manifest_bytes=size, error="c2pa bindings unavailable: not validated")
    try:
        context = _context(module, anchors)
    except Exception as exc:  # bad trust anchors: the operator's fault, said as such, not the image's
        return C2paFinding(state="invalid", manifest_bytes=size,
                           error=_clean(f"not validated: trust anchors refused by c2pa: {exc}"))
    try:
        with module.Reader(media_type, io.BytesIO(data), context=context) as reader:
            text = reader.json()
    except module.C2paError.ManifestNotFound:
        # JUMBF bytes where the container does not keep a manifest: nothing the reader accepts.
        return C2paFinding(manifest_bytes=size, error="C2PA bytes found outside the container's manifest slot")
    except Exception as exc:
        return C2paFinding(state="invalid", manifest_bytes=size, error=_clean(str(exc)))
    finally:
        context.close()
    try:
        store = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return C2paFinding(state="invalid", manifest_bytes=size, error=_clean(f"manifest report unreadable: {exc}"))
    return summarise_store(store, size)


def _manifest_store_size(data: bytes) -> int | None:
    """Bytes of the embedded C2PA manifest store, or None when there is none.

    Looks for the C2PA JUMBF superbox (type ``jumb`` whose description box carries the C2PA
    UUID, which starts with the ASCII ``c2pa``) before calling into the parser, so an image
    without a manifest costs one ``bytes.find``. The size is the larger of what the box
    declares and what the container really holds (JPEG APP11, PNG caBX, WebP C2PA), so a box
    that understates its size is still bounded.
    """
    start = 0
    for _ in range(MAX_JUMBF_CANDIDATES):
        at = data.find(b"jumb", start)
        if at < 0:
            return None
        declared = _c2pa_box_size(data, at)
        if declared is not None:
            return max(declared, _container_store_bytes(data))
        start = at + 1
    return None


def _c2pa_box_size(data: bytes, at: int) -> int | None:
    """Declared size of the JUMBF superbox whose type sits at ``at``, if it is a C2PA store."""
    if at < 4:
        return None
    lbox = int.from_bytes(data[at - 4:at], "big")
    body = at + 4
    if lbox == 1:  # extended size in the 8 bytes after the type
        lbox = int.from_bytes(data[at + 4:at + 12], "big")
        body = at + 12
    elif lbox == 0:  # the box runs to the end of the data
        lbox = len(data) - (at - 4)
    if data[body + 4:body + 8] != b"jumd" or data[body + 8:body + 12] != b"c2pa":
        return None
    return lbox


def _container_store_bytes(data: bytes) -> int:
    if data.startswith(b"\xff\xd8"):
        return _jpeg_app11_bytes(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_chunk_bytes(data, b"caBX")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _riff_chunk_bytes(data, b"C2PA")
    return 0  # other containers: the box's declared size and the upload limit bound it


def _jpeg_app11_bytes(data: bytes) -> int:
    pos, total = 2, 0
    for _ in range(MAX_CONTAINER_STEPS):
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return total
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan: no more header segments
            return total
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xEB:
            total += length
        pos += 2 + length
    raise _Refused(f"over {MAX_CONTAINER_STEPS} JPEG segments before the image data: manifest not parsed")


def _png_chunk_bytes(data: bytes, kind: bytes) -> int:
    pos, total = 8, 0
    for _ in range(MAX_CONTAINER_STEPS):
        if pos + 8 > len(data):
            return total
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunk = data[pos + 4:pos + 8]
        if chunk == kind:
            total += length
        if chunk == b"IEND":
            return total
        pos += 12 + length
    raise _Refused(f"over {MAX_CONTAINER_STEPS} PNG chunks: manifest not parsed")


def _riff_chunk_bytes(data: bytes, kind: bytes) -> int:
    pos, total = 12, 0
    for _ in range(MAX_CONTAINER_STEPS):
        if pos + 8 > len(data):
            return total
        length = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos:pos + 4] == kind:
            total += length
        pos += 8 + length + (length & 1)
    raise _Refused(f"over {MAX_CONTAINER_STEPS} RIFF chunks: manifest not parsed")


def summarise_store(store: Any, manifest_bytes: int | None = None) -> C2paFinding:
    """The finding for a manifest store as c2pa's ``Reader.json()`` reports it (any JSON value).

    Every field is type-checked and bounded: the report mirrors attacker-written manifests.
    """
    if not isinstance(store, dict):
        return C2paFinding(state="invalid", manifest_bytes=manifest_bytes, error="manifest report is not an object")
    manifests = store.get("manifests")
    active_label = store.get("active_manifest")
    if not isinstance(manifests, dict) or not isinstance(active_label, str) \
            or not isinstance(manifests.get(active_label), dict):
        return C2paFinding(state="invalid", manifest_bytes=manifest_bytes, error="no active manifest in the store")
    active = manifests[active_label]
    codes = _status_codes(store.get("validation_status"))
    state, trust = _state_and_trust(store.get("validation_state"), codes)
    actions, source_types = _actions_and_source_types(active)
    ingredients, ingredient_count = _ingredients(active, manifests, active_label)
    return C2paFinding(
        state=state,
        trust=trust,
        validation_codes=codes,
        claim_generator=_claim_generator(active),
        signer=_signer(active.get("signature_info")),
        digital_source_types=source_types,
        actions=actions,
        ingredients=ingredients,
        ingredient_count=ingredient_count,
        manifest_bytes=manifest_bytes,
    )


def _status_codes(statuses: Any) -> tuple[str, ...]:
    if not isinstance(statuses, list):
        return ()
    codes = (_clean(s.get("code")) for s in statuses[:MAX_CODES * 4] if isinstance(s, dict))
    return tuple(dict.fromkeys(c for c in codes if c))[:MAX_CODES]


def _state_and_trust(raw: Any, codes: tuple[str, ...]) -> tuple[C2paState, Trust]:
    trust: Trust = "trusted" if raw == "Trusted" else \
        "untrusted" if "signingCredential.untrusted" in codes else "unknown"
    # Valid only on the reference implementation's own verdict and with no failure beyond
    # trust: a state this code does not know, or any integrity failure, is not validated.
    failures = [c for c in codes if c not in _TRUST_CODES]
    return ("valid" if raw in ("Valid", "Trusted") and not failures else "invalid"), trust


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name, version = _clean(info[0].get("name")), _clean(info[0].get("version"))
        if name:
            return f"{name} {version}" if version else name
    return _clean(manifest.get("claim_generator"))


def _signer(info: Any) -> C2paSigner | None:
    if not isinstance(info, dict):
        return None
    return C2paSigner(issuer=_clean(info.get("issuer")), common_name=_clean(info.get("common_name")),
                      time=_clean(info.get("time")))


def _assertions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    assertions = manifest.get("assertions")
    if not isinstance(assertions, list):
        return []
    return [a for a in assertions[:MAX_ASSERTIONS_WALKED] if isinstance(a, dict)]


def _actions_and_source_types(manifest: dict[str, Any]) -> tuple[tuple[C2paAction, ...], tuple[str, ...]]:
    actions: list[C2paAction] = []
    source_types: list[str] = []
    for assertion in _assertions(manifest):
        label, data = assertion.get("label"), assertion.get("data")
        if not isinstance(label, str) or not isinstance(data, dict):
            continue
        if label.startswith("c2pa.actions"):
            listed = data.get("actions")
            for raw in listed[:MAX_ACTIONS] if isinstance(listed, list) else []:
                action = _action(raw)
                if action is not None and len(actions) < MAX_ACTIONS:
                    actions.append(action)
                    if action.digital_source_type:
                        source_types.append(action.digital_source_type)
        elif label.startswith("stds.iptc"):
            declared = _source_type(data.get("Iptc4xmpExt:DigitalSourceType"))
            if declared:
                source_types.append(declared)
    return tuple(actions), tuple(dict.fromkeys(source_types))


def _action(raw: Any) -> C2paAction | None:
    if not isinstance(raw, dict):
        return None
    name = _clean(raw.get("action"))
    if not name:
        return None
    agent = raw.get("softwareAgent")
    agent_name = _clean(agent.get("name")) if isinstance(agent, dict) else _clean(agent)
    return C2paAction(action=name, digital_source_type=_source_type(raw.get("digitalSourceType")),
                      software_agent=agent_name)


def _ingredients(active: dict[str, Any], manifests: dict[str, Any],
                 active_label: str) -> tuple[tuple[C2paIngredient, ...], int]:
    """Breadth-first over ingredients, depth- and count-bounded; a manifest is entered once."""
    direct = active.get("ingredients")
    direct = direct if isinstance(direct, list) else []
    found: list[C2paIngredient] = []
    visited = {active_label}
    queue: deque[tuple[Any, int]] = deque((i, 1) for i in direct[:MAX_INGREDIENTS_WALKED])
    walked = 0
    while queue and walked < MAX_INGREDIENTS_WALKED and len(found) < MAX_INGREDIENTS:
        raw, depth = queue.popleft()
        walked += 1
        if not isinstance(raw, dict):
            continue
        label = raw.get("active_manifest")
        own = manifests.get(label) if isinstance(label, str) else None
        source_types: tuple[str, ...] = ()
        if isinstance(label, str) and isinstance(own, dict) and label not in visited:
            visited.add(label)
            source_types = _actions_and_source_types(own)[1]
            nested = own.get("ingredients")
            if depth < MAX_INGREDIENT_DEPTH and isinstance(nested, list):
                queue.extend((i, depth + 1) for i in nested[:MAX_INGREDIENTS_WALKED])
        found.append(C2paIngredient(title=_clean(raw.get("title")), format=_clean(raw.get("format")),
                                    relationship=_clean(raw.get("relationship")), depth=depth,
                                    has_manifest=isinstance(own, dict), digital_source_types=source_types))
    return tuple(found), len(direct)


def _source_type(value: Any) -> str | None:
    """The IPTC code (``trainedAlgorithmicMedia``) of a digital source type URI; other values as given."""
    text = _clean(value)
    if text is None:
        return None
    match = _IPTC_SOURCE_TYPE.match(text)
    return match.group(1) if match else text


# ---- unsigned metadata ------------------------------------------------------------------------


def _guarded_metadata(data: bytes) -> MetadataFinding:
    try:
        return _read_metadata(data)
    except UnidentifiedImageError:  # its message names a Python object, not the data
        return MetadataFinding(error="metadata unreadable: not an image Pillow recognises")
    except Exception as exc:  # Pillow raises many types on hostile headers; a finding, not a 500
        return MetadataFinding(error=_clean(f"metadata unreadable: {exc}"))


def _read_metadata(data: bytes) -> MetadataFinding:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(io.BytesIO(data))
        with image:
            info = dict(image.info)
            # PNG's getexif() decodes the whole image when there is no eXIf chunk before the
            # pixels; header-level metadata is all this reads.
            wants_exif = image.format != "PNG" or "exif" in info
            exif = image.getexif() if wants_exif else Image.Exif()
            is_png = image.format == "PNG"
            exif_ifd = exif.get_ifd(0x8769) if 0x8769 in exif else {}
    xmp = _xmp_text(info.get("xmp"))
    software, make, model = (_clean(exif.get(tag)) for tag in (0x0131, 0x010F, 0x0110))
    comment = _user_comment(exif_ifd.get(0x9286, exif.get(0x9286)))
    creator_tool = _xmp_value(xmp, "xmp:CreatorTool")
    hint = (_png_text_hint(info) if is_png else None) or _comment_hint(comment) \
        or _named_tool_hint(software, "exif:Software") or _named_tool_hint(creator_tool, "xmp:CreatorTool")
    return MetadataFinding(
        digital_source_type=_source_type(_xmp_value(xmp, "Iptc4xmpExt:DigitalSourceType")),
        creator_tool=creator_tool,
        remote_manifest=_clean(_xmp_value(xmp, "dcterms:provenance")),
        software=software,
        make=make,
        model=model,
        generator=hint[0] if hint else None,
        generator_model=hint[1] if hint else None,
        generator_source=hint[2] if hint else None,
        text_keys=tuple(k for k in GENERATOR_TEXT_KEYS if k in info) if is_png else (),
    )


def _xmp_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw[:MAX_XMP_CHARS].decode("utf-8", errors="replace")
    return raw[:MAX_XMP_CHARS] if isinstance(raw, str) else ""


@functools.cache
def _xmp_pattern(qname: str) -> re.Pattern[str]:
    # XMP is RDF/XML, but an XML parser on untrusted bytes brings entity expansion with it; the
    # three serialisations of a simple property are matched directly (bounded, linear).
    q = re.escape(qname)
    quoted = r"""(?:"([^"<]{1,2048})"|'([^'<]{1,2048})')"""
    return re.compile(rf"{q}\s*=\s*{quoted}|<{q}\s+rdf:resource\s*=\s*{quoted}|<{q}\s*>\s*([^<]{{1,2048}})</{q}\s*>")


def _xmp_value(xmp: str, qname: str) -> str | None:
    if qname not in xmp:
        return None
    match = _xmp_pattern(qname).search(xmp)
    if match is None:
        return None
    value = next(g for g in match.groups() if g is not None)
    return _clean(html.unescape(value))


def _user_comment(raw: Any) -> str | None:
    """EXIF UserComment: an 8-byte character-code prefix, then the text (A1111 writes UTF-16)."""
    if isinstance(raw, str):
        return raw[:MAX_USER_COMMENT_BYTES]
    if not isinstance(raw, bytes):
        return None
    head, body = raw[:8], raw[8:MAX_USER_COMMENT_BYTES]
    if head == b"UNICODE\x00":
        # The byte order is the writer's: the zero byte of an ASCII character says which.
        codec = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return body.decode(codec, errors="replace")
    if head in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8", errors="replace")
    return raw[:MAX_USER_COMMENT_BYTES].decode("utf-8", errors="replace")


# PNG text keys written by generator tools (A1111/Forge, ComfyUI, InvokeAI and its dream.py
# ancestor); NovelAI is recognised by its Software chunk.
GENERATOR_TEXT_KEYS = ("parameters", "prompt", "workflow", "invokeai_metadata", "invokeai_graph",
                       "sd-metadata", "Dream")
_WEBUI_MODEL = re.compile(r"(?:^|,\s*)Model: ([^,\n]{1,100})")
_FORGE_VERSION = re.compile(r"(?:^|,\s*)Version: f\d")

_Hint = tuple[str, str | None, str]  # generator, model, where it was read


def _webui_hint(text: str, source: str) -> _Hint | None:
    """The AUTOMATIC1111 'infotext' (also Forge's, SD.Next's): prompt lines, then 'Steps: N, Sampler: ...'."""
    if "Steps: " not in text or "Sampler: " not in text:
        return None
    name = "stable-diffusion-webui-forge" if _FORGE_VERSION.search(text) else "stable-diffusion-webui"
    model = _WEBUI_MODEL.search(text)
    return name, _clean(model.group(1)) if model else None, source


def _png_text_hint(info: dict[Any, Any]) -> _Hint | None:
    parameters = info.get("parameters")
    if isinstance(parameters, str):
        hint = _webui_hint(parameters, "png:parameters")
        if hint:
            return hint
    for key in ("prompt", "workflow"):
        graph = _json_object(info.get(key))
        if graph is not None and _is_comfy_graph(graph):
            return "comfyui", _comfy_checkpoint(graph), f"png:{key}"
    for key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
        if isinstance(info.get(key), str):
            return "invokeai", _invoke_model(_json_object(info.get(key))), f"png:{key}"
    if _clean(info.get("Software")) == "NovelAI":
        return "novelai", _clean(info.get("Source")), "png:Software"
    return None


def _json_object(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, str) or len(raw) > MAX_JSON_CHARS:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_comfy_graph(graph: dict[str, Any]) -> bool:
    # 'prompt' is the API graph {node id: {"class_type": ..., "inputs": ...}}; 'workflow' the
    # editor's {"nodes": [{"type": ...}], "links": ...}.
    nodes = graph.get("nodes")
    if isinstance(nodes, list):
        return any(isinstance(n, dict) and isinstance(n.get("type"), str) for n in nodes[:64])
    values = list(graph.values())[:64]
    return bool(values) and all(isinstance(v, dict) and isinstance(v.get("class_type"), str) for v in values)


def _comfy_checkpoint(graph: dict[str, Any]) -> str | None:
    for node in list(graph.values())[:256]:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict):
            for key in ("ckpt_name", "unet_name"):
                if isinstance(inputs.get(key), str):
                    return _clean(inputs[key])
    return None


def _invoke_model(meta: dict[str, Any] | None) -> str | None:
    model = meta.get("model") if meta else None
    if isinstance(model, dict):
        return _clean(model.get("name") or model.get("model_name"))
    return _clean(model)


def _comment_hint(comment: str | None) -> _Hint | None:
    if not comment:
        return None
    # Written by OpenAI into DALL-E 2 images (seen in the shared dalle_2 samples, with a MakerNote
    # 'OpenAI--<hex>').
    if comment.strip().startswith("Made with OpenAI DALL-E"):
        return "dall-e", None, "exif:UserComment"
    # A1111 writes its infotext to EXIF UserComment in JPEG and WebP.
    return _webui_hint(comment, "exif:UserComment")


# Generator tools that name themselves in a Software or CreatorTool field.
_NAMED_TOOLS = (("novelai", "novelai"), ("comfyui", "comfyui"), ("invokeai", "invokeai"),
                ("midjourney", "midjourney"), ("dall-e", "dall-e"), ("dall·e", "dall-e"),
                ("adobe firefly", "adobe-firefly"), ("stable diffusion", "stable-diffusion"))


def _named_tool_hint(value: str | None, source: str) -> _Hint | None:
    lowered = (value or "").lower()
    for needle, name in _NAMED_TOOLS:
        if needle in lowered:
            return name, None, source
    return None


# ---- verdict-free summary ---------------------------------------------------------------------


def _combine(c2pa: C2paFinding, metadata: MetadataFinding) -> Provenance:
    evidence = tuple(_c2pa_evidence(c2pa) + _metadata_evidence(metadata))
    c2pa_ai = c2pa.state != "absent" and bool(c2pa.ai_source_types)
    if c2pa_ai:
        valid = c2pa.state == "valid"
        return Provenance(c2pa=c2pa, metadata=metadata, declared_ai=True,
                          declared_generator=_c2pa_generator(c2pa), declared_by="c2pa", validated=valid,
                          trusted=valid and c2pa.trust == "trusted", evidence=evidence[:MAX_EVIDENCE])
    declared_by: str | None = None
    if metadata.digital_source_type in AI_SOURCE_TYPES:
        declared_by = "xmp"
    if metadata.generator_source:
        declared_by = declared_by or metadata.generator_source.split(":", 1)[0]
    return Provenance(c2pa=c2pa, metadata=metadata, declared_ai=declared_by is not None,
                      declared_generator=metadata.generator, declared_by=declared_by, validated=False,
                      trusted=False, evidence=evidence[:MAX_EVIDENCE])


def _c2pa_generator(c2pa: C2paFinding) -> str | None:
    for action in c2pa.actions:
        if action.digital_source_type in AI_SOURCE_TYPES and action.software_agent:
            return action.software_agent
    # The claim generator names the generator only when its own manifest declares AI; an edit of
    # a generated ingredient is signed by the editor, which made none of it.
    if any(t in AI_SOURCE_TYPES for t in c2pa.digital_source_types):
        return c2pa.claim_generator
    return None


def _c2pa_evidence(c2pa: C2paFinding) -> list[str]:
    if c2pa.state == "absent":
        return [f"c2pa: {c2pa.error}"] if c2pa.error else []
    if c2pa.state == "invalid":
        why = ", ".join(c for c in c2pa.validation_codes if c not in _TRUST_CODES) or c2pa.error or "unknown"
        head = f"c2pa: manifest present but not valid ({why}): its claims are not validated"
        standing = "signed but invalid: not validated"
    else:
        trust = {"trusted": "signer on the trust list",
                 "untrusted": "signer NOT on the trust list (integrity only, anyone can make such a certificate)",
                 "unknown": "signer trust not checked"}[c2pa.trust or "unknown"]
        head = f"c2pa: signature and hashes valid; {trust}"
        standing = "signed, valid" + ("" if c2pa.trust == "trusted" else ", untrusted signer")
    signer = c2pa.signer
    if signer is not None and (signer.common_name or signer.issuer):
        head += f"; signed by {signer.common_name or '?'} ({signer.issuer or '?'})"
    lines = [head]
    for action in c2pa.actions:
        if action.digital_source_type:
            agent = f" by {action.software_agent}" if action.software_agent else ""
            lines.append(f"c2pa: {action.action} declares {action.digital_source_type}{agent} [{standing}]")
    for ingredient in c2pa.ingredients:
        for source_type in ingredient.digital_source_types:
            if source_type in AI_SOURCE_TYPES:
                lines.append(f"c2pa: ingredient '{ingredient.title or '?'}' (depth {ingredient.depth}) "
                             f"declares {source_type} [{standing}]")
    return lines


def _metadata_evidence(metadata: MetadataFinding) -> list[str]:
    lines = []
    if metadata.error:
        lines.append(f"metadata: {metadata.error}")
    if metadata.digital_source_type:
        lines.append(f"xmp: Iptc4xmpExt:DigitalSourceType {metadata.digital_source_type} [{UNSIGNED}]")
    if metadata.generator:
        model = f", model {metadata.generator_model}" if metadata.generator_model else ""
        lines.append(f"{metadata.generator_source}: written by {metadata.generator}{model} [{UNSIGNED}]")
    if metadata.remote_manifest:
        lines.append(f"xmp: dcterms:provenance names a remote C2PA manifest ({metadata.remote_manifest}): "
                     "not fetched, not validated")
    if metadata.software and metadata.generator_source != "exif:Software":
        lines.append(f"exif: Software '{metadata.software}' [unsigned]")
    if metadata.make or metadata.model:
        lines.append(f"exif: camera '{metadata.make or '?'}' / '{metadata.model or '?'}' "
                     "[unsigned; says nothing about AI either way]")
    return lines


# ---- helpers ----------------------------------------------------------------------------------


def _clean(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A short, printable copy of an attacker-controlled string (None for non-strings and blanks)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub(" ", value[: limit * 4]).strip()
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _media_type(data: bytes, filename: str | None) -> str | None:
    """The container's MIME type from its leading bytes; the filename only when they do not say."""
    for magic, media_type in ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                              (b"GIF8", "image/gif"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff")):
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
    guessed = mimetypes.guess_type(filename)[0] if filename else None
    # None lets the C2PA library detect the container itself.
    return guessed if guessed and guessed.startswith("image/") else None


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
