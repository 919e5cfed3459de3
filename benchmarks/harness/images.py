"""Deterministic benchmark images: painting-like pyramidal TIFFs with 256x256 JPEG tiles.

    python -m benchmarks.harness.images --out DIR --size big                     # Q90 RGB 4:4:4
    python -m benchmarks.harness.images --out DIR --size big --quality 85 --aliases 40
    python -m benchmarks.harness.images --out DIR --size giga --size 10mp --quality 85
    python -m benchmarks.harness.images --out DIR --size big --quality 85 --aliases 150 --copies   # distinct files

Sizes: ``big`` 12000x9000 (7 levels), ``small`` 4000x3000, ``giga`` 40000x25000 (1 gigapixel,
9 levels) and ``10mp`` 4000x2500. ``giga`` is the ``10mp`` picture mirrored 10 x 10 (seamless)
under a slow light and colour drift, so no two of its tiles are alike but their texture, hence
per-tile decode and encode cost, is the 10-megapixel image's: the pair measures cost against image
size alone.

The picture: colour fields of multi-octave Perlin noise in CIELAB, directional brush strokes,
ridged crack lines, a canvas weave, grain, soft shapes and a light falloff. All noise is seeded
(``--seed``), so one libvips version always writes the same pixels.

Stored JPEG: libvips writes YCbCr 4:2:0 tiles below Q90 and RGB 4:4:4 tiles from Q90 (the two
layouts the benchmark compares: ``artwork_big.tif`` Q90 and ``artwork_big_q85.tif`` Q85).

Aliases (``--aliases N``): ``<stem>_00.tif`` ... give a cold run more distinct identifiers than one
image has tiles. Symlinks by default (one file: what the side-by-side used before issue 17, and
what the gigapixel pair still uses); ``--copies`` makes real copies instead (their own inode, size
and mtime: a real collection of distinct files, each opened, probed and read on its own), at the
cost of N times the disk space. Copies are made once and kept: a later run reuses every copy
whose size matches its source and which is not older than it, replaces symlinks of the same name,
and removes the symlink aliases past N (nothing uses them, and a server scanning its image folder
would walk them). ``copies_missing_bytes`` says what a run would still have to write.

Owns the picture, the file names and the alias layout; knows nothing of servers or load.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

SIZES: dict[str, tuple[int, int]] = {
    "big": (12000, 9000),
    "small": (4000, 3000),
    "giga": (40000, 25000),
    "10mp": (4000, 2500),
}
BLOCK = SIZES["10mp"]  # the picture giga repeats
DEFAULT_SEED = 1821
DISK_MARGIN = 2 * 10**9  # left free when making copies
TILE = 256


def stem(size: str, quality: int = 90) -> str:
    """File stem: ``artwork_big`` at the default Q90, else ``artwork_big_q85``."""
    return f"artwork_{size}" if quality == 90 else f"artwork_{size}_q{quality}"


def alias_names(size: str, quality: int, count: int) -> list[str]:
    """The identifiers of the aliases, in order: ``artwork_big_q85_00.tif`` ..."""
    return [f"{stem(size, quality)}_{i:02d}.tif" for i in range(count)]


def count_aliases(images: Path, size: str, quality: int) -> int:
    """How many consecutive aliases exist, from ``_00``."""
    n = 0
    while (images / f"{stem(size, quality)}_{n:02d}.tif").exists():
        n += 1
    return n


def read_once(images: Path, names: list[str]) -> int:
    """Read each file once, so that a run starts with its images in the page cache; the bytes read.

    Some VMs page out file pages nobody read for about a minute (DAMON-driven reclaim): a run that
    did not read its files just before would measure the virtual disk, and whichever server ran
    second would find fewer of them cached. Called just before each server's run, for every server.
    """
    total = 0
    for name in dict.fromkeys(names):
        try:
            with (images / name).open("rb") as fh:
                while chunk := fh.read(1 << 23):
                    total += len(chunk)
        except FileNotFoundError:
            continue
    return total


# ---------------------------------------------------------------- the picture (pyvips)


def _noise(vips: Any, w: int, h: int, cells: list[int], seed: int) -> Any:
    """Sum of Perlin octaves (-1..1 roughly); coarse octaves are made small and enlarged (cheap)."""
    total: Any = None
    weight = 1.0
    for k, cell in enumerate(cells):
        shrink = max(1, min(16, cell // 32))
        octave = vips.Image.perlin(
            -(-w // shrink), -(-h // shrink), cell_size=max(2, cell // shrink), seed=seed * 31 + k
        )
        if shrink > 1:
            octave = octave.resize(shrink, kernel="linear").crop(0, 0, w, h)
        total = octave * weight if total is None else total + octave * weight
        weight *= 0.5
    return total * 1.6


def _strokes(vips: Any, w: int, h: int, seed: int, horizontal: bool) -> Any:
    """Brush strokes: noise stretched 32 times along one axis."""
    if horizontal:
        small = vips.Image.gaussnoise(-(-w // 32) + 1, -(-h // 2) + 1, sigma=1.0, mean=0.0, seed=seed)
        return small.resize(32, vscale=2, kernel="linear").crop(0, 0, w, h)
    small = vips.Image.gaussnoise(-(-w // 2) + 1, -(-h // 32) + 1, sigma=1.0, mean=0.0, seed=seed)
    return small.resize(2, vscale=32, kernel="linear").crop(0, 0, w, h)


def _shapes(vips: Any, w: int, h: int, seed: int) -> tuple[Any, Any]:
    """Soft ellipses and bars (colour, alpha 0..1), drawn at 1/8 and enlarged."""
    rng = random.Random(seed)
    sw, sh = -(-w // 8), -(-h // 8)
    colour = vips.Image.black(sw, sh, bands=3)
    alpha = vips.Image.black(sw, sh)
    for _ in range(60):
        ink = [rng.randint(30, 225) for _ in range(3)]
        x, y, r = rng.randrange(sw), rng.randrange(sh), rng.randint(2 + sw // 80, 2 + sw // 10)
        if rng.random() < 0.5:
            colour = colour.draw_circle(ink, x, y, r, fill=True)
            alpha = alpha.draw_circle([1], x, y, r, fill=True)
        else:
            bh = rng.randint(1 + r // 3, 1 + r)
            colour = colour.draw_rect(ink, x - r, y - bh // 2, 2 * r, bh, fill=True)
            alpha = alpha.draw_rect([1], x - r, y - bh // 2, 2 * r, bh, fill=True)
    colour = colour.gaussblur(1.5).resize(8, kernel="linear").crop(0, 0, w, h)
    alpha = alpha.cast("float").gaussblur(2.5).resize(8, kernel="linear").crop(0, 0, w, h)
    return colour, alpha


def artwork(w: int, h: int, seed: int) -> Any:
    """The w x h picture as an 8-bit sRGB pyvips image (lazy: computed while it is saved)."""
    import pyvips

    lightness = _noise(pyvips, w, h, [1800, 600, 150, 40, 10], seed + 1)
    green_red = _noise(pyvips, w, h, [2000, 700, 200], seed + 2)
    blue_yellow = _noise(pyvips, w, h, [1600, 500, 120], seed + 3)
    choose = _noise(pyvips, w, h, [900, 300], seed + 4) > 0
    strokes = choose.ifthenelse(
        _strokes(pyvips, w, h, seed + 5, horizontal=True), _strokes(pyvips, w, h, seed + 6, horizontal=False)
    )
    ridge = 1.0 - _noise(pyvips, w, h, [120, 30], seed + 7).abs()  # 1 on the zero lines of the field
    cracks = (ridge > 0.97).ifthenelse(1.0, 0.0).gaussblur(0.7)
    xy = pyvips.Image.xyz(w, h)
    weave = (xy[0] * (360.0 / 6.0)).sin() * (xy[1] * (360.0 / 6.0)).sin()
    grain = pyvips.Image.gaussnoise(w, h, sigma=1.0, mean=0.0, seed=seed + 8)
    falloff = 1.0 - 0.25 * (((xy[0] - w * 0.5) / w) ** 2 + ((xy[1] - h * 0.45) / h) ** 2) * 4
    texture = 4.0 * strokes + 0.8 * weave + 2.0 * grain
    lab_l = (50 + 20 * lightness + texture) * falloff - 25 * cracks
    lab = lab_l.bandjoin([12 + 20 * green_red + 1.5 * strokes, 20 + 24 * blue_yellow - 1.5 * strokes])
    ground = lab.copy(interpretation="lab").colourspace("srgb")
    colour, alpha = _shapes(pyvips, w, h, seed + 9)
    shapes = colour * (1.0 + 0.012 * texture - 0.3 * cracks)
    mix = alpha * 0.65
    return (ground * (1.0 - mix) + shapes * mix).cast("uchar")


def gigapixel(w: int, h: int, seed: int) -> Any:
    """The BLOCK picture mirrored over w x h, under a slow light and colour drift."""
    import pyvips

    bw, bh = BLOCK
    block = artwork(bw, bh, seed).copy_memory()
    flipped = {(0, 0): block, (1, 0): block.fliphor().copy_memory()}
    flipped[(0, 1)] = block.flipver().copy_memory()
    flipped[(1, 1)] = flipped[(1, 0)].flipver().copy_memory()
    across, down = -(-w // bw), -(-h // bh)
    canvas = pyvips.Image.arrayjoin(
        [flipped[(i % 2, j % 2)] for j in range(down) for i in range(across)], across=across
    ).crop(0, 0, w, h)
    step = 250  # the drift is computed at 1/250 and enlarged
    light = pyvips.Image.perlin(w // step + 2, h // step + 2, cell_size=32, seed=seed + 20)
    tint = pyvips.Image.perlin(w // step + 2, h // step + 2, cell_size=48, seed=seed + 21)
    drift = (1.0 + 0.3 * light - 0.1 * tint).bandjoin([1.0 + 0.3 * light, 1.0 + 0.3 * light + 0.1 * tint])
    drift = drift.resize(step, kernel="linear").crop(0, 0, w, h)
    return (canvas * drift).cast("uchar")


def save_pyramid(image: Any, path: Path, quality: int) -> None:
    """Tiled pyramidal TIFF with JPEG tiles, written to a temporary name and renamed."""
    part = path.with_name(path.name + ".part.tif")
    image.tiffsave(
        str(part), tile=True, pyramid=True, compression="jpeg", Q=quality, tile_width=TILE, tile_height=TILE, strip=True
    )
    os.replace(part, path)


def make(out: Path, size: str, quality: int = 90, seed: int = DEFAULT_SEED, force: bool = False) -> Path:
    """Write the pyramid unless it exists (or force); returns its path."""
    path = out / f"{stem(size, quality)}.tif"
    if path.exists() and not force:
        return path
    out.mkdir(parents=True, exist_ok=True)
    w, h = SIZES[size]
    # giga and 10mp share their seed: giga is the 10mp picture repeated
    base = seed + {"big": 0, "small": 100, "giga": 200, "10mp": 200}[size]
    save_pyramid(gigapixel(w, h, base) if size == "giga" else artwork(w, h, base), path, quality)
    return path


def is_copy_of(alias: Path, path: Path) -> bool:
    """A real file (not a symlink) with the size of path and not older than it: an up-to-date copy."""
    if alias.is_symlink() or not alias.is_file():
        return False
    st, src = alias.stat(), path.stat()
    return st.st_size == src.st_size and st.st_mtime >= src.st_mtime


def count_copies(images: Path, size: str, quality: int) -> int:
    """How many consecutive aliases from ``_00`` are up-to-date real copies of their pyramid."""
    source = images / f"{stem(size, quality)}.tif"
    if not source.exists():
        return 0
    n = 0
    while is_copy_of(images / f"{stem(size, quality)}_{n:02d}.tif", source):
        n += 1
    return n


def copies_missing_bytes(images: Path, size: str, quality: int, count: int) -> int:
    """Bytes that making ``count`` copies would still write (the pyramid itself must exist)."""
    source = images / f"{stem(size, quality)}.tif"
    missing = sum(1 for i in range(count) if not is_copy_of(images / f"{stem(size, quality)}_{i:02d}.tif", source))
    return missing * source.stat().st_size


def make_aliases(path: Path, count: int, copies: bool = False) -> list[Path]:
    """``<stem>_NN.tif`` for NN < count next to path: symlinks, or real copies. Up-to-date ones are kept."""
    made = []
    wrote = False
    for i in range(count):
        alias = path.with_name(f"{path.stem}_{i:02d}.tif")
        made.append(alias)
        if alias.is_symlink() and not copies and os.readlink(alias) == path.name:
            continue
        if copies and is_copy_of(alias, path):
            continue
        if alias.is_symlink() or alias.exists():
            alias.unlink()
        if copies:
            shutil.copyfile(path, alias.with_name(alias.name + ".part"))
            os.replace(alias.with_name(alias.name + ".part"), alias)
            wrote = True
        else:
            alias.symlink_to(path.name)  # relative: the folder may move
    if copies:
        i = count
        while (extra := path.with_name(f"{path.stem}_{i:02d}.tif")).is_symlink():
            extra.unlink()  # the links of earlier runs past the copies: unused
            i += 1
    if wrote:
        os.sync()  # written back now, not by the kernel during the first measured run
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="image folder")
    ap.add_argument("--size", choices=sorted(SIZES), action="append", required=True, help="repeatable")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the stored tiles (default 90)")
    ap.add_argument("--aliases", type=int, default=0, help="also N aliases <stem>_NN.tif of each image")
    ap.add_argument("--copies", action="store_true", help="aliases are real copies, not symlinks")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--force", action="store_true", help="rewrite existing images")
    args = ap.parse_args(argv)
    for size in dict.fromkeys(args.size):
        t0 = time.monotonic()
        path = make(args.out, size, args.quality, args.seed, args.force)
        if args.copies:
            need = copies_missing_bytes(args.out, size, args.quality, args.aliases)
            free = shutil.disk_usage(args.out).free
            if need and need > free - DISK_MARGIN:
                print(
                    f"{args.aliases} copies of {path.name} need {need / 1e9:.1f} GB more; {free / 1e9:.1f} GB free "
                    f"(keeping {DISK_MARGIN / 1e9:.0f} GB): make room or ask for fewer",
                    file=sys.stderr,
                )
                return 1
        made = make_aliases(path, args.aliases, args.copies)
        print(
            f"{path}: {path.stat().st_size / 1e6:.1f} MB, JPEG Q{args.quality}"
            + (f", {len(made)} {'copies' if args.copies else 'symlinks'}" if made else "")
            + f" ({time.monotonic() - t0:.1f} s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
