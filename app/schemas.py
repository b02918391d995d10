"""Response bodies, as pydantic models so the OpenAPI page documents them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from dif.provenance import C2paState, Trust

# (dy, dx). Documented as a two-integer array rather than the 3.1 `prefixItems` pydantic
# writes for a tuple: many OpenAPI tools (client generators, schemathesis 4.32) reject it.
Shift = Annotated[tuple[int, int], WithJsonSchema(
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2})]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable reason")
    message: str = Field(description="what went wrong and what to do")
    request_id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class GeneratorScoreOut(BaseModel):
    generator: str
    p_value: float = Field(description="how often a real photo scores at least this high against this generator "
                                       "(per generator; the verdict divides the rate among all loaded generators)")
    score: float = Field(description="evidence in [0, 1]: log(p_adj) / (2 log rate) with p_adj = min(1, G p), "
                                     "clipped; 0 = none, 0.5 exactly at the operating point, 1 at p_adj <= rate^2. "
                                     "Not a probability")
    fake: bool = Field(description="this generator passes at the operating point (score >= 0.5)")
    statistic: float = Field(description="what the p-value is computed from: z or z_bg at zero shift (peak_z for "
                                         "a shift-searching fingerprint), oriented so that fakes score high. "
                                         "Fingerprints with a shift backstop also test the best shift of their "
                                         "window (see shift) at a fifth of the rate")
    correlation: float = Field(description="zero-shift Pearson correlation of the residual with the fingerprint")
    z: float = Field(description="correlation over this image's noise level")
    peak_z: float
    shift: Shift = Field(description="best shift of the fingerprint's window [dy, dx] (0, 0 without one)")
    pce: float
    grid_cosine: float | None = Field(
        default=None, description="for a lattice fingerprint: cosine between this image's periodic pattern and "
                                  "the fingerprint's at shift. Its shift search counts only from its "
                                  "detection.min_cosine up, so another generator's periodic trace found at some "
                                  "phase is not blamed on it, and its zero-shift test from detection.floor_cosine "
                                  "up (null for other fingerprints)")


class C2paActionOut(BaseModel):
    action: str = Field(description="e.g. c2pa.created, c2pa.edited")
    digital_source_type: str | None = Field(description="IPTC code, e.g. trainedAlgorithmicMedia, digitalCapture")
    software_agent: str | None = Field(description="the tool the action names (as the manifest states it)")


class C2paIngredientOut(BaseModel):
    title: str | None
    format: str | None
    relationship: str | None
    depth: int = Field(description="1: ingredient of the active manifest, 2: of that ingredient, ...")
    has_manifest: bool = Field(description="its own manifest is in the store (and was validated with it)")
    digital_source_types: list[str]


class C2paSignerOut(BaseModel):
    issuer: str | None = Field(description="organisation in the signing certificate's subject (not the CA)")
    common_name: str | None
    time: str | None = Field(description="signing time, when the manifest carries a timestamp")


class C2paOut(BaseModel):
    state: C2paState = Field(
        description="absent: no manifest (proves nothing: a re-save strips it); valid: signature and every hash, "
                    "the pixels' included, check out; invalid: present but not validated (see validation_codes, "
                    "error), its claims are reported but never as validated")
    trust: Trust | None = Field(
        description="trusted: the signer chains to a DIF_C2PA_TRUST_ANCHORS certificate; untrusted: it does not "
                    "(anyone can make a certificate); unknown: not evaluated; null when absent")
    error: str | None = Field(description="why the manifest could not be read or was not parsed")
    validation_codes: list[str] = Field(description="failure codes as the C2PA specification names them")
    claim_generator: str | None = Field(description="the application that signed")
    signer: C2paSignerOut | None
    digital_source_types: list[str] = Field(description="IPTC codes the active manifest declares")
    actions: list[C2paActionOut]
    ingredients: list[C2paIngredientOut] = Field(description="breadth-first, bounded in depth and count")
    ingredient_count: int = Field(description="direct ingredients of the active manifest, all of them")
    manifest_bytes: int | None = Field(description="size of the manifest store, measured before parsing")


class MetadataOut(BaseModel):
    """Unsigned metadata: anyone can write, strip or forge it."""

    digital_source_type: str | None = Field(description="XMP Iptc4xmpExt:DigitalSourceType (IPTC code)")
    creator_tool: str | None = Field(description="XMP xmp:CreatorTool")
    remote_manifest: str | None = Field(description="XMP dcterms:provenance: a C2PA manifest kept elsewhere, "
                                                    "never fetched")
    software: str | None = Field(description="EXIF Software")
    make: str | None = Field(description="EXIF Make")
    model: str | None = Field(description="EXIF Model")
    generator: str | None = Field(description="the generator tool this metadata names, where the format is "
                                              "unambiguous (e.g. stable-diffusion-webui, comfyui, dall-e)")
    generator_model: str | None = Field(description="the model it names (e.g. a checkpoint)")
    generator_source: str | None = Field(description="where it was named, e.g. png:parameters, exif:UserComment")
    text_keys: list[str] = Field(description="generator-tool PNG text chunks present (contents are not echoed)")
    error: str | None = Field(description="the header could not be read")


class ProvenanceOut(BaseModel):
    """Declared provenance: C2PA Content Credentials, XMP/IPTC, EXIF, generator PNG text (docs/provenance.md)."""

    c2pa: C2paOut
    metadata: MetadataOut
    declared_ai: bool = Field(description="something declares the image AI-generated (a C2PA manifest, valid or "
                                          "not, XMP DigitalSourceType, or a generator's metadata): a declaration, "
                                          "not a finding")
    declared_generator: str | None = Field(description="the generator the declaration names, as written there")
    declared_by: str | None = Field(description="where the declaration was read: c2pa, xmp, png or exif")
    validated: bool = Field(description="the declaration comes from a C2PA manifest whose signature and hashes "
                                        "are valid")
    trusted: bool = Field(description="validated, and the signer chains to a configured trust anchor")
    evidence: list[str] = Field(description="what was found and how far it can be trusted, one line each")
    decisive: bool = Field(description="declared_ai and validated and trusted: the one case that makes the "
                                       "verdict fake whatever the fingerprints say")


class Timings(BaseModel):
    decode_queue_ms: float = Field(description="waiting for a free decode thread")
    decode_ms: float
    provenance_ms: float = Field(description="reading the declared provenance (0 when DIF_PROVENANCE is off)")
    crop_ms: float
    queue_ms: float
    residual_ms: float = Field(description="residual extraction of the whole batch this image shared")
    scoring_ms: float = Field(description="scoring the whole batch against every generator")
    total_ms: float


class FileError(BaseModel):
    code: str = Field(description="stable, machine-readable reason (the same codes as a whole-request error)")
    message: str


class ImageResult(BaseModel):
    """One image's answer. In a multi-file answer a failed entry has status >= 400, error set and every
    other field but filename null; a scored one has status 200 and error null."""

    filename: str | None
    status: int = Field(default=200, description="HTTP-like status of this file alone: 200 scored, else the "
                                                 "status a single-file upload of it would have got")
    error: FileError | None = Field(default=None, description="why this file was not scored; null when it was")
    verdict: Literal["fake", "inconclusive", "real"] | None = Field(
        default=None,
        description="fake: some generator passes at false_positive_rate, or a valid C2PA manifest by a trusted "
                    "signer declares the image AI-generated (see evidence); inconclusive: the strongest passes only "
                    "at DIF_INCONCLUSIVE_RATE; real: no loaded generator's fingerprint is found (and no decisive "
                    "declaration)")
    fake: bool | None = Field(
        default=None,
        description="verdict == fake: on fingerprints alone a real photo gets this with probability at most "
                    "false_positive_rate, however many generators are loaded")
    evidence: Literal["fingerprint", "provenance", "fingerprint+provenance"] | None = Field(
        default=None,
        description="of a fake: what it rests on. fingerprint: the fingerprints pass at false_positive_rate; "
                    "provenance: a decisive C2PA declaration (provenance.decisive), the fingerprints alone do not "
                    "say fake; fingerprint+provenance: both. null when the verdict is not fake")
    top: str | None = Field(
        default=None,
        description="the generator blamed; null when none passes, or when another generator's evidence is too "
                    "close to tell them apart (see candidates). On a decisive declaration, the declared generator "
                    "when it is a loaded one")
    candidates: list[str] | None = Field(
        default=None,
        description="of a fake: every generator that may have made it, strongest first (one entry when top is "
                    "set; related generators share traits)")
    top_score: float | None = Field(default=None, description="score of top, or null")
    p_value: float | None = Field(
        default=None,
        description="family-wise p-value: the smallest per-generator p-value times the number of generators, at "
                    "most 1 (fake when <= false_positive_rate)")
    false_positive_rate: float | None = Field(
        default=None, description="the rate this decision was taken at (fpr or the default)")
    width: int | None = None
    height: int | None = None
    crops: int | None = Field(default=None, description="grid-aligned crops averaged for this image")
    batch_size: int | None = Field(default=None, description="images in the forward pass that scored this one")
    model_version: int | None = Field(default=None, description="loaded set that scored it (increments on each reload)")
    scores: list[GeneratorScoreOut] | None = Field(default=None, description="one entry per loaded generator")
    provenance: ProvenanceOut | None = Field(
        default=None,
        description="declared provenance of the upload; only a decisive one changes the verdict, absent or "
                    "stripped metadata never lowers it. null when DIF_PROVENANCE is off")
    timings_ms: Timings | None = None


class DetectResponse(ImageResult):
    """Answer to an upload in the ``file`` field."""

    request_id: str


class DetectManyResponse(BaseModel):
    """Answer to uploads in the ``files`` field, in upload order: one entry per file, each with its own
    status (a bad file fails alone; only when every file fails is the request answered with the first error)."""

    request_id: str
    results: list[ImageResult]
    total_ms: float


class GeneratorOut(BaseModel):
    name: str
    crop_size: int
    extractor: dict[str, Any]
    detection: dict[str, Any]
    calibration: dict[str, Any]
    null: dict[str, Any] = Field(description="the statistic's distribution on real photos: p-values come from it")
    centres: dict[str, float] = Field(description="mean statistic of held-out real and fake training images")
    crossval_accuracy: float | None = Field(description="balanced k-fold accuracy at FPR 1 % recorded by the trainer")
    tpr_at_fpr: dict[str, float | None] = Field(
        description="cross-validated share of this generator's unseen images answered fake at whole-set "
                    "false-positive rates 0.01 and 0.05, with the generators loaded now; null if not measured")
    tpr_at_operating_point: float | None = Field(description="the same at DIF_FALSE_POSITIVE_RATE")
    weak: bool | None = Field(description="true when tpr_at_operating_point < 0.5: the generator is loaded but most "
                                          "of its images are missed; null if not measured")
    schema_version: int = Field(description="artifact schema; 1 = migrated (null derived, no TPR recorded), "
                                            "2 = no grid-cosine gate, 3 = current")
    metadata: dict[str, Any]


class GeneratorList(BaseModel):
    extractor: str
    false_positive_rate: float = Field(description="DIF_FALSE_POSITIVE_RATE: the whole set's rate on real photos")
    crop_size: int
    model_version: int
    loaded_at: float
    generators: list[GeneratorOut]


class ReloadResponse(BaseModel):
    model_version: int
    generators: list[str]
    extractor: str
    seconds: float


class Health(BaseModel):
    status: str
    phase: str | None = None
    generators: int | None = None
    model_version: int | None = None


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: each status documented with the JSON error body."""
    return {status: {"model": ErrorBody, "description": text} for status, text in descriptions.items()}
