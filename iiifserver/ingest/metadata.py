"""Which of a master's metadata crosses into its pyramid.

Owns: keeping XMP and IPTC as they are (working round a libvips 8.18 IPTC-in-TIFF bug);
carrying EXIF's rights and description over (libvips
writes no EXIF into a TIFF: EXIF ImageDescription becomes the TIFF ImageDescription, and
Artist, Copyright and ImageDescription become a small XMP packet, dc:creator, dc:rights and
dc:description, when the master has no XMP of its own); replacing the ICC profile by sRGB's;
dropping what would be wrong or bulky in the output (EXIF orientation, Photoshop resources).
Must not know: files, the rest of the pipeline. Imports pyvips (an ingest module, see the
package docstring).
"""

from __future__ import annotations

import functools
import re
from html import escape
from typing import Any

import pyvips

_DROPPED = ("photoshop-data", "orientation")
_EXIF_TEXT = re.compile(r"(.*) \(\1, ASCII, \d+ components?, \d+ bytes\)", re.DOTALL)


def exif_text(image: Any, field: str) -> str:
    """An EXIF ASCII field's value, or empty. libvips shows them as ``value (value, ASCII, ...)``."""
    if image.get_typeof(field) == 0:
        return ""
    match = _EXIF_TEXT.fullmatch(str(image.get(field)))
    return match.group(1).strip() if match else ""


def xmp_packet(*, creator: str = "", rights: str = "", description: str = "") -> bytes:
    """A minimal XMP packet with Dublin Core creator, rights and description (those given)."""
    parts = []
    if creator:
        parts.append(f"<dc:creator><rdf:Seq><rdf:li>{escape(creator, quote=False)}</rdf:li></rdf:Seq></dc:creator>")
    for tag, value in (("rights", rights), ("description", description)):
        if value:
            alt = f'<rdf:Alt><rdf:li xml:lang="x-default">{escape(value, quote=False)}</rdf:li></rdf:Alt>'
            parts.append(f"<dc:{tag}>{alt}</dc:{tag}>")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        + "".join(parts)
        + '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def carry_over(master: Any, converted: Any, srgb_profile: bytes) -> Any:
    """``converted`` (pixels already sRGB) with the metadata the pyramid should carry."""
    out = converted.copy()
    for field in _DROPPED:
        if out.get_typeof(field) != 0:
            out.remove(field)
    if out.bands == 3:
        out.set_type(pyvips.GValue.blob_type, "icc-profile-data", srgb_profile)
    elif out.get_typeof("icc-profile-data") != 0:
        out.remove("icc-profile-data")  # greyscale without a profile stays so
    for field in ("xmp-data", "iptc-data"):
        if master.get_typeof(field) != 0 and out.get_typeof(field) == 0:
            out.set_type(pyvips.GValue.blob_type, field, master.get(field))
    if out.get_typeof("iptc-data") != 0 and iptc_needs_padding():
        iptc = bytes(out.get("iptc-data"))
        out.set_type(pyvips.GValue.blob_type, "iptc-data", iptc + bytes(3 * len(iptc)))
    description = exif_text(master, "exif-ifd0-ImageDescription")
    if description and master.get_typeof("image-description") == 0:
        out.set_type(pyvips.GValue.gstr_type, "image-description", description)
    if master.get_typeof("xmp-data") == 0:
        creator = exif_text(master, "exif-ifd0-Artist")
        rights = exif_text(master, "exif-ifd0-Copyright")
        if creator or rights or description:
            packet = xmp_packet(creator=creator, rights=rights, description=description)
            out.set_type(pyvips.GValue.blob_type, "xmp-data", packet)
    return out


@functools.cache
def iptc_needs_padding() -> bool:
    """Whether this libvips' tiffsave keeps only a quarter of the IPTC block (8.18 counts it in
    4-byte units while libtiff writes bytes); then the block is given four times its length,
    zero-padded, so the whole of it is written. Found out once, on a 1-pixel TIFF in memory."""
    probe = bytes(range(1, 17))
    image = pyvips.Image.black(1, 1).cast("uchar").copy()
    image.set_type(pyvips.GValue.blob_type, "iptc-data", probe)
    back = pyvips.Image.tiffload_buffer(image.tiffsave_buffer())
    return bool(back.get_typeof("iptc-data") == 0 or bytes(back.get("iptc-data")) != probe)
