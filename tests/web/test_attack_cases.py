"""Attack cases A01-A17 (identifier -> filesystem) and B01-B12 (parameter grammar) over HTTP.

One parametrised row per attack case with an HTTP surface. Group A turns an identifier against
the filesystem: encoded and raw dot segments, double encoding, absolute paths, sibling-prefix
escapes, symlinks out of the image root, slashes and gen-delims, NUL, invalid UTF-8, Unicode
normalisation, control characters, long identifiers, directories and FIFOs, non-TIFF content.
Group B abuses the parameter grammar: non-ASCII digits, signs, nan/inf, rotation range, empty
regions, sub-pixel output, integer overflow, upscaling, unknown values, missing segments.

Every path is sent byte-exact through ``iiifserver.asgi_call`` (httpx would normalise ``/../``
and re-encode), and every response is checked for leaks: no image-root path, no traceback.
Rows marked 2xx also check what came back (size, canonical link).
"""

from __future__ import annotations

import io
import string
import time
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from iiifserver import asgi_call
from tests.web.conftest import NFD_NAME, Http, ImageRoot, RawResponse, assert_no_leak

# A stuck FIFO open or a runaway render must fail the test, not hang the suite.
pytestmark = pytest.mark.timeout(30)

NOT_FOUND = frozenset({400, 404})
BAD = frozenset({400})
OK = frozenset({200})
LONG = frozenset({400, 404, 414})
REFUSED_SOURCE = frozenset({400, 403, 404, 415, 422, 501})
# A file named like an image that is none (SVG, GIF under .tif): a damaged source, a 500 naming it.
DAMAGED_SOURCE = frozenset({500})


@dataclass(frozen=True, slots=True)
class Case:
    case_id: str  # the attack-case ID in attack-cases.md
    name: str
    path: str  # raw path; {SECRET}/{ROOT_SAMPLE} are filled in with %-encoded absolute paths
    expected: frozenset[int]
    size: tuple[int, int] | None = None  # for 200s: the decoded image size
    canonical: str | None = None  # for 200s: the canonical tail in the Link header

    @property
    def test_id(self) -> str:
        return f"{self.case_id}-{self.name}"


def img(region: str = "full", size: str = "max", rotation: str = "0", qf: str = "default.jpg", *, v: str = "3") -> str:
    return f"/iiif/{v}/sample/{region}/{size}/{rotation}/{qf}"


def raw_utf8(text: str) -> str:
    """``text`` as raw UTF-8 bytes in the path (no %-encoding); asgi_call sends str as latin-1."""
    return text.encode("utf-8").decode("latin-1")


