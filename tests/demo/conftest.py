"""Test configuration for the demo image builder: the small demo set, built once for the session,
and what tells a pyramidal TIFF's structure apart."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import pyvips
import tifffile

from iiifserver.demo import build_demo
from iiifserver.demo.images.validator import VALIDATOR_ID

REPO = Path(__file__).resolve().parents[2]
VALIDATOR_PNG = f"{VALIDATOR_ID}.png"
VALIDATOR_TIF = f"{VALIDATOR_ID}.tif"


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; registering here keeps tests/demo self-contained
    # under --strict-markers.
    config.addinivalue_line("markers", "slow: builds large images or runs long (still part of the full suite)")


def _conformance_dir() -> Path | None:
    """Where the IIIF validator test image is: the bundled demo assets, else the tests' data copy."""
    for candidate in (REPO / "iiifserver" / "demo" / "assets", REPO / "tests" / "data" / "conformance"):
        if (candidate / VALIDATOR_PNG).is_file():
            return candidate
    return None


CONFORMANCE = _conformance_dir()
needs_validator_png = pytest.mark.skipif(
    CONFORMANCE is None, reason=f"{VALIDATOR_PNG} not found (iiifserver/demo/assets or tests/data/conformance)"
)


@dataclass(frozen=True, slots=True)
class Built:
    root: Path
    paths: list[Path]
    lines: list[str]
    threads_started: list[str]  # Python threads the build started from its own thread


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The demo set without the large panorama, built once for the session."""
    root = tmp_path_factory.mktemp("demo-images")
    lines: list[str] = []
    builder = threading.current_thread()
    started: list[str] = []
    original_start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        # Counted at the call, not by polling active_count(): threads of other tests may come
        # and go meanwhile, and a short-lived thread of the build could be gone by the end.
        if threading.current_thread() is builder:
            started.append(thread.name)
        original_start(thread)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", recording_start)
        paths = build_demo(root, CONFORMANCE, large=False, progress=lines.append)
    return Built(root, paths, lines, started)


def image_path(built: Built, name: str) -> Path:
    if name == VALIDATOR_TIF and CONFORMANCE is None:
        pytest.skip(f"{VALIDATOR_PNG} not found, so the validator image was not built")
    return built.root / name


def pyramid_levels(path: Path) -> list[pyvips.Image]:
    """Every pyramid level, full resolution first, whether stored as pages or SubIFDs."""
    first = pyvips.Image.new_from_file(str(path))
    if first.get_typeof("n-subifds") and first.get("n-subifds") > 0:
        subifds = first.get("n-subifds")
        return [first, *(pyvips.Image.new_from_file(str(path), subifd=i) for i in range(subifds))]
    pages = first.get("n-pages")
    return [pyvips.Image.new_from_file(str(path), page=i) for i in range(pages)]


def sample_crops(image: pyvips.Image, size: int = 256) -> list[pyvips.Image]:
    """A 3x3 grid of size x size crops spread over the image."""
    return [
        image.crop(int(fx * (image.width - size)), int(fy * (image.height - size)), size, size)
        for fy in (0.1, 0.5, 0.85)
        for fx in (0.1, 0.5, 0.85)
    ]


@dataclass(frozen=True, slots=True)
class TiffLayout:
    """What the first IFD of a TIFF says about its storage."""

    bigtiff: bool
    compression: str  # tifffile's names: JPEG, LZW, ADOBE_DEFLATE, ...
    photometric: str  # RGB, YCBCR, MINISBLACK, ...
    first_tile: bytes  # the stored bytes of tile 0


def tiff_layout(path: Path) -> TiffLayout:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        with path.open("rb") as fh:
            fh.seek(page.dataoffsets[0])
            first_tile = fh.read(page.databytecounts[0])
        return TiffLayout(
            bigtiff=tif.is_bigtiff,
            compression=tifffile.COMPRESSION(page.compression).name,
            photometric=tifffile.PHOTOMETRIC(page.photometric).name,
            first_tile=first_tile,
        )
