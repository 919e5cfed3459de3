"""``iiifserver convert --out s3://BUCKET/PREFIX`` against a running SeaweedFS (no mocks).

The published objects must be the very bytes a conversion into a folder makes, served by an app
whose image root is that prefix; the up-to-date rule reads the objects' metadata (a second run
uploads nothing, a changed master or a replaced object is made again, --force makes all); the
faults (a bucket that does not exist, a store nobody answers on) fail each master with one line
and leave nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
import pyvips
import yaml
from click.testing import CliRunner

from iiifserver.app import create_app
from iiifserver.cli import main
from iiifserver.config import Settings
from iiifserver.ingest import publish
from iiifserver.ingest.plan import ConvertOptions
from tests.ingest.conftest import Master
from tests.object_storage import Place, new_place, put, s3_client, use_store
from tests.seaweedfs_server import READ_ONLY_ACCESS_KEY, READ_ONLY_SECRET_KEY
from tests.web.conftest import Http

NAMES = ("page-1.tif", "page-2.tif")


@pytest.fixture
def masters(masters_dir: tuple[Path, dict[str, Master]], tmp_path: Path) -> Path:
    folder, known = masters_dir
    target = tmp_path / "masters"
    target.mkdir()
    shutil.copy(folder / known["cmyk"].name, target / "page-1.jpg")
    shutil.copy(folder / known["alpha"].name, target / "page-2.png")
    return target


@pytest.fixture
def place(seaweedfs: Any, monkeypatch: pytest.MonkeyPatch) -> Place:
    use_store(monkeypatch, seaweedfs)
    publish._stores.clear()  # this process's clients were made for another test's variables
    return new_place(seaweedfs)


def convert(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", "--quiet", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def versions(server: Any, place: Place) -> dict[str, tuple[str, Any]]:
    """Each object's ETag and LastModified."""
    listed = s3_client(server).list_objects_v2(Bucket=place.bucket, Prefix=place.prefix + "/")
    return {o["Key"][len(place.prefix) + 1 :]: (o["ETag"], o["LastModified"]) for o in listed.get("Contents", [])}


def body(server: Any, place: Place, name: str) -> bytes:
    data: bytes = s3_client(server).get_object(Bucket=place.bucket, Key=place.key(name))["Body"].read()
    return data


def test_published_objects_are_a_folder_conversions_bytes_and_are_served(
    masters: Path, place: Place, seaweedfs: Any, tmp_path: Path, portal: anyio.from_thread.BlockingPortal
) -> None:
    code, output = convert(str(masters), "--out", str(tmp_path / "local"), "--jobs", "2")
    assert code == 0, output
    staging = tmp_path / "staging"
    code, output = convert(str(masters), "--out", place.url, "--jobs", "2", "--staging", str(staging))
    assert code == 0, output
    assert "converted 2, skipped 0 (up to date), failed 0" in output
    assert sorted(versions(seaweedfs, place)) == list(NAMES)
    assert [p for p in staging.rglob("*") if p.is_file()] == []  # published, then removed locally
    for name in NAMES:
        assert body(seaweedfs, place, name) == (tmp_path / "local" / name).read_bytes(), name
    head = s3_client(seaweedfs).head_object(Bucket=place.bucket, Key=place.key("page-1.tif"))
    assert head["ContentType"] == "image/tiff"
    assert head["Metadata"]["iiifserver-source"].endswith("/masters/page-1.jpg")
    assert head["Metadata"]["iiifserver-fingerprint"] == ConvertOptions().fingerprint()

    settings = Settings(
        images=Path(place.url),
        cache=tmp_path / "cache",
        manifests=tmp_path / "manifests",
        block_cache=tmp_path / "blocks",
        disk_cache_mb=0,
        source_check_interval=0.0,
    )
    s3 = Http(create_app(settings), portal)
    local = Http(create_app(replace(settings, images=tmp_path / "local", block_cache=tmp_path / "b2")), portal)
    info = s3.get("/iiif/3/page-1/info.json")
    assert info.status_code == 200, info.text
    assert {k: v for k, v in info.json().items() if k != "id"} == {
        k: v for k, v in local.get("/iiif/3/page-1/info.json").json().items() if k != "id"
    }
    tile = s3.get("/iiif/3/page-1/0,0,256,256/256,/0/default.jpg")
    assert tile.status_code == 200
    assert tile.content == local.get("/iiif/3/page-1/0,0,256,256/256,/0/default.jpg").content