A_CASES = [
    # A01 encoded traversal
    Case("A01", "etc-passwd-info", "/iiif/3/..%2F..%2Fetc%2Fpasswd/info.json", NOT_FOUND),
    Case("A01", "etc-passwd-image", "/iiif/3/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd/full/max/0/default.jpg", NOT_FOUND),
    Case("A01", "to-sibling", "/iiif/3/..%2Fimg-private%2Fsecret/info.json", NOT_FOUND),
    Case("A01", "to-sibling-ext", "/iiif/3/..%2Fimg-private%2Fsecret.tif/full/max/0/default.jpg", NOT_FOUND),
    Case("A01", "dots-encoded", "/iiif/3/%2E%2E%2Fimg-private%2Fsecret/info.json", NOT_FOUND),
    Case("A01", "dots-lower", "/iiif/3/%2e%2e%2fimg-private%2fsecret/info.json", NOT_FOUND),
    Case("A01", "inner-dotdot", "/iiif/3/a%2F..%2F..%2Fimg-private%2Fsecret/info.json", NOT_FOUND),
    Case("A01", "dotdot-back-inside", "/iiif/3/a%2F..%2Fsample/info.json", NOT_FOUND),
    Case("A01", "dot-segment", "/iiif/3/.%2Fsample/info.json", NOT_FOUND),
    Case("A01", "empty-segment", "/iiif/3/a%2F%2Fb%20c%2Fpage/info.json", NOT_FOUND),
    Case("A01", "backslash", "/iiif/3/..%5C..%5Cetc%5Cpasswd/info.json", NOT_FOUND),
    Case("A01", "redirect", "/iiif/3/..%2F..%2Fetc%2Fpasswd", frozenset({303, 400, 404})),
    # A02 raw dot segments (what curl --path-as-is sends)
    Case("A02", "raw-etc-passwd", "/iiif/3/../../etc/passwd/full/max/0/default.jpg", NOT_FOUND),
    Case("A02", "raw-etc-passwd-info", "/iiif/3/../../etc/passwd/info.json", NOT_FOUND),
    Case("A02", "raw-sibling", "/iiif/3/../img-private/secret/info.json", NOT_FOUND),
    Case("A02", "raw-dotdot-id", "/iiif/3/../info.json", NOT_FOUND),
    Case("A02", "raw-dotdot-image", "/iiif/3/../full/max/0/default.jpg", NOT_FOUND),
    Case("A02", "raw-dot-id", "/iiif/3/./info.json", NOT_FOUND),
    Case("A02", "raw-after-id", "/iiif/3/sample/../../../img-private/secret/info.json", NOT_FOUND),
    Case("A02", "raw-version-hop", "/iiif/2/../3/sample/info.json", NOT_FOUND),
    # A03 double encoding: decoded once -> a literal "%2e%2e%2f..." identifier
    Case("A03", "double", "/iiif/3/%252e%252e%252fimg-private%252fsecret/info.json", frozenset({404})),
    Case("A03", "double-upper", "/iiif/3/%252E%252E%252F%252E%252E%252Fetc%252Fpasswd/info.json", frozenset({404})),
    Case(
        "A03", "double-image", "/iiif/3/%252e%252e%252fimg-private%252fsecret/full/max/0/default.jpg", frozenset({404})
    ),
    # A04 absolute identifiers
    Case("A04", "etc-passwd", "/iiif/3/%2Fetc%2Fpasswd/info.json", NOT_FOUND),
    Case("A04", "abs-secret", "/iiif/3/{SECRET}/info.json", NOT_FOUND),
    Case("A04", "abs-inside-root", "/iiif/3/{ROOT_SAMPLE}/info.json", NOT_FOUND),
    Case("A04", "abs-image", "/iiif/3/{SECRET}/full/max/0/default.jpg", NOT_FOUND),
    # A05 sibling-prefix escape (<root>-private)
    Case("A05", "symlink-into-sibling", "/iiif/3/escape/info.json", frozenset({404})),
    Case("A05", "symlink-into-sibling-ext", "/iiif/3/escape.tif/full/max/0/default.jpg", frozenset({404})),
    Case("A05", "dotdot-into-sibling", "/iiif/3/..%2Fimg-private%2Fsecret.tif/info.json", NOT_FOUND),
    # A06 symlinks: outside refused, inside allowed
    Case("A06", "dir-symlink-outside", "/iiif/3/private-dir%2Fsecret/info.json", frozenset({404})),
    Case(
        "A06", "dir-symlink-outside-image", "/iiif/3/private-dir%2Fsecret.tif/full/max/0/default.jpg", frozenset({404})
    ),
    Case("A06", "file-symlink-outside", "/iiif/3/escape/full/max/0/default.jpg", frozenset({404})),
    Case("A06", "symlink-loop", "/iiif/3/loop/info.json", frozenset({404})),
    Case("A06", "symlink-dangling", "/iiif/3/dangling/full/max/0/default.jpg", frozenset({404})),
    Case("A06", "symlink-inside", "/iiif/3/alias/info.json", OK),
    Case("A06", "symlink-inside-image", "/iiif/3/alias/full/100,/0/default.jpg", OK, size=(100, 75)),
    # A07 unescaped slash
    Case("A07", "info", "/iiif/3/a/b%20c/page/info.json", frozenset({404})),
    Case("A07", "image", "/iiif/3/a/b%20c/page/full/max/0/default.jpg", frozenset({404})),
    Case("A07", "two-part", "/iiif/3/a/b/full/max/0/default.jpg", frozenset({404})),
    Case("A07", "folder-as-id", "/iiif/3/a/full/max/0/default.jpg", frozenset({404})),
    # A08 encoded slash: one identifier naming a sub-folder file
    Case("A08", "info", "/iiif/3/a%2Fb%20c%2Fpage/info.json", OK),
    Case("A08", "info-lower", "/iiif/3/a%2fb%20c%2fpage/info.json", OK),
    Case("A08", "image", "/iiif/3/a%2Fb%20c%2Fpage/full/max/0/default.jpg", OK, size=(300, 200)),
    Case("A08", "with-ext", "/iiif/3/a%2Fb%20c%2Fpage.tif/full/150,/0/default.png", OK, size=(150, 100)),
    # A09 unescaped gen-delims
    Case("A09", "brackets", "/iiif/3/[frob]/info.json", NOT_FOUND),
    Case("A09", "brackets-image", "/iiif/3/[frob]/full/max/0/default.jpg", NOT_FOUND),
    Case("A09", "brackets-encoded", "/iiif/3/%5Bfrob%5D/info.json", NOT_FOUND),
    Case("A09", "at-colon", "/iiif/3/a@b:c/info.json", NOT_FOUND),
    # A10 NUL
    Case("A10", "nul", "/iiif/3/a%00b/info.json", BAD),
    Case("A10", "nul-before-ext", "/iiif/3/sample%00.tif/info.json", BAD),
    Case("A10", "nul-image", "/iiif/3/sample%00/full/max/0/default.jpg", BAD),
    Case("A10", "nul-redirect", "/iiif/3/sample%00", BAD),
    Case("A10", "nul-in-param", "/iiif/3/sample/full/max/0%00/default.jpg", BAD),
    # A11 invalid UTF-8
    Case("A11", "ff", "/iiif/3/%FF/info.json", BAD),
    Case("A11", "c3-28", "/iiif/3/%C3%28/info.json", BAD),
    Case("A11", "latin1-e-acute", "/iiif/3/caf%E9/info.json", BAD),
    Case("A11", "overlong-slash", "/iiif/3/..%C0%AF..%C0%AFetc%C0%AFpasswd/info.json", BAD),
    Case("A11", "surrogate", "/iiif/3/%ED%A0%80/info.json", BAD),
    Case("A11", "raw-ff", "/iiif/3/\xff/info.json", BAD),
    Case("A11", "in-param", "/iiif/3/sample/full/max/0/default.jp%FF", BAD),
    Case("A11", "redirect", "/iiif/3/%FF", BAD),
    # A12 Unicode normalisation: NFC and NFD spellings give the same answer (NFC everywhere)
    Case("A12", "nfc", "/iiif/3/caf%C3%A9/info.json", OK),
    Case("A12", "nfd", "/iiif/3/cafe%CC%81/info.json", OK),
    Case("A12", "raw-nfc", "/iiif/3/" + raw_utf8("café") + "/info.json", OK),
    Case("A12", "nfd-file-nfc-request", "/iiif/3/" + quote("résumé") + "/full/max/0/default.png", OK, size=(300, 200)),
    Case("A12", "nfd-file-nfd-request", "/iiif/3/" + quote(NFD_NAME) + "/info.json", OK),
    # A13 CR LF, C0, DEL, C1 in identifiers
    Case("A13", "crlf", "/iiif/3/a%0D%0ASet-Cookie:%20evil=1/info.json", BAD),
    Case("A13", "crlf-redirect", "/iiif/3/a%0D%0ASet-Cookie:%20evil=1", BAD),
    Case("A13", "crlf-image", "/iiif/3/sample%0D%0AX-Injected:%20evil/full/max/0/default.jpg", BAD),
    Case("A13", "lf", "/iiif/3/a%0Ab/info.json", BAD),
    Case("A13", "tab", "/iiif/3/a%09b/info.json", BAD),
    Case("A13", "esc", "/iiif/3/a%1Bb/info.json", BAD),
    Case("A13", "del", "/iiif/3/a%7Fb/info.json", BAD),
    Case("A13", "c1-nel", "/iiif/3/a%C2%85b/info.json", BAD),
    Case("A13", "crlf-param", "/iiif/3/sample/full/max/0%0D%0AX-Injected:%20evil/default.jpg", BAD),
    Case("A13", "html", "/iiif/3/%3Cscript%3Ealert(1)%3C%2Fscript%3E/info.json", NOT_FOUND),
    # A14 long identifiers
    Case("A14", "300B", "/iiif/3/" + "x" * 300 + "/info.json", LONG),
    Case("A14", "256B-name-with-ext", "/iiif/3/" + "x" * 252 + "/info.json", LONG),
    Case("A14", "300B-encoded", "/iiif/3/" + "%41" * 300 + "/info.json", LONG),
    Case("A14", "5KB", "/iiif/3/" + "x" * 5_000 + "/info.json", LONG),
    Case("A14", "5KB-image", "/iiif/3/" + "x" * 5_000 + "/full/max/0/default.jpg", LONG),
    Case("A14", "5KB-redirect", "/iiif/3/" + "x" * 5_000, LONG),
    Case("A14", "100KB", "/iiif/3/" + "x" * 100_000 + "/info.json", LONG),
    Case("A14", "deep-folders", "/iiif/3/" + "a%2F" * 240 + "x/info.json", LONG),
    Case("A14", "long-segments", "/iiif/3/" + "%2F".join(["y" * 200] * 5) + "/info.json", LONG),
    # A15 directories and FIFOs (opening a FIFO blocks: must be refused without opening it)
    Case("A15", "dir", "/iiif/3/dir/info.json", frozenset({404})),
    Case("A15", "dir-ext", "/iiif/3/dir.tif/info.json", frozenset({404})),
    Case("A15", "folder-a", "/iiif/3/a/info.json", frozenset({404})),
    Case("A15", "fifo", "/iiif/3/fifo/info.json", frozenset({404})),
    Case("A15", "fifo-ext", "/iiif/3/fifo.tif/info.json", frozenset({404})),
    Case("A15", "fifo-image", "/iiif/3/fifo/full/max/0/default.jpg", frozenset({404})),
    Case("A15", "root-itself", "/iiif/3/.tif/info.json", frozenset({404})),
    # A16 non-TIFF content under a .tif name
    Case("A16", "svg-info", "/iiif/3/svg/info.json", DAMAGED_SOURCE),
    Case("A16", "svg-image", "/iiif/3/svg/full/max/0/default.png", DAMAGED_SOURCE),
    Case("A16", "svg-ext", "/iiif/3/svg.tif/full/max/0/default.jpg", DAMAGED_SOURCE),
    Case("A16", "gif-info", "/iiif/3/gif/info.json", DAMAGED_SOURCE),
    Case("A16", "gif-image", "/iiif/3/gif/full/max/0/default.jpg", DAMAGED_SOURCE),
    # Plain JPEGs are a supported source (sources.PLAIN_EXTENSIONS), whatever their name says.
    Case("A16", "jpeg-under-tif", "/iiif/3/fake/full/max/0/default.png", OK, size=(64, 48)),
    # A17 error bodies: checked on every row (no root path, no traceback); plus unknown ids.
    Case("A17", "unknown", "/iiif/3/nothere/info.json", frozenset({404})),
    Case("A17", "unknown-image", "/iiif/3/nothere/full/max/0/default.jpg", frozenset({404})),
    Case("A17", "unknown-with-ext", "/iiif/3/nothere.tif/info.json", frozenset({404})),
]

