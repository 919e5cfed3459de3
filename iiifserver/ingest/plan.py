"""Which masters become which pyramids, and whether a pyramid needs making.

Owns: the conversion options and their fingerprint, finding masters in the files and folders
given, output naming (relative path kept, ``.tif``), name collisions, the natural sort order,
the up-to-date rule (a decision over stat values and a stamp, see ``stamp.py``), the per-file
memory estimate and admission against the memory budget, and the BigTIFF decision.
Pure apart from ``discover``, which only lists folders. Must not know: pyvips, HTTP, settings.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

# Bump when the pipeline changes what it writes: every output then counts as stale.
CONVERT_VERSION = 1
OUTPUT_SUFFIX = ".tif"
MASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".j2k", ".jpx", ".jpf"})
TILE_SIZES = (256, 512)
DEFAULT_QUALITY = 85
DEFAULT_MEMORY_BUDGET_MB = 2048

# A classic TIFF addresses at most 4 GiB. The raw RGB pyramid (4/3 of the full level) bounds a
# JPEG pyramid's size; the margin covers JPEG at high quality on noise-like pixels.
_CLASSIC_TIFF_LIMIT = 0.9 * 2**32
_JPEG_MARGIN = 1.25

# Memory per conversion: the interpreter and libvips, then rows in flight. A pyramid writer
# keeps about two tile rows per level (a geometric sum under twice the first) and the loader a
# few more; four tile rows of the widest level covers both. A master read out of order (EXIF
# rotation) is decoded whole first; libvips decodes to a temporary file beyond 100 MiB.
_PROCESS_BYTES = 96 * 2**20
_TILE_ROWS_IN_FLIGHT = 4
_DECODE_IN_MEMORY_LIMIT = 100 * 2**20


class BigTiff(enum.Enum):
    AUTO = "auto"
    YES = "yes"
    NO = "no"


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    quality: int = DEFAULT_QUALITY
    tile_size: int = 256
    background: tuple[int, int, int] = (255, 255, 255)
    bigtiff: BigTiff = BigTiff.AUTO

    def fingerprint(self) -> str:
        """Everything that changes the output file; recorded in each output's stamp."""
        bg = ",".join(str(v) for v in self.background)
        return f"v{CONVERT_VERSION};q={self.quality};tile={self.tile_size};bg={bg};bigtiff={self.bigtiff.value}"


@dataclass(frozen=True, slots=True)
class Found:
    """A master and the path its output keeps: relative to the folder given, or its name."""

    source: Path
    relative: PurePath


@dataclass(frozen=True, slots=True)
class Job:
    source: Path
    output: Path
    name: str  # what the user calls the master: the relative path, for messages
    # Where the output is published, an s3:// object URL; empty: ``output`` is the final place.
    # With a destination, ``output`` is the staging file it is made in first (``publish.py``).
    destination: str = ""

    @property
    def target(self) -> str:
        """Where the pyramid ends up, for messages: the object URL or the output path."""
        return self.destination or str(self.output)


@dataclass(frozen=True, slots=True)
class Refused:
    source: Path
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Header:
    """What conversion needs to know of a master before decoding it."""

    width: int
    height: int
    bands: int
    sample_bytes: int
    out_of_order: bool  # EXIF orientation other than 1: decoded whole before writing

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


@dataclass(frozen=True, slots=True)
class FileState:
    """The stat values the up-to-date rule compares."""

    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Stamp:
    """What an output records about how it was made (see ``stamp.py`` for the file)."""

    source: str
    source_size: int
    source_mtime_ns: int
    fingerprint: str
    output_size: int
    output_mtime_ns: int


