"""Unsigned metadata: XMP, EXIF and the PNG text chunks generator tools write. Anyone can write,
strip or forge it, so it is read only as far as the format is unambiguous."""

from __future__ import annotations

import functools
import html
import io
import json
import re
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

from dif.provenance.findings import (
    MAX_JSON_CHARS,
    MAX_USER_COMMENT_BYTES,
    MAX_XMP_CHARS,
    MetadataFinding,
    clean,
    source_type,
)


def metadata_finding(data: bytes) -> MetadataFinding:
    try:
        return _read_metadata(data)
    except UnidentifiedImageError:  # its message names a Python object, not the data
        return MetadataFinding(error="metadata unreadable: not an image Pillow recognises")
    except Exception as exc:  # Pillow raises many types on hostile headers; a finding, not a 500
        return MetadataFinding(error=clean(f"metadata unreadable: {exc}"))


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
    software, make, model = (clean(exif.get(tag)) for tag in (0x0131, 0x010F, 0x0110))
    comment = _user_comment(exif_ifd.get(0x9286, exif.get(0x9286)))
    creator_tool = _xmp_value(xmp, "xmp:CreatorTool")
    hint = (_png_text_hint(info) if is_png else None) or _comment_hint(comment) \
        or _named_tool_hint(software, "exif:Software") or _named_tool_hint(creator_tool, "xmp:CreatorTool")
    return MetadataFinding(
        digital_source_type=source_type(_xmp_value(xmp, "Iptc4xmpExt:DigitalSourceType")),
        creator_tool=creator_tool,
        remote_manifest=clean(_xmp_value(xmp, "dcterms:provenance")),
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
    return clean(html.unescape(value))


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
    return name, clean(model.group(1)) if model else None, source


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
    if clean(info.get("Software")) == "NovelAI":
        return "novelai", clean(info.get("Source")), "png:Software"
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
                    return clean(inputs[key])
    return None


def _invoke_model(meta: dict[str, Any] | None) -> str | None:
    model = meta.get("model") if meta else None
    if isinstance(model, dict):
        return clean(model.get("name") or model.get("model_name"))
    return clean(model)


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