B_CASES = [
    # B01 non-ASCII digits
    Case("B01", "arabic-indic-size", img(size="%D9%A1%D9%A2%D9%A3,"), BAD),
    Case("B01", "fullwidth-size", img(size="%EF%BC%91%EF%BC%90%EF%BC%90,"), BAD),
    Case("B01", "superscript-size", img(size="%C2%B2,"), BAD),
    Case("B01", "raw-arabic-indic-size", img(size=raw_utf8("١٢٣,")), BAD),
    Case("B01", "arabic-indic-region", img(region="%D9%A1,0,10,10"), BAD),
    Case("B01", "arabic-indic-rotation", img(rotation="%D9%A9%D9%A0"), BAD),
    Case("B01", "fullwidth-pct", img(size="pct:%EF%BC%95%EF%BC%90"), BAD),
    # B02 signs, spaces, underscores, hex
    Case("B02", "plus", img(size="+5,"), BAD),
    Case("B02", "space", img(size="%207,"), BAD),
    Case("B02", "trailing-space", img(size="7%20,"), BAD),
    Case("B02", "underscore", img(size="1_000,"), BAD),
    Case("B02", "hex", img(size="0x10,"), BAD),
    Case("B02", "float-width", img(size="5.0,"), BAD),
    Case("B02", "plus-region", img(region="+0,0,10,10"), BAD),
    Case("B02", "negative-region", img(region="-1,0,10,10"), BAD),
    Case("B02", "short-region", img(region="0,0,10"), BAD),
    Case("B02", "long-region", img(region="0,0,10,10,10"), BAD),
    # B03 nan, inf, exponents, signs
    Case("B03", "pct-nan", img(size="pct:nan"), BAD),
    Case("B03", "pct-inf", img(size="pct:inf"), BAD),
    Case("B03", "pct-exp", img(size="pct:1e3"), BAD),
    Case("B03", "pct-negative", img(size="pct:-5"), BAD),
    Case("B03", "pct-empty", img(size="pct:"), BAD),
    Case("B03", "region-pct-nan", img(region="pct:nan,0,10,10"), BAD),
    Case("B03", "rotation-plus", img(rotation="+90"), BAD),
    Case("B03", "rotation-minus-zero", img(rotation="-0"), BAD),
    Case("B03", "rotation-nan", img(rotation="nan"), BAD),
    Case("B03", "rotation-inf", img(rotation="inf"), BAD),
    Case("B03", "rotation-leading-dot", img(size="100,", rotation=".5"), OK, canonical="full/100,75/0.5/default.jpg"),
    Case(
        "B03", "rotation-trailing-zero", img(size="100,", rotation="0.90"), OK, canonical="full/100,75/0.9/default.jpg"
    ),
    Case("B03", "pct-trailing-zero", img(size="pct:5.0"), OK, size=(100, 75), canonical="full/100,75/0/default.jpg"),
    # B04 rotation range
    Case("B04", "361", img(rotation="361"), BAD),
    Case("B04", "minus-90", img(rotation="-90"), BAD),
    Case("B04", "bang-only", img(rotation="!"), BAD),
    Case("B04", "exp", img(rotation="1e2"), BAD),
    Case("B04", "double-bang", img(rotation="!!90"), BAD),
    Case("B04", "360.5", img(rotation="360.5"), BAD),
    Case("B04", "bang-after", img(rotation="90!"), BAD),
    Case("B04", "0", img(size="100,", rotation="0"), OK, size=(100, 75)),
    Case("B04", "360", img(size="100,", rotation="360"), OK, size=(100, 75), canonical="full/100,75/0/default.jpg"),
    Case("B04", "90", img(size="100,", rotation="90"), OK, size=(75, 100)),
    Case("B04", "mirror-90", img(size="100,", rotation="!90"), OK, size=(75, 100)),
    Case("B04", "mirror-0", img(size="100,", rotation="!0"), OK, size=(100, 75)),
    Case("B04", "arbitrary", img(size="100,", rotation="22.5", qf="default.png"), OK),
    # B05 zero-area / outside regions
    Case("B05", "zero-width", img(region="0,0,0,10"), BAD),
    Case("B05", "zero-height", img(region="0,0,10,0"), BAD),
    Case("B05", "far-outside", img(region="99999,99999,10,10"), BAD),
    Case("B05", "x-at-edge", img(region="2000,0,10,10"), BAD),
    Case("B05", "y-at-edge", img(region="0,1500,10,10"), BAD),
    Case("B05", "pct-x-100", img(region="pct:100,0,10,10"), BAD),
    Case("B05", "pct-zero-width", img(region="pct:0,0,0,10"), BAD),
    Case("B05", "pct-y-100", img(region="pct:0,100,10,10"), BAD),
    Case(
        "B05",
        "partly-outside",
        img(region="1900,1400,200,200"),
        OK,
        size=(100, 100),
        canonical="1900,1400,100,100/max/0/default.jpg",
    ),
    # B06 output below one pixel
    Case("B06", "pct-tiny", img(size="pct:0.0001"), BAD),
    Case("B06", "pct-rounds-to-zero", img(size="pct:0.01"), BAD),
    Case("B06", "zero-width", img(size="0,"), BAD),
    Case("B06", "zero-height", img(size=",0"), BAD),
    Case("B06", "zero-both", img(size="0,0"), BAD),
    Case("B06", "zero-confined", img(size="!0,0"), BAD),
    Case("B06", "tiny-region-pct", img(region="0,0,1,1", size="pct:10"), BAD),
    Case("B06", "thin-strip", img(region="0,0,2000,1", size="100,"), BAD),
    # B07 integers beyond C int
    Case(
        "B07",
        "huge-region-clamped",
        img(region="0,0,99999999999999999999,1"),
        OK,
        size=(2000, 1),
        canonical="0,0,2000,1/max/0/default.jpg",
    ),
    Case("B07", "huge-width", img(size="9999999999,"), BAD),
    Case("B07", "huge-width-upscale", img(size="^9999999999,"), BAD),
    Case("B07", "huge-wh", img(size="99999999999999999999999,1"), BAD),
    Case("B07", "huge-x", img(region="99999999999999999999,0,1,1"), BAD),
    Case("B07", "huge-height", img(size=",99999999999"), BAD),
    Case("B07", "huge-pct", img(size="^pct:99999999"), BAD),
    Case("B07", "huge-rotation", img(rotation="99999999999999999999"), BAD),
    Case("B07", "many-digits-size", img(size="0" * 5000 + "1,"), frozenset({400, 414})),
    Case("B07", "many-digits-region", img(region="0,0," + "9" * 5000 + ",1"), frozenset({400, 414})),
    Case("B07", "long-rotation", img(rotation="1." + "0" * 5000), frozenset({400, 414})),
    Case("B07", "long-pct", img(size="pct:1." + "0" * 5000), frozenset({400, 414})),
    # B08 upscaling without ^ (3.0)
    Case("B08", "pct-200", img(size="pct:200"), BAD),
    Case("B08", "width", img(region="0,0,1000,1000", size="2000,"), BAD),
    Case("B08", "height", img(region="0,0,1000,1000", size=",2000"), BAD),
    Case("B08", "wh", img(region="0,0,1000,1000", size="2000,2000"), BAD),
    Case("B08", "confined", img(region="0,0,1000,1000", size="!2000,3000"), BAD),
    Case("B08", "max-is-not-upscaling", img(region="0,0,100,100", size="max"), OK, size=(100, 100)),
    Case("B08", "caret-upscales", img(region="0,0,100,100", size="^pct:200"), OK, size=(200, 200)),
    Case("B08", "caret-encoded", img(region="0,0,100,100", size="%5E200,"), OK, size=(200, 200)),
    Case("B08", "v2-may-upscale", img(region="0,0,100,100", size="200,", v="2"), OK, size=(200, 200)),
    Case("B08", "v2-no-caret", img(region="0,0,100,100", size="^200,", v="2"), BAD),
    # B10 unknown values
    Case("B10", "size-full-v3", img(size="full"), BAD),
    Case("B10", "size-full-v2", img(size="100,", v="2"), OK, size=(100, 75)),
    Case("B10", "quality", img(qf="fancy.jpg"), BAD),
    Case("B10", "quality-case", img(qf="Default.jpg"), BAD),
    Case("B10", "format-jpeg", img(qf="default.jpeg"), BAD),
    Case("B10", "format-bmp", img(qf="default.bmp"), BAD),
    Case("B10", "format-jp2", img(qf="default.jp2"), BAD),
    Case("B10", "format-pdf", img(qf="default.pdf"), BAD),
    Case("B10", "format-upper", img(qf="default.JPG"), BAD),
    Case("B10", "format-svg", img(qf="default.svg"), BAD),
    Case("B10", "region-random", img(region="foo"), BAD),
    Case("B10", "region-case", img(region="Full"), BAD),
    Case("B10", "size-random", img(size="big"), BAD),
    # B11 missing / extra segments
    Case("B11", "four-params", "/iiif/3/sample/full/max/0", NOT_FOUND),
    Case("B11", "extra", "/iiif/3/sample/full/max/0/default.jpg/extra", NOT_FOUND),
    Case("B11", "trailing-slash", "/iiif/3/sample/full/max/0/default.jpg/", NOT_FOUND),
    Case("B11", "info-upper", "/iiif/3/sample/info.JSON", NOT_FOUND),
    Case("B11", "info-extra", "/iiif/3/sample/info.json/extra", NOT_FOUND),
    Case("B11", "no-format", img(qf="default"), BAD),
    Case("B11", "empty-format", img(qf="default."), BAD),
    Case("B11", "empty-quality", img(qf=".jpg"), BAD),
    Case("B11", "empty-region", "/iiif/3/sample//max/0/default.jpg", BAD),
    Case("B11", "empty-id", "/iiif/3//info.json", NOT_FOUND),
    Case("B11", "empty-id-image", "/iiif/3//full/max/0/default.jpg", NOT_FOUND),
    Case("B11", "id-slash", "/iiif/3/sample/", NOT_FOUND),
    Case("B11", "prefix-only", "/iiif/3/", NOT_FOUND),
    Case("B11", "prefix-no-slash", "/iiif/3", frozenset({307, 404})),  # Starlette's slash redirect
    Case("B11", "unknown-version", "/iiif/4/sample/info.json", NOT_FOUND),
    Case("B11", "encoded-prefix", "/iiif%2F3/sample/info.json", NOT_FOUND),
    Case("B11", "encoded-separators", "/iiif/3/sample%2Ffull%2Fmax%2F0%2Fdefault.jpg", frozenset({303, 400, 404})),
]