def parse_background(text: str) -> tuple[int, int, int]:
    """``#rrggbb``, ``#rgb`` or ``r,g,b`` (0-255). Raises ``ValueError``."""
    text = text.strip()
    if text.startswith("#"):
        digits = text[1:]
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        if len(digits) != 6 or not re.fullmatch(r"[0-9a-fA-F]{6}", digits):
            raise ValueError(f"background {text!r}: expected #rrggbb")
        r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
        return (r, g, b)
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise ValueError(f"background {text!r}: expected #rrggbb or r,g,b with values 0-255")
    r, g, b = (int(p) for p in parts)
    return (r, g, b)


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key putting page-2 before page-10; case-insensitive, ties broken by the exact text."""
    parts = re.split(r"(\d+)", text)
    key = [(0, int(p), p) if p.isdigit() else (1, 0, p.casefold()) for p in parts if p]
    return (*key, (2, 0, text))


def discover(paths: Iterable[Path], out_dir: Path) -> list[Found]:
    """Masters in the files and folders given, folders walked recursively, in natural order.

    A file named directly is taken whatever its extension; in folders, only master extensions
    count, hidden files and folders are skipped, and so is the output folder when it lies inside
    (a second run must not take last run's outputs as masters).
    """
    out_real = os.path.realpath(out_dir)
    found: list[Found] = []
    for path in paths:
        if not path.is_dir():
            found.append(Found(path, PurePath(path.name)))
            continue
        in_folder: list[Found] = []
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.realpath(Path(folder, d)) != out_real]
            for name in files:
                if name.startswith(".") or Path(name).suffix.lower() not in MASTER_SUFFIXES:
                    continue
                source = Path(folder, name)
                in_folder.append(Found(source, PurePath(os.path.relpath(source, path))))
        found.extend(sorted(in_folder, key=lambda f: natural_key(f.relative.as_posix())))
    return found


def plan_outputs(found: Sequence[Found], out_dir: Path, destination: str = "") -> tuple[list[Job], list[Refused]]:
    """Output path for each master; masters whose outputs collide are refused, all of them.

    ``destination``: an ``s3://BUCKET/PREFIX`` the outputs are published under (the same
    relative names); ``out_dir`` is then the staging folder they are made in."""
    by_output: dict[Path, list[Found]] = {}
    for item in found:
        output = out_dir / item.relative.with_suffix(OUTPUT_SUFFIX)
        by_output.setdefault(output, []).append(item)
    jobs: list[Job] = []
    refused: list[Refused] = []
    for output, items in by_output.items():
        names = [item.relative.as_posix() for item in items]
        if len({os.path.realpath(item.source) for item in items}) > 1:
            reason = f"name collision: {' and '.join(names)} would all become {output.name}; rename one"
            refused.extend(Refused(item.source, name, reason) for item, name in zip(items, names, strict=True))
            continue
        item = items[0]
        if os.path.realpath(item.source) == os.path.realpath(output):
            refused.append(Refused(item.source, names[0], "the output would overwrite its own master"))
            continue
        url = f"{destination.rstrip('/')}/{output.relative_to(out_dir).as_posix()}" if destination else ""
        jobs.append(Job(item.source, output, names[0], url))
    jobs.sort(key=lambda j: natural_key(j.name))
    return jobs, refused


def is_up_to_date(
    source: str, source_state: FileState, output_state: FileState | None, stamp: Stamp | None, fingerprint: str
) -> bool:
    """An output is up to date when it exists, is not older than its master, and its stamp
    names this master (path, size, modification time), these settings, and this very output
    file (size, modification time: an output replaced by other means is made again)."""
    if output_state is None or stamp is None:
        return False
    return (
        output_state.mtime_ns >= source_state.mtime_ns
        and stamp.source == source
        and (stamp.source_size, stamp.source_mtime_ns) == (source_state.size, source_state.mtime_ns)
        and stamp.fingerprint == fingerprint
        and (stamp.output_size, stamp.output_mtime_ns) == (output_state.size, output_state.mtime_ns)
    )


def memory_estimate(header: Header, tile_size: int) -> int:
    """Bytes one conversion of this master may hold at its peak (an estimate, on the high side)."""
    row_bytes = header.width * (header.bands * header.sample_bytes + 3)
    estimate = _PROCESS_BYTES + row_bytes * tile_size * _TILE_ROWS_IN_FLIGHT
    if header.out_of_order:
        whole = header.width * header.height * header.bands * header.sample_bytes
        estimate += min(whole, _DECODE_IN_MEMORY_LIMIT)
    return estimate


def admit(estimate: int, in_flight: int, running: int, budget: int, max_jobs: int) -> bool:
    """May one more conversion start? Always when none runs (a master larger than the budget
    is still converted, alone); else while under the job count and within the budget."""
    if running == 0:
        return True
    return running < max_jobs and in_flight + estimate <= budget


def use_bigtiff(mode: BigTiff, width: int, height: int) -> bool:
    if mode is not BigTiff.AUTO:
        return mode is BigTiff.YES
    raw_pyramid = width * height * 3 * 4 / 3
    return raw_pyramid * _JPEG_MARGIN > _CLASSIC_TIFF_LIMIT
