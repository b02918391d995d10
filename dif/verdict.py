"""The answer for one image: the fingerprints' verdict, moved to ``fake`` only by decisive provenance.

One home for the rule, so ``POST /detect``, ``dif detect`` and ``dif scan`` give the same image
the same verdict (docs/provenance.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dif.detector import ImageVerdict
from dif.provenance import Provenance


@dataclass(frozen=True)
class Decision:
    """The answer for one image: the fingerprints' verdict, or ``fake`` on a decisive declaration."""

    verdict: str
    evidence: str | None  # fingerprint | provenance | fingerprint+provenance, for a fake
    top: str | None
    candidates: list[str]

    @property
    def fake(self) -> bool:
        return self.verdict == "fake"


def final_verdict(verdict: ImageVerdict, provenance: Provenance | None) -> Decision:
    """Only a decisive declaration (AI-generated, C2PA-valid, signer on the operator's trust list) moves a
    verdict, and only to ``fake``: unsigned or untrusted claims are anyone's to write, and a missing
    manifest is the normal case for generated images too (docs/provenance.md). Fingerprint scores,
    p-value and rate stay the fingerprints' own."""
    if provenance is None:
        return combined(verdict, False, None)
    return combined(verdict, provenance.decisive, provenance.declared_generator)


def combined(verdict: ImageVerdict, decisive: bool, declared_generator: str | None) -> Decision:
    """``final_verdict`` from the two provenance facts it needs (what a scan row keeps of them)."""
    by_fingerprint = verdict.verdict == "fake"
    if not decisive:
        return Decision(verdict.verdict, "fingerprint" if by_fingerprint else None, verdict.top, verdict.candidates)
    evidence = "fingerprint+provenance" if by_fingerprint else "provenance"
    declared = loaded_generator(declared_generator, [s.generator for s in verdict.generators])
    if declared is None:  # a generator this set does not know: the fingerprints' blame stands
        return Decision("fake", evidence, verdict.top, verdict.candidates)
    return Decision("fake", evidence, declared, [declared])


def loaded_generator(declared: str | None, loaded: list[str]) -> str | None:
    """The loaded generator a declared name is, compared without case, spaces or punctuation
    ("DALL-E 2" is ``dalle_2``); None when it is none of them ("DALL-E" alone could be several)."""
    if not declared:
        return None
    key = _name_key(declared)
    return next((name for name in loaded if key and _name_key(name) == key), None)


def _name_key(name: str) -> str:
    return re.sub(r"[\W_]+", "", name.casefold())