def _fill(path: str, image_root: ImageRoot) -> str:
    return path.replace("{SECRET}", quote(str(image_root.secret), safe="")).replace(
        "{ROOT_SAMPLE}", quote(str(image_root.root / "sample.tif"), safe="")
    )


def check_response(r: RawResponse, image_root: ImageRoot, sent: str) -> None:
    """What holds for every response: never 5xx (but 501, and the 500 of a damaged source), no
    leaks, errors uncached plain text."""
    damaged = r.status_code == 500 and "is damaged:" in r.text
    assert r.status_code < 500 or r.status_code == 501 or damaged, (r.status_code, r.text[:200])
    assert r.headers.get("access-control-allow-origin") == "*"
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["cache-control"] == "no-store"
        assert_no_leak(image_root, r.content, sent)
    # Header injection (A13): nothing the client sent becomes a header or raw header text.
    for name, value in r.headers.items():
        assert "\r" not in value
        assert "\n" not in value
        assert name.lower() not in ("set-cookie", "x-injected")
        for injected in ("evil=1", "<evil>", "X-Injected"):
            assert injected not in value, (name, value)


@pytest.mark.parametrize("case", A_CASES + B_CASES, ids=lambda c: c.test_id)
def test_attack_case(http: Http, image_root: ImageRoot, opened_outside: list[str], case: Case) -> None:
    path = _fill(case.path, image_root)
    started = time.monotonic()
    r = http.raw(path)
    elapsed = time.monotonic() - started
    assert r.status_code in case.expected, (r.status_code, r.text[:300])
    check_response(r, image_root, path)
    assert opened_outside == [], "a file outside the image root was opened"
    if case.case_id == "A15":
        assert elapsed < 5, "refusing a directory or FIFO must be quick"
    if case.size is not None:
        assert Image.open(io.BytesIO(r.content)).size == case.size
    if case.canonical is not None:
        assert f'/sample/{case.canonical}>;rel="canonical"' in r.headers["link"]


