"""Converted images -> an object description (``manifests/NAME.yaml``) for the Presentation API.

Owns: the check that the outputs lie inside the image root, image identifiers (the path
relative to the image root, ``/``-separated, without ``.tif``), page order (natural: page-2
before page-10), page labels (the file name without extension), the object name's rules,
writing the YAML atomically, never over an existing description unless forced, and adding new
pages to an existing description (``add_pages``: in natural order among the pages listed, the
rest of the file, comments included, kept as the user wrote it). The format itself belongs to
``presentation/``:

    label: {none: ["NAME"]}
    pages:
      - image: "some/folder/page-001"
        label: {none: ["page-001"]}

Must not know: pyvips, how images are converted, HTTP.
"""

from __future__ import annotations

import json
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


def description_path(manifests: Path, name: str) -> Path:
    return manifests / f"{check_name(name)}{DESCRIPTION_SUFFIX}"


def write_description(manifests: Path, name: str, outputs: Iterable[Path], images_root: Path, *, force: bool) -> Path:
    """Write ``manifests/NAME.yaml`` listing ``outputs`` as pages; return its path."""
    path = description_path(manifests, name)
    if path.exists() and not force:
        raise DescriptionError(f"{path} exists; --force replaces it")
    content = description(name, (identifier(o, images_root) for o in outputs))
    _write(path, yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    return path


def add_pages(manifests: Path, name: str, outputs: Iterable[Path], images_root: Path) -> tuple[Path, list[str]]:
    """Add the images of ``outputs`` that ``manifests/NAME.yaml`` does not list yet as pages; return
    its path and the identifiers added.

    Each new page goes after the last listed page that sorts before it (natural order), so a book
    in page order stays in page order and an order the user chose is kept. The file is edited as
    text, so every other line (labels, metadata, ranges, comments) stays as written; only a page
    list in flow style (``pages: [a, b]``) is rewritten as a whole. A description without
    ``pages`` publishes its folder's images, new ones included: nothing is added.
    """
    path = description_path(manifests, name)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DescriptionError(f"{path} cannot be read ({exc}); fix it, or --force replaces it") from None
    if not isinstance(data, dict):
        raise DescriptionError(f"{path} is not a description (a mapping); fix it, or --force replaces it")
    if "pages" not in data:
        return path, []
    pages = data["pages"]
    if not isinstance(pages, list):
        raise DescriptionError(f"{path}: 'pages' is not a list; fix it, or --force replaces it")
    listed = [_image_of(page) for page in pages]
    new = sorted({identifier(o, images_root) for o in outputs} - set(listed), key=natural_key)
    if not new:
        return path, []
    # Insert each after the last listed page that sorts before it.
    order: list[tuple[int, str]] = []  # (number of listed pages before it, identifier)
    for ident in new:
        before = [i for i, image in enumerate(listed) if image is not None and natural_key(image) < natural_key(ident)]
        order.append((before[-1] + 1 if before else 0, ident))
    if any(position < len(listed) for position, _ in order) and _numbers_pages(data):
        raise DescriptionError(
            f"{path} refers to pages by number (ranges or thumbnail) and the new pages "
            f"({', '.join(new)}) would go between them, changing those numbers: the images are converted; "
            "add them to the description by hand (or refer to pages by image), or --force rewrites it"
        )
    expected = list(listed)
    for offset, (position, ident) in enumerate(order):
        expected.insert(position + offset, ident)
    edited = _insert_as_text(text, order)
    if edited is None or [_image_of(p) for p in (yaml.safe_load(edited) or {}).get("pages", ())] != expected:
        data["pages"] = list(pages)
        for offset, (position, ident) in enumerate(order):
            data["pages"].insert(position + offset, _page(ident))
        edited = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    _write(path, edited)
    return path, new


_PAGE_NUMBERS = re.compile(r"[\d\s,\-]+")


def _numbers_pages(data: dict[str, Any]) -> bool:
    """Whether the description refers to pages by number (``thumbnail: 3``, a range's ``pages: 2-5``)."""
    thumbnail = data.get("thumbnail")
    if isinstance(thumbnail, int) or (isinstance(thumbnail, dict) and "page" in thumbnail):
        return True

    def numbered(ranges: Any) -> bool:
        for item in ranges if isinstance(ranges, list) else ():
            if not isinstance(item, dict):
                continue
            refs = item.get("pages")
            refs = refs if isinstance(refs, list) else [refs]
            if any(isinstance(r, int) or (isinstance(r, str) and _PAGE_NUMBERS.fullmatch(r)) for r in refs):
                return True
            if numbered(item.get("ranges")):
                return True
        return False

    return numbered(data.get("ranges"))


def _image_of(page: Any) -> str | None:
    if isinstance(page, str):
        return page
    if isinstance(page, dict) and isinstance(page.get("image"), str):
        return str(page["image"])
    return None


def _page(ident: str) -> dict[str, Any]:
    return {"image": ident, "label": {"none": [PurePosixPath(ident).name]}}


def _insert_as_text(text: str, order: list[tuple[int, str]]) -> str | None:
    """``text`` with the new page entries inserted as lines into its block-style page list, or None
    when it has none to insert into."""
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return None
    items = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "pages"), None)
    if not isinstance(items, yaml.SequenceNode) or items.flow_style or not items.value:
        return None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    first = items.value[0].start_mark
    head = lines[first.line][: first.column].rstrip()
    if not head.endswith("-"):
        return None
    indent = " " * (len(head) - 1)
    inserts: dict[int, list[str]] = {}
    for position, ident in order:
        if position < len(items.value):  # on the line of the page it goes before
            line = items.value[position].start_mark.line
        else:  # after the last page, which ends where the next token (key or end) starts
            end = items.value[-1].end_mark
            line = end.line + 1 if end.column > 0 else end.line
        label = json.dumps([PurePosixPath(ident).name], ensure_ascii=False)
        entry = f"{indent}- image: {json.dumps(ident, ensure_ascii=False)}\n{indent}  label: {{none: {label}}}\n"
        inserts.setdefault(line, []).append(entry)
    out: list[str] = []
    for number, line_text in enumerate(lines):
        out.extend(inserts.pop(number, ()))
        out.append(line_text)
    for remaining in sorted(inserts):
        out.extend(inserts[remaining])
    return "".join(out)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
