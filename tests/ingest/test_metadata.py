"""Metadata carried over: EXIF text parsing, the XMP packet, the IPTC round trip."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pyvips

from iiifserver.ingest.metadata import exif_text, iptc_needs_padding, xmp_packet

DC = "{http://purl.org/dc/elements/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


def test_exif_text_reads_libvips_ascii_fields() -> None:
    image = pyvips.Image.black(8, 8).copy()
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Copyright", "(c) 2026 Museum (Photo Dept.) (x, ASCII, 2, 2)")
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "Ann (Ann, ASCII, 4 components, 4 bytes)")
    assert exif_text(image, "exif-ifd0-Artist") == "Ann"
    assert exif_text(image, "exif-ifd0-Copyright") == ""  # not in libvips' shape: not guessed at
    assert exif_text(image, "exif-ifd0-ImageDescription") == ""


def test_xmp_packet_is_well_formed_and_escaped() -> None:
    packet = xmp_packet(creator="A & B", rights="CC BY <4.0>", description="")
    body = packet.decode()
    start, end = body.index("<x:xmpmeta"), body.index("</x:xmpmeta>") + len("</x:xmpmeta>")
    root = ET.fromstring(body[start:end])
    description = root.find(f"{RDF}RDF/{RDF}Description")
    assert description is not None
    assert description.findtext(f"{DC}creator/{RDF}Seq/{RDF}li") == "A & B"
    assert description.findtext(f"{DC}rights/{RDF}Alt/{RDF}li") == "CC BY <4.0>"
    assert description.find(f"{DC}description") is None


def test_iptc_padding_only_when_this_libvips_needs_it() -> None:
    block = bytes(range(1, 25))
    image = pyvips.Image.black(2, 2).cast("uchar").copy()
    padded = block + bytes(3 * len(block)) if iptc_needs_padding() else block
    image.set_type(pyvips.GValue.blob_type, "iptc-data", padded)
    back = pyvips.Image.tiffload_buffer(image.tiffsave_buffer())
    assert bytes(back.get("iptc-data")) == block