def test_case_table_covers_groups_a_and_b() -> None:
    ids = {c.case_id for c in A_CASES + B_CASES}
    # B09 needs a server with upscaling off and B12 compares responses: both tested below.
    assert ids | {"B09", "B12"} == {f"A{i:02d}" for i in range(1, 18)} | {f"B{i:02d}" for i in range(1, 13)}


# --- A12: one rule for NFC/NFD ------------------------------------------------------------------


def test_a12_nfc_and_nfd_spellings_are_the_same_image(http: Http) -> None:
    nfc = http.raw("/iiif/3/" + quote(unicodedata.normalize("NFC", "café")) + "/full/max/0/default.png")
    nfd = http.raw("/iiif/3/" + quote(unicodedata.normalize("NFD", "café")) + "/full/max/0/default.png")
    assert nfc.status_code == nfd.status_code == 200
    assert nfc.headers["etag"] == nfd.headers["etag"]
    assert nfc.headers["link"] == nfd.headers["link"]
    assert nfc.content == nfd.content


# --- A13: nothing the client sends reaches a header unescaped -----------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/iiif/3/a%0D%0ASet-Cookie:%20evil=1",
        "/iiif/3/a%0D%0ASet-Cookie:%20evil=1/info.json",
        "/iiif/3/sample/full/max/0/default.jpg%0D%0ASet-Cookie:%20evil=1",
        "/iiif/3/x%22%3E%3Cevil%3E",  # quote and angle brackets, echoed into Location
    ],
)
def test_a13_no_header_injection(http: Http, image_root: ImageRoot, path: str) -> None:
    r = http.raw(path)
    check_response(r, image_root, path)
    if r.status_code == 303:
        assert r.headers["location"] == "http://localhost/iiif/3/x%22%3E%3Cevil%3E/info.json"


