"""Hostile manifests and containers end in a finding, never an exception, and the work stays bounded."""

from __future__ import annotations

import json
import random
import time

import pytest

from dif import provenance
from dif.provenance import MAX_INGREDIENT_DEPTH, MAX_INGREDIENTS, Provenance, read_provenance, summarise_store
from testkit.c2pa import (
    AI,
    CAPTURE,
    SigningCA,
    app11_segments,
    c2pa_jumbf_header,
    image_bytes,
    manifest,
    png_chunks,
    png_from_chunks,
    sign,
    with_app11,
)


@pytest.fixture(scope="module")
def signed(signing_ca: SigningCA) -> dict[str, bytes]:
    return {"jpeg": sign(signing_ca, image_bytes("JPEG"), "image/jpeg", manifest(AI)),
            "png": sign(signing_ca, image_bytes("PNG"), "image/png", manifest(AI))}


def assert_finding(found: Provenance) -> None:
    """A finding of any kind: JSON-ready, and nothing in it is validated unless the store is valid."""
    json.dumps(found.to_dict())
    assert found.c2pa.state in ("valid", "invalid", "absent")
    if found.c2pa.state != "valid":
        assert not found.validated and not found.trusted and not found.decisive


def invalid_with_error(found: Provenance) -> str:
    assert_finding(found)
    assert found.c2pa.state == "invalid"
    assert found.c2pa.error
    assert not found.validated and not found.decisive
    return found.c2pa.error


def jpeg_manifest_span(data: bytes) -> tuple[int, int]:
    (at, length), = app11_segments(data)
    return at, length


def test_truncated_manifest_in_jpeg(signed: dict[str, bytes]) -> None:
    data = signed["jpeg"]
    at, length = jpeg_manifest_span(data)
    half = (length - 2) // 2
    cut = data[:at + 2] + (half + 2).to_bytes(2, "big") + data[at + 4:at + 4 + half] + data[at + length:]
    invalid_with_error(read_provenance(cut))


