"""Unsigned metadata: generator PNG text chunks, XMP DigitalSourceType, EXIF. Reported, never validated."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from dif.provenance import Provenance, read_provenance
from testkit.c2pa import AI, IPTC, image_bytes, png_chunks, png_from_chunks

WEBUI = ("a secret prompt about a lighthouse\nNegative prompt: blurry\n"
         "Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 42, Size: 96x64, Model hash: 31e35c80fc, "
         "Model: sd_xl_base_1.0, Version: {version}")
COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a secret prompt about a lighthouse"}},
}
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}, {"id": 4, "type": "SaveImage"}],
                  "links": []}


def png_with_text(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    return image_bytes("PNG", pnginfo=info)


def assert_unsigned(found: Provenance) -> None:
    assert found.c2pa.state == "absent"
    assert not found.validated and not found.trusted and not found.decisive
    assert all("strippable and forgeable" in line for line in found.evidence if "written by" in line)


@pytest.mark.parametrize(("version", "generator"), [("v1.9.4", "stable-diffusion-webui"),
                                                    ("f2.0.1v1.10.1-previous-313-g8a042934",
                                                     "stable-diffusion-webui-forge")])
def test_a1111_and_forge_parameters_chunk(version: str, generator: str) -> None:
    found = read_provenance(png_with_text(parameters=WEBUI.format(version=version)))
    assert (found.declared_ai, found.declared_generator, found.declared_by) == (True, generator, "png")
    assert found.metadata.generator_model == "sd_xl_base_1.0"
    assert found.metadata.generator_source == "png:parameters"
    assert found.metadata.text_keys == ("parameters",)
    assert_unsigned(found)
    # The prompt is the uploader's content: named as present, never echoed back.
    assert "lighthouse" not in json.dumps(found.to_dict())


@pytest.mark.parametrize("chunks", [{"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)},
                                    {"prompt": json.dumps(COMFY_PROMPT)}])
def test_comfyui_prompt_chunk(chunks: dict[str, str]) -> None:
    found = read_provenance(png_with_text(**chunks))
    assert (found.declared_ai, found.declared_generator) == (True, "comfyui")
    assert found.metadata.generator_source == "png:prompt"
    assert found.metadata.generator_model == "v1-5-pruned-emaonly.safetensors"
    assert set(found.metadata.text_keys) == set(chunks)
    assert_unsigned(found)
    assert "lighthouse" not in json.dumps(found.to_dict())


def test_comfyui_workflow_chunk_alone() -> None:
    found = read_provenance(png_with_text(workflow=json.dumps(COMFY_WORKFLOW)))
    assert (found.declared_generator, found.metadata.generator_source) == ("comfyui", "png:workflow")


def test_novelai_and_invokeai_chunks() -> None:
    novelai = read_provenance(png_with_text(Software="NovelAI", Source="NovelAI Diffusion V4 5AB81C7C",
                                            Comment=json.dumps({"steps": 28})))
    assert novelai.declared_generator == "novelai"
    assert novelai.metadata.generator_model == "NovelAI Diffusion V4 5AB81C7C"
    invoke = read_provenance(png_with_text(invokeai_metadata=json.dumps({"model": {"name": "juggernaut-xl"}})))
    assert (invoke.declared_generator, invoke.metadata.generator_model) == ("invokeai", "juggernaut-xl")
    assert novelai.declared_ai and invoke.declared_ai and not novelai.validated and not invoke.validated


@pytest.mark.parametrize("chunks", [{"parameters": "holiday photo, edited in GIMP"}, {"prompt": "not json {"},
                                    {"prompt": json.dumps({"3": {"inputs": {}}})}, {"Software": "GIMP 2.10"},
                                    {"prompt": "[" * 100_000}])
def test_text_chunks_in_no_known_generator_format_name_no_generator(chunks: dict[str, str]) -> None:
    found = read_provenance(png_with_text(**chunks))
    assert (found.declared_ai, found.declared_generator, found.metadata.error) == (False, None, None)


def xmp_packet(body: str) -> bytes:
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
            'xmlns:xmp="http://ns.adobe.com/xap/1.0/" ' + body + '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
            ).encode()


XMP_FORMS = {
    "attribute": f'Iptc4xmpExt:DigitalSourceType="{AI}" xmp:CreatorTool="Image Tool 3"/>',
    "element": f'><Iptc4xmpExt:DigitalSourceType>{AI}</Iptc4xmpExt:DigitalSourceType></rdf:Description>',
    "resource": f'><Iptc4xmpExt:DigitalSourceType rdf:resource="{AI}"/></rdf:Description>',
}


@pytest.mark.parametrize("form", sorted(XMP_FORMS))
def test_xmp_digital_source_type_in_jpeg(form: str) -> None:
    found = read_provenance(image_bytes("JPEG", xmp=xmp_packet(XMP_FORMS[form])))
    assert found.metadata.digital_source_type == "trainedAlgorithmicMedia"
    assert (found.declared_ai, found.declared_by, found.declared_generator) == (True, "xmp", None)
    assert_unsigned(found)
    assert any(line.startswith("xmp: Iptc4xmpExt:DigitalSourceType trainedAlgorithmicMedia") and "unsigned" in line
               for line in found.evidence)


def test_xmp_in_a_png_itxt_chunk_and_other_source_types() -> None:
    info = PngImagePlugin.PngInfo()
    composite = IPTC + "compositeWithTrainedAlgorithmicMedia"
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(f'Iptc4xmpExt:DigitalSourceType="{composite}"/>').decode())
    found = read_provenance(image_bytes("PNG", pnginfo=info))
    assert (found.metadata.digital_source_type, found.declared_ai) == ("compositeWithTrainedAlgorithmicMedia", True)
    capture = read_provenance(image_bytes("JPEG", xmp=xmp_packet(
        f'Iptc4xmpExt:DigitalSourceType="{IPTC}digitalCapture" xmp:CreatorTool="Camera 1.0"/>')))
    assert (capture.metadata.digital_source_type, capture.metadata.creator_tool) == ("digitalCapture", "Camera 1.0")
    assert not capture.declared_ai


def test_xmp_entity_expansion_is_not_performed() -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "' + "A" * 1000 + '">'
            + "".join(f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(8))
            + ']>' + xmp_packet('Iptc4xmpExt:DigitalSourceType="&i;" xmp:CreatorTool="&i;"/>').decode())
    start = time.perf_counter()
    found = read_provenance(image_bytes("JPEG", xmp=bomb.encode()))
    assert time.perf_counter() - start < 1.0
    assert found.metadata.error is None
    assert not found.declared_ai
    assert len(found.metadata.digital_source_type or "") <= 200


def exif_jpeg(software: str | None = None, comment: bytes | None = None, make: str | None = None,
              model: str | None = None) -> bytes:
    exif = Image.Exif()
    for tag, value in ((0x0131, software), (0x010F, make), (0x0110, model)):
        if value is not None:
            exif[tag] = value
    if comment is not None:
        exif.get_ifd(0x8769)[0x9286] = comment
    return image_bytes("JPEG", exif=exif.tobytes())


def test_exif_software_and_camera_are_reported_not_declared_ai() -> None:
    found = read_provenance(exif_jpeg(software="Adobe Photoshop 25.0 (Windows)", make="Canon", model="EOS R5"))
    assert (found.metadata.software, found.metadata.make, found.metadata.model) == \
        ("Adobe Photoshop 25.0 (Windows)", "Canon", "EOS R5")
    assert (found.declared_ai, found.declared_generator) == (False, None)
    assert "exif: Software 'Adobe Photoshop 25.0 (Windows)' [unsigned]" in found.evidence


def test_exif_software_naming_a_generator() -> None:
    found = read_provenance(exif_jpeg(software="NovelAI"))
    assert (found.declared_ai, found.declared_generator, found.declared_by) == (True, "novelai", "exif")
    assert found.metadata.generator_source == "exif:Software"


@pytest.mark.parametrize("codec", ["utf-16-be", "utf-16-le"])
def test_a1111_infotext_in_exif_user_comment(codec: str) -> None:
    text = WEBUI.format(version="v1.10.1")
    found = read_provenance(exif_jpeg(comment=b"UNICODE\x00" + text.encode(codec)))
    assert (found.declared_generator, found.metadata.generator_source) == ("stable-diffusion-webui",
                                                                           "exif:UserComment")
    assert found.metadata.generator_model == "sd_xl_base_1.0"


def test_dalle2_samples_declare_dalle_in_exif(ltim: Path) -> None:
    fakes = sorted((ltim / "dalle_2" / "1_fake").iterdir())
    for path in fakes:
        found = read_provenance(path.read_bytes(), filename=path.name)
        assert (found.declared_ai, found.declared_generator, found.declared_by) == (True, "dall-e", "exif"), path
        assert not found.validated


def test_shared_real_photo_declares_nothing(ltim: Path) -> None:
    found = read_provenance((ltim / "glide" / "0_real" / "img_574345.png").read_bytes())
    assert (found.metadata.make, found.metadata.model) == ("Canon", "Canon EOS 5DS")
    assert (found.declared_ai, found.declared_generator, found.c2pa.state) == (False, None, "absent")


def test_png_metadata_is_read_without_decoding_pixels() -> None:
    png = png_with_text(parameters=WEBUI.format(version="v1.9.4"))
    chunks = [(kind, b"\x00" * len(body)) if kind == b"IDAT" else (kind, body) for kind, body in png_chunks(png)]
    broken = png_from_chunks(chunks)  # a zlib stream of zeros: any decode of the pixels would fail
    with pytest.raises(OSError):
        Image.open(io.BytesIO(broken)).load()
    found = read_provenance(broken)
    assert found.metadata.error is None
    assert found.declared_generator == "stable-diffusion-webui"