# --- A14: long identifiers on every route --------------------------------------------------------


@pytest.mark.parametrize("length", [300, 1024, 1025, 5_000, 100_000])
@pytest.mark.parametrize("tail", ["/info.json", "/full/max/0/default.jpg", ""])
def test_a14_long_identifiers_never_500(http: Http, image_root: ImageRoot, length: int, tail: str) -> None:
    path = "/iiif/3/" + "z" * length + tail
    r = http.raw(path)
    assert r.status_code in {303, 400, 404, 414}
    if length > 1024:
        assert r.status_code == 414  # refused before any filesystem call
    check_response(r, image_root, path)


# --- A01 as a property: any identifier with a dot segment is refused, nothing outside is opened ----

SEGMENTS = ["..", ".", "img-private", "secret", "secret.tif", "sample", "sample.tif", "etc", "passwd", "a", "b c", ""]


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segments=st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6).filter(
        lambda s: any(seg in ("..", ".", "") for seg in s)
    ),
    encode_dots=st.booleans(),
    tail=st.sampled_from(["/info.json", "/full/max/0/default.jpg", "/full/64,/0/default.png"]),
)
def test_a01_dot_segments_property(
    http: Http, image_root: ImageRoot, opened_outside: list[str], segments: list[str], encode_dots: bool, tail: str
) -> None:
    opened_outside.clear()
    identifier = quote("/".join(segments), safe="")
    if encode_dots:
        identifier = identifier.replace(".", "%2E")
    path = f"/iiif/3/{identifier}{tail}"
    r = http.raw(path)
    assert r.status_code in NOT_FOUND, (path, r.status_code)
    check_response(r, image_root, path)
    assert opened_outside == []


