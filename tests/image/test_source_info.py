"""SourceInfo values: the versioned encoding shared instances exchange, and the version token."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iiifserver.image.source_info import (
    SOURCE_INFO_FORMAT,
    Colour,
    Level,
    SourceFormat,
    SourceInfo,
    SourceVersion,
    UndecodableSourceInfo,
    decode_source_info,
    encode_source_info,
)

_sizes = st.integers(min_value=1, max_value=2**31)
_levels = st.builds(
    Level,
    width=_sizes,
    height=_sizes,
    page=st.integers(min_value=0, max_value=1000),
    subifd=st.integers(min_value=-1, max_value=1000),
)


@st.composite
def source_infos(draw: st.DrawFn) -> SourceInfo:
    first = draw(_levels)
    return SourceInfo(
        width=first.width,
        height=first.height,
        levels=(first, *draw(st.lists(_levels, max_size=12))),
        tile_width=draw(st.integers(min_value=0, max_value=4096)),
        tile_height=draw(st.integers(min_value=0, max_value=4096)),
        colour=draw(st.sampled_from(Colour)),
        bands=draw(st.integers(min_value=1, max_value=16)),
        has_alpha=draw(st.booleans()),
        has_icc=draw(st.booleans()),
        format=draw(st.sampled_from(SourceFormat)),
        compression=draw(st.text(max_size=20)),
    )


@given(source_infos())
def test_every_source_info_round_trips(info: SourceInfo) -> None:
    data = encode_source_info(info)
    assert decode_source_info(data) == info
    assert encode_source_info(decode_source_info(data)) == data  # one spelling per value


PYRAMID = SourceInfo(
    width=4000,
    height=3000,
    levels=(Level(4000, 3000), Level(2000, 1500, 0, 0), Level(1000, 750, 0, 1), Level(500, 375, 3)),
    tile_width=256,
    tile_height=256,
    colour=Colour.RGB,
    bands=4,
    has_alpha=True,
    has_icc=True,
    format=SourceFormat.TIFF,
    compression="jpeg",
)


def test_the_encoding_names_its_format_version_and_every_field() -> None:
    raw = orjson.loads(encode_source_info(PYRAMID))
    assert raw["v"] == SOURCE_INFO_FORMAT
    assert raw["levels"] == [[4000, 3000, 0, -1], [2000, 1500, 0, 0], [1000, 750, 0, 1], [500, 375, 3, -1]]
    assert {field.name for field in dataclasses.fields(SourceInfo)} == raw.keys() - {"v"}


def _with(**changes: object) -> bytes:
    raw = orjson.loads(encode_source_info(PYRAMID))
    raw.update(changes)
    return orjson.dumps(raw)


@pytest.mark.parametrize(
    "data",
    [
        _with(v=SOURCE_INFO_FORMAT + 1),  # written by another version of SourceInfo
        _with(v=0),
        _with(v=True),
        _with(width=0),
        _with(width=4000.0),
        _with(height="3000"),
        _with(bands=True),
        _with(tile_width=-1),
        _with(levels=[]),
        _with(levels=[[4000, 3000, 0]]),
        _with(levels=[[4000, 3000, -1, -1]]),
        _with(levels=[[4000, 3000, 0, -2]]),
        _with(levels=[[2000, 1500, 0, -1]]),  # the first level is not the full size
        _with(levels="4000x3000"),
        _with(colour="cmyk"),
        _with(colour=["rgb"]),
        _with(format="gif"),
        _with(has_icc=1),
        _with(has_alpha=None),
        _with(compression=7),
        _with(extra=1),
        orjson.dumps({k: v for k, v in orjson.loads(encode_source_info(PYRAMID)).items() if k != "has_icc"}),
        b"[]",
        b"null",
        b"",
        b"{not json",
        encode_source_info(PYRAMID)[:-1],
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(UndecodableSourceInfo):
        decode_source_info(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_are_refused(data: bytes) -> None:
    try:
        info = decode_source_info(data)
    except UndecodableSourceInfo:
        return
    assert isinstance(info, SourceInfo)


def test_version_token_changes_with_every_field() -> None:
    base = SourceVersion(1, 2, 3, 4, '"e1"')
    tokens = {base.token} | {
        dataclasses.replace(base, **{field.name: getattr(base, field.name) + (1 if field.type == "int" else "2")}).token
        for field in dataclasses.fields(SourceVersion)
    }
    assert len(tokens) == 6  # an object's ETag is part of it too