def test_truncated_manifest_in_png(signed: dict[str, bytes]) -> None:
    chunks = [(kind, body[:len(body) // 2]) if kind == b"caBX" else (kind, body)
              for kind, body in png_chunks(signed["png"])]
    invalid_with_error(read_provenance(png_from_chunks(chunks)))


def test_file_truncated_inside_the_manifest(signed: dict[str, bytes]) -> None:
    at, length = jpeg_manifest_span(signed["jpeg"])
    found = read_provenance(signed["jpeg"][:at + length // 2])
    invalid_with_error(found)
    assert found.metadata.error is not None  # Pillow cannot read it either: said, not raised


def test_garbage_in_the_jumbf_box(signed: dict[str, bytes]) -> None:
    rng = random.Random(14)
    data = bytearray(signed["jpeg"])
    at, length = jpeg_manifest_span(signed["jpeg"])
    start = at + 4 + 8 + 40  # past the APP11 and JUMBF headers: the box still says "C2PA"
    data[start:at + length] = rng.randbytes(at + length - start)
    invalid_with_error(read_provenance(bytes(data)))


def test_garbage_in_the_cabx_chunk(signed: dict[str, bytes]) -> None:
    rng = random.Random(14)
    chunks = [(kind, body[:40] + rng.randbytes(len(body) - 40)) if kind == b"caBX" else (kind, body)
              for kind, body in png_chunks(signed["png"])]
    invalid_with_error(read_provenance(png_from_chunks(chunks)))


def test_a_real_manifest_over_the_limit_is_not_parsed(signed: dict[str, bytes]) -> None:
    found = read_provenance(signed["jpeg"], max_manifest_bytes=1000)
    assert "over the limit of 1000" in invalid_with_error(found)
    assert found.c2pa.manifest_bytes and found.c2pa.manifest_bytes > 1000
    # What the manifest claims is not read at all, so it is not reported either.
    assert found.c2pa.actions == () and not found.declared_ai


def test_huge_manifest_is_refused_before_parsing() -> None:
    segment = 65_000
    payloads = [c2pa_jumbf_header(80 * segment)] + [b"\x00" * segment] * 80  # ~5 MiB of store
    huge = with_app11(image_bytes("JPEG"), payloads)
    start = time.perf_counter()
    found = read_provenance(huge)
    assert time.perf_counter() - start < 0.5
    assert "over the limit" in invalid_with_error(found)


def test_store_that_understates_its_size_is_measured_in_the_container() -> None:
    payloads = [c2pa_jumbf_header(64)] + [b"\x00" * 65_000] * 80  # declares 64 bytes, holds ~5 MiB
    found = read_provenance(with_app11(image_bytes("JPEG"), payloads))
    assert "over the limit" in invalid_with_error(found)
    assert found.c2pa.manifest_bytes and found.c2pa.manifest_bytes > 5_000_000


def test_extended_box_size_is_bounded_too() -> None:
    header = c2pa_jumbf_header(1)  # LBox 1: the real size follows the type, 8 bytes
    extended = header[:8] + (1 << 40).to_bytes(8, "big") + header[8:]
    found = read_provenance(with_app11(image_bytes("JPEG"), [extended + b"\x00" * 100]))
    assert "over the limit" in invalid_with_error(found)
    assert found.c2pa.manifest_bytes == 1 << 40


def test_c2pa_box_outside_the_manifest_slot_is_a_note_not_an_error() -> None:
    chunks = png_chunks(image_bytes("PNG"))
    chunks.insert(1, (b"tEXt", b"Comment\x00" + c2pa_jumbf_header(200) + b"\x00" * 180))
    found = read_provenance(png_from_chunks(chunks))
    assert_finding(found)
    assert found.c2pa.state == "absent" and found.c2pa.error
    assert found.metadata.error is None


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"jumb\x00\x00\x00\x00jumdc2pa", b"\x89PNG\r\n\x1a\n",
                                  c2pa_jumbf_header(40) + b"\x00" * 20, b"\xff\xd8\xff\xeb\x00\x02" * 50,
                                  b"RIFF\x10\x00\x00\x00WEBPC2PA\xff\xff\xff\xff" + c2pa_jumbf_header(40)],
                         ids=["empty", "zeros", "bare-box", "png-signature", "store-only", "app11-run", "webp"])
def test_not_an_image_is_a_finding(data: bytes) -> None:
    found = read_provenance(data)
    assert_finding(found)
    assert not found.declared_ai
    assert found.metadata.error is not None
    assert "0x" not in found.metadata.error  # no Python object addresses in a response


def test_image_truncated_in_its_header() -> None:
    found = read_provenance(image_bytes("JPEG")[:40])
    assert_finding(found)
    assert found.metadata.error is not None


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_bit_flips_anywhere_in_the_manifest_never_raise(signed: dict[str, bytes], kind: str) -> None:
    data = signed[kind]
    if kind == "jpeg":
        at, length = jpeg_manifest_span(data)
        low, high = at + 4, at + length
    else:
        low = data.find(b"caBX") + 4
        high = low + int.from_bytes(data[low - 8:low - 4], "big")
    rng = random.Random(14)
    states = set()
    for _ in range(80):
        mutated = bytearray(data)
        mutated[rng.randrange(low, high)] ^= 1 << rng.randrange(8)
        found = read_provenance(bytes(mutated))
        assert_finding(found)
        states.add(found.c2pa.state)
    # Most flips break the signature or the structure (flips in the signature's padding do not).
    assert "invalid" in states


def test_many_ingredients_are_counted_and_the_list_bounded(signing_ca: SigningCA) -> None:
    parts = [(image_bytes("JPEG", (16, 16)), "image/jpeg", f"part-{i}.jpg") for i in range(MAX_INGREDIENTS + 24)]
    found = read_provenance(sign(signing_ca, image_bytes("JPEG"), "image/jpeg", manifest(CAPTURE), parts))
    assert found.c2pa.state == "valid"
    assert found.c2pa.ingredient_count == MAX_INGREDIENTS + 24
    assert len(found.c2pa.ingredients) == MAX_INGREDIENTS
    assert [i.title for i in found.c2pa.ingredients] == [f"part-{i}.jpg" for i in range(MAX_INGREDIENTS)]


def test_deep_ingredient_chain_is_walked_to_the_depth_bound(signing_ca: SigningCA) -> None:
    current = sign(signing_ca, image_bytes("JPEG"), "image/jpeg", manifest(AI, agent="Deep Origin"))
    for level in range(MAX_INGREDIENT_DEPTH + 2):
        current = sign(signing_ca, image_bytes("JPEG", (40 + level, 40)), "image/jpeg", manifest(CAPTURE),
                       [(current, "image/jpeg", f"level-{level}.jpg")])
    found = read_provenance(current)
    assert found.c2pa.state == "valid"
    assert [i.depth for i in found.c2pa.ingredients] == list(range(1, MAX_INGREDIENT_DEPTH + 1))
    # The AI origin sits below the depth bound: not reached, so not claimed.
    assert not found.declared_ai


def test_ai_origin_within_the_depth_bound_is_found(signing_ca: SigningCA) -> None:
    current = sign(signing_ca, image_bytes("JPEG"), "image/jpeg", manifest(AI, agent="Shallow Origin"))
    for level in range(2):
        current = sign(signing_ca, image_bytes("JPEG", (40 + level, 40)), "image/jpeg", manifest(CAPTURE),
                       [(current, "image/jpeg", f"level-{level}.jpg")])
    found = read_provenance(current)
    assert found.declared_ai and found.validated
    assert found.c2pa.ingredients[-1].digital_source_types == ("trainedAlgorithmicMedia",)


def test_recursive_store_terminates_and_stays_bounded() -> None:
    # c2pa-rs refuses to write a store whose manifests name each other as ingredients, so the
    # store report is written out here in the shape Reader.json() returns.
    def manifest_entry(label: str, ingredient_labels: list[str]) -> dict[str, object]:
        return {"claim_generator": "loop", "assertions": [
                    {"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.created",
                                                                    "digitalSourceType": AI}]}}],
                "ingredients": [{"title": f"to-{target}", "active_manifest": target} for target in ingredient_labels]}

    store = {"active_manifest": "a", "validation_state": "Valid",
             "manifests": {"a": manifest_entry("a", ["a", "b"] * 500), "b": manifest_entry("b", ["a", "b"])}}
    start = time.perf_counter()
    found = summarise_store(store)
    assert time.perf_counter() - start < 0.5
    assert found.ingredient_count == 1000
    assert len(found.ingredients) == MAX_INGREDIENTS
    # Each manifest is entered once: only the first reference to "b" carries its source types.
    assert sum(1 for i in found.ingredients if i.digital_source_types) == 1


