"""C2PA manifests signed here with c2pa's Builder, read back through read_provenance."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator

import c2pa
import pytest

from dif import provenance
from dif.provenance import manifests, read_provenance
from testkit.c2pa import AI, CAPTURE, IPTC, SigningCA, flip_pixel_byte, image_bytes, make_ca, manifest, sign

FORMATS = [("JPEG", "image/jpeg"), ("PNG", "image/png")]


@pytest.fixture(scope="module")
def ai_images(signing_ca: SigningCA) -> dict[str, bytes]:
    return {kind: sign(signing_ca, image_bytes(fmt), kind, manifest(AI, agent="TestDiffusion 2"))
            for fmt, kind in FORMATS}


@pytest.fixture(scope="module")
def camera_jpeg(signing_ca: SigningCA) -> bytes:
    return sign(signing_ca, image_bytes("JPEG"), "image/jpeg", manifest(CAPTURE))


@pytest.mark.parametrize("kind", [k for _, k in FORMATS])
def test_ai_generated_manifest_is_valid_declared_ai_but_untrusted(ai_images: dict[str, bytes], kind: str) -> None:
    found = read_provenance(ai_images[kind])
    assert found.c2pa.state == "valid"
    assert found.c2pa.trust == "untrusted"
    assert "signingCredential.untrusted" in found.c2pa.validation_codes
    assert found.c2pa.digital_source_types == ("trainedAlgorithmicMedia",)
    assert found.c2pa.actions[0].action == "c2pa.created"
    assert found.c2pa.actions[0].software_agent == "TestDiffusion 2"
    assert found.c2pa.claim_generator == "DIF provenance tests 1.0"
    assert found.c2pa.signer is not None
    assert found.c2pa.signer.common_name == "DIF Test Signer"
    assert found.c2pa.signer.issuer == "DIF provenance tests"
    assert found.c2pa.manifest_bytes and found.c2pa.manifest_bytes > 1000
    assert (found.declared_ai, found.declared_by, found.declared_generator) == (True, "c2pa", "TestDiffusion 2")
    assert found.validated and not found.trusted
    # Integrity alone is not enough to overrule the fingerprints: anyone can mint such a CA.
    assert not found.decisive
    assert any("NOT on the trust list" in line for line in found.evidence)


def test_the_signing_ca_as_trust_anchor_makes_the_signer_trusted(ai_images: dict[str, bytes],
                                                                  signing_ca: SigningCA) -> None:
    found = read_provenance(ai_images["image/jpeg"], trust_anchors=signing_ca.ca_pem)
    assert (found.c2pa.state, found.c2pa.trust) == ("valid", "trusted")
    assert "signingCredential.untrusted" not in found.c2pa.validation_codes
    assert found.validated and found.trusted and found.decisive
    assert found.to_dict()["decisive"] is True


def test_another_ca_as_trust_anchor_leaves_the_signer_untrusted(ai_images: dict[str, bytes]) -> None:
    stranger = make_ca("Unrelated")
    found = read_provenance(ai_images["image/jpeg"], trust_anchors=stranger.ca_pem)
    assert (found.c2pa.state, found.c2pa.trust) == ("valid", "untrusted")
    assert not found.decisive


def test_camera_capture_is_valid_and_not_declared_ai(camera_jpeg: bytes) -> None:
    found = read_provenance(camera_jpeg)
    assert found.c2pa.state == "valid"
    assert found.c2pa.digital_source_types == ("digitalCapture",)
    assert found.c2pa.ai_source_types == ()
    assert (found.declared_ai, found.declared_generator, found.declared_by) == (False, None, None)
    assert not found.validated and not found.decisive


@pytest.mark.parametrize("kind", [k for _, k in FORMATS])
def test_pixels_changed_after_signing_make_the_manifest_invalid(ai_images: dict[str, bytes], kind: str,
                                                                 signing_ca: SigningCA) -> None:
    tampered = flip_pixel_byte(ai_images[kind])
    assert tampered != ai_images[kind]
    found = read_provenance(tampered, trust_anchors=signing_ca.ca_pem)
    assert found.c2pa.state == "invalid"
    assert any(code.startswith("assertion.dataHash.mismatch") for code in found.c2pa.validation_codes)
    # The claim is still reported, as an unvalidated one: never presented as validated.
    assert found.declared_ai and found.declared_by == "c2pa"
    assert not found.validated and not found.trusted and not found.decisive
    assert any("not validated" in line for line in found.evidence)


def test_tampered_camera_capture_is_invalid_and_claims_nothing(camera_jpeg: bytes) -> None:
    found = read_provenance(flip_pixel_byte(camera_jpeg))
    assert found.c2pa.state == "invalid"
    assert not found.declared_ai


def test_unsigned_xmp_beside_a_valid_manifest_is_not_validated(signing_ca: SigningCA) -> None:
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
           b'Iptc4xmpExt:DigitalSourceType="' + AI.encode() + b'"/></rdf:RDF></x:xmpmeta>')
    signed = sign(signing_ca, image_bytes("JPEG", xmp=xmp), "image/jpeg", manifest(CAPTURE))
    found = read_provenance(signed, trust_anchors=signing_ca.ca_pem)
    assert found.c2pa.state == "valid" and found.c2pa.trust == "trusted"
    assert found.metadata.digital_source_type == "trainedAlgorithmicMedia"
    # The AI declaration is the unsigned one, so it is not validated even though a valid,
    # trusted manifest sits beside it.
    assert (found.declared_ai, found.declared_by, found.validated, found.decisive) == (True, "xmp", False, False)


def test_ai_ingredient_of_a_valid_edit_is_reported(signing_ca: SigningCA) -> None:
    generated = sign(signing_ca, image_bytes("JPEG"), "image/jpeg", manifest(AI, agent="TestDiffusion 2"))
    edited = sign(signing_ca, image_bytes("JPEG", (80, 80)), "image/jpeg", manifest(IPTC + "minorHumanEdits"),
                  ingredients=[(generated, "image/jpeg", "generated.jpg")])
    found = read_provenance(edited)
    assert found.c2pa.state == "valid"
    assert found.c2pa.digital_source_types == ("minorHumanEdits",)
    assert found.c2pa.ingredient_count == 1
    (ingredient,) = found.c2pa.ingredients
    assert (ingredient.title, ingredient.depth, ingredient.has_manifest) == ("generated.jpg", 1, True)
    assert ingredient.digital_source_types == ("trainedAlgorithmicMedia",)
    assert found.declared_ai and found.validated
    # The editor signed the edit; it generated nothing, so it is not named as the generator.
    assert found.declared_generator is None
    assert any("ingredient 'generated.jpg'" in line for line in found.evidence)


def test_to_dict_is_json_ready(ai_images: dict[str, bytes]) -> None:
    found = read_provenance(ai_images["image/png"])
    shape = json.loads(json.dumps(found.to_dict()))
    assert shape["c2pa"]["state"] == "valid"
    assert shape["c2pa"]["actions"] == [{"action": "c2pa.created", "digital_source_type": "trainedAlgorithmicMedia",
                                         "software_agent": "TestDiffusion 2"}]
    assert shape["declared_ai"] is True and shape["validated"] is True and shape["decisive"] is False
    assert isinstance(shape["evidence"], list) and shape["evidence"]


def test_trust_anchors_the_library_refuses_are_reported() -> None:
    with pytest.raises(ValueError, match="trust anchors refused"):
        provenance.check_trust_anchors("not a certificate")


def test_c2pa_version_names_both_layers() -> None:
    version = provenance.c2pa_version()
    assert version is not None and version.startswith("c2pa-python ") and "c2pa-rs" in version


class _Listener:
    """A local HTTP server that records every request path (and answers 404)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                hits.append(self.path)
                self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.close()