# --- A15: a FIFO never blocks, even under concurrency ----------------------------------------------


def test_a15_fifo_requests_do_not_block_the_server(http: Http) -> None:
    async def many() -> list[int]:
        results: list[int] = []

        async def one(path: str) -> None:
            status, _, _ = await asgi_call.call(http.app, path)
            results.append(status)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one, "/iiif/3/fifo/info.json")
                    tg.start_soon(one, "/iiif/3/fifo.tif/full/max/0/default.jpg")
                tg.start_soon(one, "/iiif/3/sample/info.json")
        return results

    results = http.portal.call(many)
    assert sorted(set(results)) == [200, 404]


# --- A16: refused sources never reach a decoder other than ours ------------------------------------


@pytest.mark.parametrize("identifier", ["svg", "gif", "svg.tif", "gif.tif"])
@pytest.mark.parametrize("tail", ["/info.json", "/full/max/0/default.jpg", "/full/10,/0/default.png"])
def test_a16_non_tiff_content_is_refused(http: Http, image_root: ImageRoot, identifier: str, tail: str) -> None:
    path = f"/iiif/3/{identifier}{tail}"
    r = http.raw(path)
    assert r.status_code in DAMAGED_SOURCE
    assert f"the source {identifier!r} is damaged: the file is not a TIFF, JPEG, PNG or JPEG 2000 image" in r.text
    check_response(r, image_root, path)


# --- B09: ^ when upscaling is off ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_path", "status"),
    [
        ("0,0,100,100/^pct:200/0/default.jpg", 501),
        ("0,0,100,100/^200,/0/default.jpg", 501),
        ("0,0,100,100/^200,200/0/default.jpg", 501),
        ("0,0,100,100/^!200,200/0/default.jpg", 501),
        ("0,0,1000,1000/^100,/0/default.jpg", 200),  # '^' that does not upscale is fine
        ("0,0,100,100/200,/0/default.jpg", 400),  # no '^': still a 400, not a 501
    ],
)
def test_b09_caret_with_upscaling_disabled(
    make_http: Any, image_root: ImageRoot, request_path: str, status: int
) -> None:
    http = make_http(allow_upscaling=False)
    path = f"/iiif/3/sample/{request_path}"
    r = http.raw(path)
    assert r.status_code == status, r.text
    check_response(r, image_root, path)


# --- B12: equivalent spellings share one canonical form, key and body --------------------------------

