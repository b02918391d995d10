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

The package splits by concern: ``findings`` (the result types and bounds), ``containers`` (walks
of the image container before any parser runs), ``manifests`` (C2PA), ``metadata`` (unsigned
metadata) and ``summary`` (``read_provenance``: both combined); this module is its public API.
"""

from dif.provenance.findings import (
    AI_SOURCE_TYPES,
    DEFAULT_MAX_MANIFEST_BYTES,
    MAX_ACTIONS,
    MAX_INGREDIENT_DEPTH,
    MAX_INGREDIENTS,
    MAX_TEXT,
    C2paAction,
    C2paFinding,
    C2paIngredient,
    C2paSigner,
    C2paState,
    MetadataFinding,
    Provenance,
    Trust,
)
from dif.provenance.manifests import c2pa_version, check_trust_anchors, summarise_store
from dif.provenance.summary import read_provenance

__all__ = [
    "AI_SOURCE_TYPES", "DEFAULT_MAX_MANIFEST_BYTES", "MAX_ACTIONS", "MAX_INGREDIENTS", "MAX_INGREDIENT_DEPTH",
    "MAX_TEXT", "C2paAction", "C2paFinding", "C2paIngredient", "C2paSigner", "C2paState", "MetadataFinding",
    "Provenance", "Trust", "c2pa_version", "check_trust_anchors", "read_provenance", "summarise_store",
]
