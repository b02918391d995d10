"""One image's provenance: both readers' findings combined into what is declared, by whom, how far
it validated, and the evidence lines that say so (no verdict: that is ``dif.verdict``'s)."""

from __future__ import annotations

from dif.provenance.containers import media_type
from dif.provenance.findings import (
    AI_SOURCE_TYPES,
    DEFAULT_MAX_MANIFEST_BYTES,
    MAX_EVIDENCE,
    TRUST_CODES,
    C2paFinding,
    MetadataFinding,
    Provenance,
)
from dif.provenance.manifests import c2pa_finding
from dif.provenance.metadata import metadata_finding

UNSIGNED = "unsigned metadata: strippable and forgeable"


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
    c2pa = c2pa_finding(data, media_type(data, filename), max_manifest_bytes, trust_anchors)
    metadata = metadata_finding(data)
    return summarise(c2pa, metadata)


def summarise(c2pa: C2paFinding, metadata: MetadataFinding) -> Provenance:
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
        why = ", ".join(c for c in c2pa.validation_codes if c not in TRUST_CODES) or c2pa.error or "unknown"
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
