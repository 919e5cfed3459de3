"""ImageService: the answered-at-once variants of the request path, from memory and the page cache only."""

from __future__ import annotations

import asyncio
from pathlib import Path

from iiifserver.image.request import parse_tile_request
from tests.image.conftest import make_service


def test_at_once_variants_answer_from_memory_only(picture: Path, tmp_path: Path) -> None:
    """``prepare_if_known``/``entry_at_once`` never check a file: None until ``find`` has, then
    what ``prepare`` gives; and None again once the trust in the file has run out."""
    _, service, counting = make_service(picture.parent, tmp_path, 0.5)
    request = parse_tile_request(b"256,0,256,256/256,/0/default.jpg")
    assert request is not None

    async def steps() -> None:
        assert service.prepare_if_known("pic", request) is None
        assert counting.calls == 0
        prepared = await service.prepare("pic", request)
        at_once = service.prepare_if_known("pic", request)
        assert at_once == prepared
        assert at_once is not None
        assert at_once.key == prepared.key
        assert service.find_if_known("pic") is service.find_if_known("pic")  # kept while trusted
        assert service.cached(prepared) is None
        entry = service.entry_at_once(prepared)  # the stored tile, from the page cache
        assert entry is not None
        assert service.cached(prepared) == entry  # and kept in the memory tier
        assert service.counters.passthrough_inline == 1
        assert service.entry_at_once(prepared) == entry
        assert service.counters.passthrough_inline == 1
        unaligned = parse_tile_request(b"10,10,256,256/256,/0/default.jpg")
        assert unaligned is not None
        rendered = service.prepare_if_known("pic", unaligned)
        assert rendered is not None
        assert rendered.passthrough is None
        assert service.entry_at_once(rendered) is None  # to be rendered: ``fetch`` does it
        await asyncio.sleep(0.6)
        assert service.prepare_if_known("pic", request) is None
        assert counting.calls == 1

    asyncio.run(steps())
