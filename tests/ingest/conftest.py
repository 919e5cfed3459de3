"""Masters for the ingest tests, generated here, each with a reference computed independently.

The references never go through the code under test: colour is converted with Pillow's
ImageCms (LittleCMS through Pillow, not libvips), orientation and alpha with numpy, and the
expected 8-bit values of 16-bit data by arithmetic.
"""

from __future__ import annotations

import asyncio
import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import pyvips
import tifffile
from PIL import Image, ImageCms

from iiifserver.app import create_app
from iiifserver.asgi_call import call
from iiifserver.config import Settings

Pixels = npt.NDArray[np.uint8]
BACKGROUND = (32, 64, 160)  # the tests flatten alpha on this, not on the default white


@dataclass(frozen=True)
class Master:
    name: str  # file name in the masters folder
    reference: Pixels  # what the output's full resolution should be (8-bit sRGB), H x W x 3


def scene(width: int, height: int, seed: int) -> Pixels:
    """A deterministic sRGB test scene: smooth colour gradients plus mild texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / max(width, 1) * 6.0 + seed)
    g = 128 + 100 * np.cos(y / max(height, 1) * 5.0)
    b = 128 + 90 * np.sin((x + y) / 97.0)
    texture = rng.normal(0.0, 1.5, size=(height, width)).astype(np.float32)
    rgb = np.stack([r + texture, g + texture, b + texture], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def matrix_profile(description: str, primaries: tuple[tuple[float, float, float], ...], gamma: float) -> bytes:
    """A minimal ICC v2 RGB display profile: D50 colorants, one gamma curve per channel.

    Used for Adobe RGB (1998), whose profile is not shipped with libvips; the numbers are the
    published colorants of that space adapted to D50.
    """
    desc = description.encode("ascii") + b"\x00"
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", b"desc" + b"\x00" * 4 + struct.pack(">I", len(desc)) + desc + b"\x00" * (8 + 3 + 67)),
        (b"cprt", b"text" + b"\x00" * 4 + b"No copyright, test data\x00"),
        (b"wtpt", b"XYZ " + b"\x00" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249)),
    ]
    for sig, xyz in zip((b"rXYZ", b"gXYZ", b"bXYZ"), primaries, strict=True):
        tags.append((sig, b"XYZ " + b"\x00" * 4 + b"".join(s15(v) for v in xyz)))
    curve = b"curv" + b"\x00" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\x00\x00"
    tags.extend((sig, curve) for sig in (b"rTRC", b"gTRC", b"bTRC"))
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\x00" * (-len(body) % 4)
    size = 128 + table_size + len(data)
    header = (
        struct.pack(">I", size)
        + b"\x00" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\x00" * 24
        + struct.pack(">I", 0)  # perceptual
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\x00" * 48
    )
    assert len(header) == 128
    return header + table + data


ADOBE_RGB = matrix_profile(
    "Adobe RGB (1998) compatible test profile",
    ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457)),
    563 / 256,
)


def srgb_reference(pixels: npt.NDArray[Any], mode: str, profile: bytes) -> Pixels:
    """Pillow/LittleCMS: pixels in ``mode`` with ``profile`` -> 8-bit sRGB, relative colorimetric."""
    image = Image.fromarray(pixels, mode)
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    target = ImageCms.createProfile("sRGB")
    converted = ImageCms.profileToProfile(
        image,
        source,
        target,
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
    )
    assert converted is not None
    return np.asarray(converted, dtype=np.uint8)


def from_numpy(pixels: npt.NDArray[Any], interpretation: str) -> pyvips.Image:
    return pyvips.Image.new_from_array(pixels).copy(interpretation=interpretation)


def make_masters(folder: Path) -> dict[str, Master]:
    folder.mkdir(parents=True, exist_ok=True)
    masters: dict[str, Master] = {}

    # CMYK JPEG with an embedded CMYK profile (libvips' built-in one, as a press would supply).
    rgb = scene(900, 700, 1)
    cmyk = from_numpy(rgb, "srgb").icc_transform("cmyk", input_profile="srgb", intent="relative")
    cmyk.jpegsave(str(folder / "cmyk.jpg"), Q=97, subsample_mode="off")
    with Image.open(folder / "cmyk.jpg") as img:
        assert img.mode == "CMYK"
        masters["cmyk"] = Master("cmyk.jpg", srgb_reference(np.asarray(img), "CMYK", img.info["icc_profile"]))

    # Adobe RGB TIFF with its profile: the scene put into Adobe RGB by Pillow.
    adobe = ImageCms.profileToProfile(
        Image.fromarray(scene(800, 600, 2)),
        ImageCms.createProfile("sRGB"),
        ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_RGB)),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
    assert adobe is not None
    adobe_pixels = np.asarray(adobe, dtype=np.uint8)
    master = from_numpy(adobe_pixels, "srgb")
    master.set_type(pyvips.GValue.blob_type, "icc-profile-data", ADOBE_RGB)
    master.tiffsave(str(folder / "adobe-rgb.tif"), compression="deflate")
    masters["adobe"] = Master("adobe-rgb.tif", srgb_reference(adobe_pixels, "RGB", ADOBE_RGB))

    # 16-bit TIFF (no profile: sRGB by convention); values that are not multiples of 257.
    wide = scene(700, 500, 3).astype(np.uint16) * 257 + np.uint16(100)
    tifffile.imwrite(folder / "deep-16bit.tif", wide, photometric="rgb")
    masters["16bit"] = Master("deep-16bit.tif", np.clip(np.floor(wide / 256.0), 0, 255).astype(np.uint8))

    # PNG with alpha: a vertical ramp from transparent to opaque.
    rgb = scene(640, 480, 4)
    alpha = np.repeat(np.linspace(0, 255, 480).astype(np.uint8)[:, None], 640, axis=1)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / "alpha.png")
    a = alpha[..., None].astype(np.float32) / 255.0
    flat = rgb * a + np.array(BACKGROUND, np.float32) * (1.0 - a)
    masters["alpha"] = Master("alpha.png", np.clip(flat + 0.5, 0, 255).astype(np.uint8))

    # JPEG rotated by EXIF (orientation 6: the stored pixels are shown turned 90 degrees clockwise).
    stored = from_numpy(scene(600, 400, 5), "srgb").copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    stored.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Copyright", "CC BY 4.0, Test Museum")
    stored.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "A. Photographer")
    stored.jpegsave(str(folder / "rotated.jpg"), Q=97, subsample_mode="off")
    with Image.open(folder / "rotated.jpg") as img:
        assert img.getexif()[0x0112] == 6
        decoded = np.asarray(img.convert("RGB"), dtype=np.uint8)
    masters["rotated"] = Master("rotated.jpg", np.rot90(decoded, k=-1).copy())

    # A strip (untiled) TIFF over 20000 pixels wide, kept low to stay quick.
    strip = scene(20500, 300, 6)
    tifffile.imwrite(folder / "wide-strip.tif", strip, photometric="rgb", rowsperstrip=16)
    masters["strip"] = Master("wide-strip.tif", strip)
    return masters


def truncate(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def psnr(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def full_resolution(path: Path) -> Pixels:
    return np.asarray(pyvips.Image.tiffload(str(path), page=0).numpy(), dtype=np.uint8)


def assert_pyramid(path: Path, tile: int, width: int, height: int) -> None:
    """A tiled JPEG pyramid: every level tiled at ``tile``, halving down to one tile, 8-bit,
    with the sRGB profile embedded."""
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        assert len(pages) >= 2, "a pyramid has several levels"
        w, h = width, height
        for page in pages:
            assert isinstance(page, tifffile.TiffPage)
            assert page.is_tiled
            assert (page.tilewidth, page.tilelength) == (tile, tile)
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert page.bitspersample == 8
            assert page.samplesperpixel == 3
            assert (page.imagewidth, page.imagelength) == (w, h)
            w, h = max(1, w // 2), max(1, h // 2)  # libvips rounds each level down
        last = pages[-1]
        assert isinstance(last, tifffile.TiffPage)
        assert max(last.imagewidth, last.imagelength) <= tile, "the pyramid ends in one tile"
        first = pages[0]
        assert isinstance(first, tifffile.TiffPage)
        icc = first.tags["InterColorProfile"].value
    profile = ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc)))
    assert "srgb" in ImageCms.getProfileDescription(profile).lower()


def serve(images: Path, cache: Path, paths: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Ask a server built on ``images`` for each path, in-process."""
    app = create_app(Settings(images=images, cache=cache))

    async def run() -> list[tuple[int, dict[str, str], bytes]]:
        out = []
        try:
            for path in paths:
                status, headers, body = await call(app, path)
                out.append((status, {k.lower(): v for k, v in headers}, body))
        finally:
            await app.state.image_service.drain()
        return out

    return asyncio.run(run())


@pytest.fixture(scope="session")
def masters_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Master]]:
    folder = tmp_path_factory.mktemp("masters")
    return folder, make_masters(folder)
