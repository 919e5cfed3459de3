"""Converted images -> an object description (``manifests/NAME.yaml``) for the Presentation API.

Owns: the check that the outputs lie inside the image root, image identifiers (the path
relative to the image root, ``/``-separated, without ``.tif``), page order (natural: page-2
before page-10), page labels (the file name without extension), the object name's rules, and
writing the YAML atomically, never over an existing description unless forced. The format
itself belongs to ``presentation/``:

    label: {none: ["NAME"]}
    pages:
      - image: "some/folder/page-001"
        label: {none: ["page-001"]}

Must not know: pyvips, how images are converted, HTTP.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from iiifserver.ingest.plan import natural_key

DESCRIPTION_SUFFIX = ".yaml"
_NAME_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DescriptionError(ValueError):
    """The object description cannot be written (a usage error: bad name, wrong folders, exists)."""


def check_name(name: str) -> str:
    """An object name: ``/``-separated segments of letters, digits, ``.``, ``_``, ``-``."""
    segments = name.split("/")
    if not all(_NAME_SEGMENT.fullmatch(s) and s not in {".", ".."} for s in segments):
        raise DescriptionError(f"object name {name!r}: use letters, digits, '.', '_' and '-' (and '/' between folders)")
    return name


def check_inside(out_dir: Path, images_root: Path) -> None:
    """The output folder must lie in the image root, or the images would have no identifiers."""
    out_real, root_real = Path(os.path.realpath(out_dir)), Path(os.path.realpath(images_root))
    if not out_real.is_relative_to(root_real):
        raise DescriptionError(
            f"--object needs the output folder ({out_dir}) inside the image root ({images_root}); "
            "set --images or --out accordingly"
        )


def identifier(output: Path, images_root: Path) -> str:
    relative = Path(os.path.realpath(output)).relative_to(os.path.realpath(images_root))
    return PurePosixPath(*relative.parts).with_suffix("").as_posix()


def description(name: str, identifiers: Iterable[str]) -> dict[str, Any]:
    pages = [
        {"image": ident, "label": {"none": [PurePosixPath(ident).name]}}
        for ident in sorted(identifiers, key=natural_key)
    ]
    return {"label": {"none": [name]}, "pages": pages}


def write_description(manifests: Path, name: str, outputs: Iterable[Path], images_root: Path, *, force: bool) -> Path:
    """Write ``manifests/NAME.yaml`` listing ``outputs`` as pages; return its path."""
    path = manifests / f"{check_name(name)}{DESCRIPTION_SUFFIX}"
    if path.exists() and not force:
        raise DescriptionError(f"{path} exists; --force replaces it")
    content = description(name, (identifier(o, images_root) for o in outputs))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
