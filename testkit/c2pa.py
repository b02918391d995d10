"""Provenance evidence built at run time: a CA and signing certificate, images signed with c2pa's
Builder, and the byte-level surgery the hostile-input tests do on PNG and JPEG containers.

c2pa's signer refuses a self-signed certificate; it accepts an ES256 leaf issued by a CA, with
keyUsage digitalSignature, an EKU the C2PA profile allows (emailProtection here) and subject /
authority key identifiers. That CA is on no trust list, so its manifests validate with an
untrusted signer unless a test passes it as a trust anchor.
"""

from __future__ import annotations

import datetime as dt
import io
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI = IPTC + "trainedAlgorithmicMedia"
CAPTURE = IPTC + "digitalCapture"


@dataclass(frozen=True)
class SigningCA:
    ca_pem: str
    chain_pem: bytes  # leaf then CA
    key_pem: bytes

    def signer(self) -> Any:
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, self.chain_pem,
                                                         self.key_pem, None))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DIF provenance tests")])


def _usage(sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def make_ca(label: str) -> SigningCA:
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{label} CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(sign=False, ca=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(f"{label} Signer")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return SigningCA(ca_pem=ca.public_bytes(pem).decode(), chain_pem=leaf.public_bytes(pem) + ca.public_bytes(pem),
                  key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def image_bytes(fmt: str, size: tuple[int, int] = (96, 64), **save: Any) -> bytes:
    """A small gradient image (varied pixels, so JPEG has real entropy-coded data to tamper with)."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def manifest(source_type: str, agent: str | None = None, title: str = "test image") -> dict[str, Any]:
    action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": source_type}
    if agent:
        action["softwareAgent"] = {"name": agent}
    return {"claim_generator_info": [{"name": "DIF provenance tests", "version": "1.0"}], "title": title,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}]}


def sign(ca: SigningCA, asset: bytes, media_type: str, definition: dict[str, Any],
         ingredients: Iterable[tuple[bytes, str, str]] = (), remote_url: str | None = None) -> bytes:
    """Sign ``asset`` with c2pa's Builder; ingredients are (bytes, media type, title)."""
    # No thumbnails: they make signing ~10x slower and nothing here reads them.
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    try:
        builder = c2pa.Builder(definition, context=context)
        for data, kind, title in ingredients:
            builder.add_ingredient({"title": title, "relationship": "componentOf"}, kind, io.BytesIO(data))
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        out = io.BytesIO()
        builder.sign(ca.signer(), media_type, io.BytesIO(asset), out)
        return out.getvalue()
    finally:
        context.close()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, chunks = 8, []
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_from_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, body in chunks:
        out += len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    return bytes(out)


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length incl. marker) of each header segment up to the start of scan."""
    pos, found = 2, []
    while data[pos] == 0xFF and data[pos + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        found.append((pos, 2 + length))
        pos += 2 + length
    return found


def app11_segments(data: bytes) -> list[tuple[int, int]]:
    return [(at, n) for at, n in jpeg_segments(data) if data[at + 1] == 0xEB]


def flip_pixel_byte(data: bytes) -> bytes:
    """Change one byte of the image data, leaving the container and the manifest intact."""
    out = bytearray(data)
    if data.startswith(b"\x89PNG"):
        chunks = png_chunks(data)
        index = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
        body = bytearray(chunks[index][1])
        body[len(body) // 2] ^= 0x01
        chunks[index] = (b"IDAT", bytes(body))
        return png_from_chunks(chunks)
    start = data.rfind(b"\xff\xda")
    at = (start + len(data)) // 2
    while out[at] in (0xFF, 0xFE) or out[at - 1] == 0xFF:  # keep marker bytes and stuffing intact
        at += 1
    out[at] ^= 0x01
    return bytes(out)


C2PA_UUID = bytes.fromhex("6332706100110010800000aa00389b71")


def c2pa_jumbf_header(declared_size: int) -> bytes:
    """The first bytes of a C2PA manifest store box: superbox header, then its description box."""
    label = b"c2pa\x00"
    jumd = (8 + 16 + 1 + len(label)).to_bytes(4, "big") + b"jumd" + C2PA_UUID + b"\x03" + label
    return declared_size.to_bytes(4, "big") + b"jumb" + jumd


def with_app11(jpeg: bytes, payloads: list[bytes]) -> bytes:
    """Insert APP11 segments (JPEG XT 'JP' boxes, instance 1, numbered packets) after SOI."""
    segments = b""
    for number, payload in enumerate(payloads, start=1):
        body = b"JP" + (1).to_bytes(2, "big") + number.to_bytes(4, "big") + payload
        segments += b"\xff\xeb" + (2 + len(body)).to_bytes(2, "big") + body
    return jpeg[:2] + segments + jpeg[2:]
