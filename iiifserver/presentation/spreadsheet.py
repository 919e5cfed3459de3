"""CSV spreadsheets -> raw object descriptions (the same mappings a YAML file holds).

Owns: the documented columns and how rows group into objects: one row per object, or one row
per page (rows sharing an ``object`` value, in file order). Object-level columns may be repeated
on every page row or given once; two different values for one object are an error.
Must not know: files, images, HTTP. The mappings go through ``description.parse_object``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from iiifserver.presentation.description import DescriptionError

ATTRIBUTION_LABEL = {"en": ["Attribution"], "fr": ["Attribution"], "nl": ["Naamsvermelding"]}
# Column -> description field, for the columns that are plain text (``@lang`` suffix allowed on
# the ones marked True: their value then goes into that language).
_TEXT_COLUMNS: dict[str, tuple[str, bool]] = {
    "label": ("label", True),
    "summary": ("summary", True),
    "attribution": ("attribution", True),
    "provider": ("provider", True),
    "provider_homepage": ("provider_homepage", False),
    "provider_logo": ("provider_logo", False),
    "rights": ("rights", False),
    "homepage": ("homepage", False),
    "see_also": ("seeAlso", False),
    "nav_date": ("navDate", False),
    "behavior": ("behavior", False),
    "viewing_direction": ("viewingDirection", False),
    "collection": ("collection", False),
    "thumbnail": ("thumbnail", False),
}
_PAGE_COLUMNS = {"image": False, "page_label": True}
_HEADER = re.compile(r"(?P<name>[A-Za-z_]+)(?:@(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*))?", re.ASCII)
_METADATA = re.compile(r"metadata:(?P<label>[^@]+?)(?:@(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    kind: str  # "object", a field name, "metadata" or a page field
    language: str = "none"
    metadata_label: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SheetObject:
    object_id: str
    first_row: int  # 1-based line of its first row, for messages
    raw: dict[str, Any] | None
    error: DescriptionError | None


def read_sheet(text: str, source: str) -> tuple[list[SheetObject], list[DescriptionError]]:
    """CSV text -> one raw description (or error) per object, plus errors that belong to no object."""
    sample = text.lstrip("\ufeff")
    # The delimiter is the one the header row uses most (headers hold no delimiters themselves);
    # csv.Sniffer guesses wrong on Excel's French and Dutch exports (";" with CRLF and quotes).
    first_line = sample.split("\n", 1)[0]
    delimiter = max(",;\t", key=lambda d: (first_line.count(d), d == ","))
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return [], [DescriptionError(source, "", "the spreadsheet is empty")]
    except csv.Error as exc:
        return [], [DescriptionError(source, "", f"not a readable CSV file ({exc})")]
    try:
        columns = [parse_header(h.strip(), source) for h in header]
    except DescriptionError as exc:
        return [], [exc]
    duplicates = sorted({c.header for c in columns if [d.header for d in columns].count(c.header) > 1})
    if duplicates:
        return [], [DescriptionError(source, duplicates[0], "the column appears twice")]
    if not any(c.kind == "object" for c in columns):
        return [], [DescriptionError(source, "object", "the spreadsheet needs an 'object' column")]

    groups: dict[str, list[tuple[int, dict[Column, str]]]] = {}
    loose: list[DescriptionError] = []
    try:
        line_end = reader.line_num
        for row in reader:
            line, line_end = line_end + 1, reader.line_num  # a quoted cell may span lines: where it starts
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(columns):
                loose.append(DescriptionError(f"{source} line {line}", "", "more cells than columns"))
                continue
            cells = {col: cell.strip() for col, cell in zip(columns, row, strict=False)}
            object_id = next((v for c, v in cells.items() if c.kind == "object"), "")
            if not object_id:
                loose.append(DescriptionError(f"{source} line {line}", "object", "is required"))
                continue
            groups.setdefault(object_id, []).append((line, cells))
    except csv.Error as exc:
        loose.append(DescriptionError(f"{source} line {reader.line_num}", "", f"not a readable CSV row ({exc})"))
    out = []
    for object_id, rows in groups.items():
        try:
            out.append(SheetObject(object_id, rows[0][0], _object(rows, source), None))
        except DescriptionError as exc:
            out.append(SheetObject(object_id, rows[0][0], None, exc))
    return out, loose


def parse_header(header: str, source: str) -> Column:
    if header == "object":
        return Column(header, "object")
    meta = _METADATA.fullmatch(header)
    if meta:
        return Column(header, "metadata", meta["lang"] or "none", _metadata_label(meta["label"], header, source))
    match = _HEADER.fullmatch(header)
    if match:
        name, lang = match["name"], match["lang"]
        if name in _TEXT_COLUMNS and (lang is None or _TEXT_COLUMNS[name][1]):
            return Column(header, _TEXT_COLUMNS[name][0], lang or "none")
        if name in _PAGE_COLUMNS and (lang is None or _PAGE_COLUMNS[name]):
            return Column(header, name, lang or "none")
    known = ["object", *_TEXT_COLUMNS, *_PAGE_COLUMNS, "metadata:<label>"]
    raise DescriptionError(source, header, f"unknown column (known: {', '.join(known)}; '@fr' etc. for languages)")


def _metadata_label(spec: str, header: str, source: str) -> tuple[tuple[str, str], ...]:
    """``Creator`` (no language) or ``en=Creator|fr=Auteur|nl=Maker``."""
    if "=" not in spec:
        return (("none", spec.strip()),)
    out = []
    for part in spec.split("|"):
        lang, sep, text = part.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*|none", lang.strip()) or not text.strip():
            raise DescriptionError(source, header, "a metadata label is 'Text' or 'en=Text|fr=Texte'")
        out.append((lang.strip(), text.strip()))
    return tuple(out)


def _object(rows: list[tuple[int, dict[Column, str]]], source: str) -> dict[str, Any]:
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[str, int]] = {}
    pages: list[dict[str, Any]] = []
    for line, cells in rows:
        page: dict[str, Any] = {}
        for col, value in cells.items():
            if not value or col.kind == "object":
                continue
            if col.kind == "image":
                page["image"] = value
            elif col.kind == "page_label":
                page.setdefault("label", {})[col.language] = value
            else:
                key = (col.kind, col.language, col.metadata_label)
                seen = values.get(key)
                if seen is not None and seen[0] != value:
                    raise DescriptionError(
                        f"{source} line {line}",
                        col.header,
                        f"{value!r} differs from {seen[0]!r} given for the same object on line {seen[1]}",
                    )
                values.setdefault(key, (value, line))
        if page:
            if "image" not in page:
                raise DescriptionError(f"{source} line {line}", "image", "a page label needs an image in its row")
            pages.append(page)

    raw: dict[str, Any] = {}
    metadata: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    provider: dict[str, Any] = {}
    for (kind, lang, meta_label), (value, _line) in values.items():
        if kind == "metadata":
            metadata.setdefault(meta_label, {})[lang] = value
        elif kind in ("label", "summary"):
            raw.setdefault(kind, {})[lang] = value
        elif kind == "attribution":
            statement = raw.setdefault("requiredStatement", {"label": ATTRIBUTION_LABEL, "value": {}})
            statement["value"][lang] = value
        elif kind == "provider":
            provider.setdefault("label", {})[lang] = value
        elif kind == "provider_homepage":
            provider["homepage"] = value
        elif kind == "provider_logo":
            provider["logo"] = value
        elif kind == "behavior":
            raw["behavior"] = [b for b in re.split(r"[\s,]+", value) if b]
        elif kind == "thumbnail":
            raw["thumbnail"] = int(value) if value.isascii() and value.isdigit() else value
        else:
            raw[kind] = value
    if metadata:
        raw["metadata"] = [{"label": dict(label), "value": value} for label, value in metadata.items()]
    if provider:
        raw["provider"] = [provider]
    if pages:
        raw["pages"] = pages
    return raw