EQUIVALENT = [
    (
        "0,0,512,512/max/0/default.jpg",
        [
            "000,0,512,512/max/0/default.jpg",
            "0,0,512,512/512,/0/default.jpg",
            "0,0,512,512/,512/0/default.jpg",
            "0,0,512,512/512,512/0/default.jpg",
            "0,0,512,512/pct:100/0/default.jpg",
            "0,0,512,512/pct:100.0/0/default.jpg",
            "0,0,512,512/!512,512/0/default.jpg",
            "0,0,512,512/max/0.0/default.jpg",
            "0,0,512,512/max/360/default.jpg",
            "0,0,0512,0512/max/00/default.jpg",
        ],
    ),
    (
        "full/1000,750/0/default.jpg",
        [
            "full/pct:50/0/default.jpg",
            "full/pct:50.0/0/default.jpg",
            "full/1000,/0/default.jpg",
            "full/,750/0/default.jpg",
            "0,0,2000,1500/1000,750/0/default.jpg",
            "pct:0,0,100,100/1000,/0/default.jpg",
            "0,0,99999,99999/1000,/0/default.jpg",
            "full/!1000,1000/0/default.jpg",
        ],
    ),
]


@pytest.mark.parametrize(("canonical", "spellings"), EQUIVALENT, ids=["region-512", "half-size"])
def test_b12_equivalent_spellings(http: Http, canonical: str, spellings: list[str]) -> None:
    reference = http.raw(f"/iiif/3/sample/{canonical}")
    assert reference.status_code == 200
    expected_link = f'<http://localhost/iiif/3/sample/{canonical}>;rel="canonical"'
    assert reference.headers["link"].startswith(expected_link)
    for spelling in spellings:
        r = http.raw(f"/iiif/3/sample/{spelling}")
        assert r.status_code == 200, spelling
        assert r.headers["link"].startswith(expected_link), spelling
        assert r.headers["etag"] == reference.headers["etag"], spelling
        assert r.content == reference.content, spelling


# --- B rows with the validators' random garbage (spec A1.8) -------------------------------------------

GARBAGE = st.text(alphabet=[chr(c) for c in range(48, 123)], min_size=3, max_size=6)
VALID_QUALITIES = {"default", "color", "gray", "bitonal"}
VALID_FORMATS = {"jpg", "png", "webp", "tif", "gif"}


def _is_valid(parameter: str, value: str) -> bool:
    """The few random strings that are real values (e.g. rotation '123', size 'pct:5')."""
    if parameter == "rotation":
        return value.isascii() and value.isdigit()
    if parameter == "size":
        return value in ("max", "^max") or (value.startswith(("pct:", "^pct:")) and value.split(":")[1].isdigit())
    if parameter == "region":
        return value in ("full", "square")
    if parameter == "quality":
        return value in VALID_QUALITIES
    return value in VALID_FORMATS


def _segment(value: str, encode: bool) -> str:
    # '?' would start the query string; everything else may go raw, as the validators send it.
    return quote(value, safe="") if encode else value.replace("?", "%3F")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    parameter=st.sampled_from(["region", "size", "rotation", "quality", "format"]),
    value=GARBAGE,
    encode=st.booleans(),
    version=st.sampled_from(["3", "2"]),
)
def test_random_parameter_garbage_is_400(
    http: Http, image_root: ImageRoot, parameter: str, value: str, encode: bool, version: str
) -> None:
    parts = {"region": "full", "size": "64,", "rotation": "0", "quality": "default", "format": "jpg"}
    if _is_valid(parameter, value):
        return
    parts[parameter] = _segment(value, encode)
    path = f"/iiif/{version}/sample/{parts['region']}/{parts['size']}/{parts['rotation']}/"
    path += f"{parts['quality']}.{parts['format']}"
    r = http.raw(path)
    # '.' cannot occur in the garbage, so 'quality.format' always stays two parts.
    assert r.status_code == 400, (path, r.status_code, r.text)
    check_response(r, image_root, path)


EXISTING = {"sample", "mutable", "alias", "escape", "loop", "fake", "svg", "gif", "fifo", "dir", "a"}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(value=GARBAGE, encode=st.booleans(), tail=st.sampled_from(["/info.json", "/full/max/0/default.jpg"]))
def test_random_identifier_is_404(http: Http, image_root: ImageRoot, value: str, encode: bool, tail: str) -> None:
    if value in EXISTING:
        return
    path = f"/iiif/3/{_segment(value, encode)}{tail}"
    r = http.raw(path)
    assert r.status_code in NOT_FOUND, (path, r.status_code, r.text)
    check_response(r, image_root, path)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(segment=st.text(alphabet=string.printable + "éü١２", min_size=0, max_size=12), index=st.integers(0, 4))
def test_any_text_in_any_segment_never_500(http: Http, image_root: ImageRoot, segment: str, index: int) -> None:
    parts = ["sample", "full", "64,", "0", "default.jpg"]
    parts[index] = quote(segment, safe="")
    path = "/iiif/3/" + "/".join(parts)
    r = http.raw(path)
    check_response(r, image_root, path)