def test_up_to_date_rule_reads_the_objects_metadata(masters: Path, place: Place, seaweedfs: Any) -> None:
    assert convert(str(masters), "--out", place.url)[0] == 0
    first = versions(seaweedfs, place)

    code, output = convert(str(masters), "--out", place.url)
    assert (code, "converted 0, skipped 2 (up to date)" in output) == (0, True), output
    assert versions(seaweedfs, place) == first  # nothing uploaded again

    stat = (masters / "page-2.png").stat()
    os.utime(masters / "page-2.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    code, output = convert(str(masters), "--out", place.url)
    assert (code, "converted 1, skipped 1 (up to date)" in output) == (0, True), output
    second = versions(seaweedfs, place)
    assert second["page-1.tif"] == first["page-1.tif"]
    assert second["page-2.tif"][1] >= first["page-2.tif"][1]

    # Replaced by other means (no metadata of ours): made again, and only it.
    original = body(seaweedfs, place, "page-1.tif")
    put(seaweedfs, place.bucket, place.key("page-1.tif"), b"not a pyramid")
    code, output = convert(str(masters), "--out", place.url)
    assert (code, "converted 1, skipped 1 (up to date)" in output) == (0, True), output
    assert body(seaweedfs, place, "page-1.tif") == original

    code, output = convert(str(masters), "--out", place.url, "--force")
    assert (code, "converted 2, skipped 0 (up to date)" in output) == (0, True), output


def test_a_refused_upload_fails_each_master_and_leaves_nothing(
    masters: Path, place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials that may read (the HEAD answers) but not write: each upload is refused."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READ_ONLY_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READ_ONLY_SECRET_KEY)
    publish._stores.clear()
    staging = tmp_path / "staging"
    code, output = convert(str(masters), "--out", place.url, "--staging", str(staging), "--jobs", "2")
    assert code == 1, output
    assert "failed 2" in output
    assert output.count(f"not published to {place.url}/page-") == 2, output
    assert output.count("the object store refused the upload (credentials?)") == 2, output
    assert "Traceback" not in output
    assert READ_ONLY_SECRET_KEY not in output
    assert [p for p in staging.rglob("*") if p.is_file()] == []


def test_an_unreachable_store_fails_each_master_with_one_line(
    masters: Path, place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connections refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    publish._stores.clear()
    code, output = convert(str(masters), "--out", place.url)
    assert code == 1, output
    assert output.count("object store unreachable") == 2, output
    assert "Traceback" not in output


def test_object_describes_the_published_images_by_their_identifiers(
    masters: Path, place: Place, tmp_path: Path
) -> None:
    manifests = tmp_path / "manifests"
    root = f"s3://{place.bucket}/{place.prefix.rsplit('/', 1)[0]}"  # the image root, above the output prefix
    settings = ["-s", f"images={root}", "-s", f"manifests={manifests}"]
    code, output = convert(str(masters), "--out", place.url, "--object", "book", *settings)
    assert code == 0, output
    assert "object book: 2 pages in" in output
    below = place.prefix.rsplit("/", 1)[1]
    description = yaml.safe_load((manifests / "book.yaml").read_text(encoding="utf-8"))
    assert [page["image"] for page in description["pages"]] == [f"{below}/page-1", f"{below}/page-2"]


def test_object_and_staging_usage_errors(masters: Path, place: Place, tmp_path: Path) -> None:
    settings = ["-s", f"images={tmp_path / 'images'}", "-s", f"manifests={tmp_path / 'm'}"]
    staging = tmp_path / "staging"
    code, output = convert(str(masters), "--out", place.url, "--object", "book", "--staging", str(staging), *settings)
    assert code == 2, output
    assert "--object needs the output" in output
    assert not staging.exists()  # refused before anything was made
    code, output = convert(str(masters), "--out", str(tmp_path / "o"), "--staging", str(tmp_path / "s"))
    assert code == 2, output
    assert "--staging is for --out s3://" in output
    code, output = convert(str(masters), "--out", "s3:///nobucket")
    assert code == 2, output
    assert "no bucket" in output


def test_metadata_round_trip_and_foreign_metadata() -> None:
    from iiifserver.ingest.plan import Stamp

    stamp = Stamp("/masters/été 1/page.jpg", 10, 20, "v1;q=85", 30, 0)
    metadata = publish.stamp_metadata(stamp, "a" * 64)
    assert all(value.isascii() for value in metadata.values())
    assert publish.metadata_stamp(metadata, 99) == replace(stamp, output_mtime_ns=99)
    assert publish.metadata_stamp({"iiifserver-source": "x"}, 99) is None
    assert publish.metadata_stamp({}, 99) is None


@pytest.mark.slow
def test_the_cluster_path_publishes_too(masters: Path, place: Place, seaweedfs: Any) -> None:
    pytest.importorskip("distributed")
    code, output = convert(str(masters), "--out", place.url, "--cluster", "local:1")
    assert code == 0, output
    assert sorted(versions(seaweedfs, place)) == list(NAMES)
    code, output = convert(str(masters), "--out", place.url, "--cluster", "local:1")
    assert (code, "converted 0, skipped 2 (up to date)" in output) == (0, True), output


@pytest.mark.slow
def test_an_interrupted_run_leaves_no_partial_object_and_no_staging(
    place: Place, seaweedfs: Any, tmp_path: Path
) -> None:
    """SIGINT once a pyramid is staged (its upload, multipart at this size, under way or about to
    be): the run ends interrupted, the object is whole or absent, and the staging folder is gone."""
    master = tmp_path / "noise.jpg"
    noise = pyvips.Image.gaussnoise(5000, 5000, seed=3, sigma=60, mean=128).cast("uchar")
    noise.bandjoin([noise.rot180(), noise.fliphor()]).copy(interpretation="srgb").jpegsave(str(master), Q=95)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    cli = [sys.executable, "-c", "from iiifserver.cli import main; main()"]
    process = subprocess.Popen(
        [*cli, "convert", "--quiet", str(master), "--out", place.url, "--jobs", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not any(p.name == "noise.tif" for p in temp.rglob("*.tif")):
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "the pyramid was never staged"
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()
    assert list(temp.iterdir()) == []  # the temporary staging folder is removed
    client = s3_client(seaweedfs)
    try:
        head = client.head_object(Bucket=place.bucket, Key=place.key("noise.tif"))
    except client.exceptions.ClientError:
        return  # not published: nothing under the key
    # Published before the stop was seen: then whole, as its recorded checksum shows.
    data = body(seaweedfs, place, "noise.tif")
    assert hashlib.sha256(data).hexdigest() == head["Metadata"]["iiifserver-output-sha256"]


def test_verify_streams_each_object_against_its_metadata(masters: Path, place: Place, seaweedfs: Any) -> None:
    assert convert(str(masters), "--out", place.url)[0] == 0
    verify = ["verify", "--quiet", "-s", f"images={place.url}"]
    result = CliRunner().invoke(main, verify)
    assert result.exit_code == 0, result.output
    assert f"2 intact, 0 changed, 0 unreadable, 0 without a checksum ({place.url})" in result.output

    # Other bytes under our metadata (a copy gone wrong): changed. Then one without metadata.
    client = s3_client(seaweedfs)
    metadata = client.head_object(Bucket=place.bucket, Key=place.key("page-1.tif"))["Metadata"]
    client.put_object(Bucket=place.bucket, Key=place.key("page-1.tif"), Body=b"damaged", Metadata=metadata)
    put(seaweedfs, place.bucket, place.key("page-2.tif"), b"foreign")
    result = CliRunner().invoke(main, verify)
    assert result.exit_code == 1, result.output
    assert "error: page-1.tif: changed" in result.output
    assert "warning: page-2.tif: no checksum" in result.output
    assert "0 intact, 1 changed, 0 unreadable, 1 without a checksum" in result.output
    result = CliRunner().invoke(main, [*verify, "page-2"])
    assert "0 intact, 0 changed, 0 unreadable, 1 without a checksum" in result.output

    # Both are made again: the metadata's size does not match the object's / there is none.
    code, output = convert(str(masters), "--out", place.url)
    assert (code, "converted 2, skipped 0 (up to date)" in output) == (0, True), output
    assert CliRunner().invoke(main, verify).exit_code == 0
