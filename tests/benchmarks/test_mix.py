"""The mixed viewer-and-scholar workload's list (benchmarks/harness/mix.py): its shares, its
determinism, and that every request is valid for its image and says the size it must produce.
Validity is checked with the server's own parser and planner, in both API versions, against the
lowest limits of the two servers benchmarked. No server is started here."""

from __future__ import annotations

from collections import Counter
from urllib.parse import unquote

import pytest

from benchmarks.harness import images as img
from benchmarks.harness import mix
from iiifserver.config import Limits
from iiifserver.image import planner
from iiifserver.image.request import ApiVersion, parse_image_request

N = 20_000


@pytest.fixture(scope="module")
def collection() -> list[mix.MixImage]:
    return mix.collection(img.alias_names("big", 85, 40), img.alias_names("small", 85, 200))


@pytest.fixture(scope="module")
def requests(collection: list[mix.MixImage]) -> list[mix.MixedRequest]:
    return mix.mixed_requests(collection, N, seed=3)


def test_every_kind_has_its_share(requests: list[mix.MixedRequest]) -> None:
    counts = Counter(r.kind for r in requests)
    assert set(counts) == set(mix.SHARES)
    for kind, share in mix.SHARES.items():
        # a binomial draw of N: within four standard deviations of the share
        assert abs(counts[kind] / N - share) <= 4 * (share * (1 - share) / N) ** 0.5, kind
    table = mix.describe(requests)
    assert table["viewer"]["requests"] == counts["viewer"]
    assert table["region"]["distinct"] == counts["region"]  # each cited region once
    assert 0 < table["(info.json, all kinds)"]["share"] - mix.SHARES["info"] < 0.02  # plus one per viewer session
    assert "| viewer | " in mix.describe_md(requests)


def test_the_list_is_deterministic_and_a_longer_list_starts_with_a_shorter(collection: list[mix.MixImage]) -> None:
    a = mix.mixed_requests(collection, 3000, seed=1)
    assert a == mix.mixed_requests(collection, 3000, seed=1)
    assert mix.mixed_requests(collection, 6000, seed=1)[:3000] == a
    assert mix.mixed_requests(collection, 3000, seed=2) != a


def test_shares_can_be_chosen_and_are_checked(collection: list[mix.MixImage]) -> None:
    only_thumbs = mix.mixed_requests(collection, 500, shares={"thumb_box": 1.0})
    assert {r.kind for r in only_thumbs} == {"thumb_box"}
    assert all("/full/!200,200/0/default.jpg" in r.path for r in only_thumbs)
    with pytest.raises(ValueError, match="unknown kinds"):
        mix.mixed_requests(collection, 10, shares={"video": 1.0})
    scans = [i for i in collection if not mix.fits_download(i.info)]
    with pytest.raises(ValueError, match="download limits"):
        mix.mixed_requests(scans, 10, shares={"download_max": 1.0})
    with pytest.raises(ValueError, match="no images"):
        mix.mixed_requests([], 10)


def test_every_request_is_valid_for_its_image_and_says_its_size(
    collection: list[mix.MixImage], requests: list[mix.MixedRequest]
) -> None:
    sizes = {i.identifier: (i.info.width, i.info.height) for i in collection}
    lowest = Limits(*mix.DOWNLOAD_LIMITS, allow_upscaling=False)
    for r in requests:
        ident, rest = r.path.split("/", 1)
        width, height = sizes[unquote(ident)]
        if rest == "info.json":
            assert r.width is None
            assert r.height is None
            continue
        region, size, rotation, quality = rest.split("/")
        for version in (ApiVersion.V3, ApiVersion.V2):
            request = parse_image_request(region, size, rotation, quality, version)
            box = planner.resolve_region(request, width, height)
            assert box.x + box.w <= width, r.path  # inside the image
            assert box.y + box.h <= height, r.path
            w, h, upscaled, _ = planner.resolve_size(request, box, lowest)
            assert not upscaled
            assert r.width is not None
            assert r.height is not None
            assert abs(w - r.width) <= 1, (r.path, w, h)
            assert abs(h - r.height) <= 1, (r.path, w, h)


def test_viewers_read_info_json_first_and_downloads_are_within_every_server_limit(
    collection: list[mix.MixImage], requests: list[mix.MixedRequest]
) -> None:
    opened: set[str] = set()
    for r in requests:
        ident = r.path.split("/", 1)[0]
        if r.kind == "viewer" and r.path.endswith("/info.json"):
            opened.add(ident)
        elif r.kind == "viewer":
            assert ident in opened, r.path  # a session's tiles come after its info.json
    viewed = {r.path.split("/", 1)[0] for r in requests if r.kind == "viewer"}
    assert len(viewed) > 40  # sessions go round the collection: most open an image nobody opened yet
    small = {i.identifier for i in collection if mix.fits_download(i.info)}
    downloads = [r for r in requests if r.kind.startswith("download")]
    assert downloads
    assert all(unquote(r.path.split("/", 1)[0]) in small for r in downloads)
    assert {r.path.split("/")[2] for r in downloads} == {"max", "pct:50"}


def test_thumbnails_come_in_pages_of_many_images(requests: list[mix.MixedRequest]) -> None:
    for kind in ("thumb_box", "thumb_strip"):
        shown = [r.path.split("/", 1)[0] for r in requests if r.kind == kind]
        assert len(set(shown)) > 100  # many images, not a few hot ones
        first_page = shown[: mix.PAGE_SIZE]
        assert len(set(first_page)) == mix.PAGE_SIZE  # one page: 24 different images
        hot = Counter(shown).most_common(1)[0][1]
        assert hot > 3 * len(shown) / len(set(shown))  # popular pages come back


def test_url_list_lines_are_what_the_load_generator_reads() -> None:
    request = mix.MixedRequest("region", "a%20b.tif/0,0,10,20/max/0/default.jpg", 10, 20)
    assert request.line() == "a%20b.tif/0,0,10,20/max/0/default.jpg\t10\t20"
    assert mix.MixedRequest("info", "a.tif/info.json").line() == "a.tif/info.json"