def test_remote_manifests_are_never_fetched(signing_ca: SigningCA, listener: _Listener) -> None:
    remote = sign(signing_ca, image_bytes("JPEG"), "image/jpeg", manifest(AI),
                  remote_url=listener.url + "/manifest.c2pa")
    found = read_provenance(remote)
    assert found.c2pa.state == "absent"
    assert found.metadata.remote_manifest == listener.url + "/manifest.c2pa"
    assert not found.declared_ai
    # The reader's own settings keep it offline as well (c2pa ignores unknown setting keys, so
    # a misspelt one would silently fetch): the same file through our context reaches nobody...
    context = manifests._context(c2pa, None)
    with pytest.raises(c2pa.C2paError):
        c2pa.Reader("image/jpeg", io.BytesIO(remote), context=context)
    context.close()
    assert listener.hits == []
    # ...while the library's default context does fetch it, so the file does point at the listener.
    with pytest.raises(c2pa.C2paError):
        c2pa.Reader("image/jpeg", io.BytesIO(remote))
    assert listener.hits == ["/manifest.c2pa"]


def test_refused_trust_anchors_leave_the_manifest_unvalidated_and_say_why(ai_images: dict[str, bytes]) -> None:
    found = read_provenance(ai_images["image/jpeg"], trust_anchors="not a certificate")
    assert found.c2pa.state == "invalid"
    assert found.c2pa.error is not None and "trust anchors refused" in found.c2pa.error
    assert not found.validated and not found.decisive


def test_without_a_software_agent_the_claim_generator_is_named(signing_ca: SigningCA) -> None:
    found = read_provenance(sign(signing_ca, image_bytes("PNG"), "image/png", manifest(AI)))
    assert found.c2pa.actions[0].software_agent is None
    assert (found.declared_ai, found.declared_generator) == (True, "DIF provenance tests 1.0")


@pytest.mark.parametrize("bundle", [
    "",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
], ids=["empty", "broken-certificate", "key-only"])
def test_a_bundle_without_a_usable_certificate_is_refused(bundle: str) -> None:
    # c2pa itself accepts each of these and then trusts nobody: an operator would never know.
    with pytest.raises(ValueError, match="trust anchors refused: no PEM certificate"):
        provenance.check_trust_anchors(bundle)


def test_the_signing_ca_bundle_is_accepted(signing_ca: SigningCA) -> None:
    provenance.check_trust_anchors(signing_ca.ca_pem)
    provenance.check_trust_anchors(signing_ca.ca_pem + make_ca("Other").ca_pem)