@pytest.mark.parametrize("store", [None, [], "text", {"manifests": {}}, {"active_manifest": "x", "manifests": []},
                                   {"active_manifest": "x", "manifests": {"x": {"assertions": "no",
                                                                                "ingredients": {"a": 1}}}},
                                   {"active_manifest": "x", "manifests": {"x": {"assertions": [
                                       {"label": "c2pa.actions", "data": {"actions": [7, {"action": None}]}}]}},
                                    "validation_state": "Unknown"}])
def test_odd_store_reports_are_findings(store: object) -> None:
    found = summarise_store(store)
    assert found.state == "invalid"
    assert found.actions == ()


def test_strings_from_a_manifest_are_cleaned_and_bounded() -> None:
    store = {"active_manifest": "x", "validation_state": "Valid", "manifests": {"x": {
        "claim_generator_info": [{"name": "evil\x1b[31m\u0085name" + "A" * 5000}],
        "signature_info": {"issuer": "\x00" * 10, "common_name": 12},
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [
            {"action": "c2pa.created", "digitalSourceType": AI, "softwareAgent": "B" * 5000}] * 100}}]}}}
    found = summarise_store(store)
    assert found.state == "valid"
    assert found.claim_generator is not None and found.claim_generator.startswith("evil [31m name")
    assert len(found.claim_generator) == provenance.MAX_TEXT
    assert found.signer is not None and (found.signer.issuer, found.signer.common_name) == (None, None)
    assert len(found.actions) == provenance.MAX_ACTIONS
    assert all(len(a.software_agent or "") <= provenance.MAX_TEXT for a in found.actions)
