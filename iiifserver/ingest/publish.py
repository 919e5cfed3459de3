"""Publishing pyramids to object storage: ``iiifserver convert --out s3://BUCKET/PREFIX``.

Owns: converting one master into its staging file and publishing it (``convert_and_publish``,
which the pool worker and the Dask task both run, so uploads run where the conversion ran, in
parallel, with the worker's own credentials); the stamp as object user metadata (what
``stamp.py`` writes beside a file, here carried by the object itself so it is replaced with it);
the up-to-date rule for an object (its ``HEAD``: metadata, size, last modified, judged by the
same pure ``plan.is_up_to_date``); the per-process object store clients; and checking a
published object against its recorded SHA-256 by streaming it (``iiifserver verify`` on an
``s3://`` image root).

Atomicity: the upload is the publish. S3 (and the compatible servers: SeaweedFS, MinIO, Ceph)
shows an object only once its single PUT or its multipart completion has finished, so a reader
never sees half a pyramid, and an interrupted multipart upload is aborted (nothing under the key).
Must not know: pyvips (``convert.py`` makes the file), scheduling, click, HTTP.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from iiifserver.ingest import convert as converter
from iiifserver.ingest.plan import ConvertOptions, FileState, Job, Stamp, is_up_to_date
from iiifserver.ingest.stamp import file_state, read_checksum, read_stamp, remove_stamp

if TYPE_CHECKING:
    from iiifserver.image.object_store import ObjectStore
    from iiifserver.ingest.verify import Verdict

CONTENT_TYPE = "image/tiff"
HEAD_TIMEOUT = 10.0  # seconds: a HEAD is small; a dead store must not hold the plan up long
UPLOAD_TIMEOUT = 120.0  # seconds per connect and per read of an upload's parts: larger bodies, slower answers
METADATA_LIMIT = 2000  # bytes: S3 allows 2 KB of user metadata (names and values)
_VERIFY_CHUNK = 8 * 2**20

# The stamp's fields as metadata names (sent as x-amz-meta-iiifserver-*).
_PREFIX = "iiifserver-"
_FIELDS = ("source", "source-size", "source-mtime-ns", "fingerprint", "output-size", "output-sha256")

_stores: dict[float, ObjectStore] = {}


def store(timeout: float) -> ObjectStore:
    """This process's client with these timeouts (endpoint, region, credentials from the standard
    variables of the process it runs in: a Dask worker uses its own)."""
    client = _stores.get(timeout)
    if client is None:
        from iiifserver.image.object_store import ObjectStore

        client = _stores[timeout] = ObjectStore(timeout, max_connections=16)
    return client


def split(url: str) -> tuple[str, str]:
    """An object URL -> (bucket, key)."""
    from iiifserver.image.object_store import parse_object_url

    return parse_object_url(url)


def stamp_metadata(stamp: Stamp, checksum: str) -> dict[str, str]:
    """The stamp as user metadata: ASCII only (the master's path percent-encoded), within 2 KB."""
    values = (
        urllib.parse.quote(stamp.source, safe="/"),
        str(stamp.source_size),
        str(stamp.source_mtime_ns),
        stamp.fingerprint,
        str(stamp.output_size),
        checksum,
    )
    metadata = {_PREFIX + name: value for name, value in zip(_FIELDS, values, strict=True)}
    if sum(len(k) + len(v) for k, v in metadata.items()) > METADATA_LIMIT:
        raise converter.ConvertError("the master's path is too long for the object's metadata (2 KB)")
    return metadata


def metadata_stamp(metadata: dict[str, str], output_mtime_ns: int) -> Stamp | None:
    """The stamp an object's metadata records, or None (no stamp, or not one of ours).

    The metadata cannot record the object's own time (the store sets it when the upload
    completes): ``output_mtime_ns`` is taken as the stamp's. An object replaced by other means
    loses the metadata (or keeps a foreign size): it is made again."""
    try:
        return Stamp(
            source=urllib.parse.unquote(metadata[_PREFIX + "source"]),
            source_size=int(metadata[_PREFIX + "source-size"]),
            source_mtime_ns=int(metadata[_PREFIX + "source-mtime-ns"]),
            fingerprint=metadata[_PREFIX + "fingerprint"],
            output_size=int(metadata[_PREFIX + "output-size"]),
            output_mtime_ns=output_mtime_ns,
        )
    except (KeyError, ValueError):
        return None


def published_state(job: Job) -> tuple[FileState, Stamp | None] | None:
    """The published object's state and stamp, or None when it does not exist.
    Raises ``StorageUnavailable`` when the store cannot be asked."""
    bucket, key = split(job.destination)
    found = store(HEAD_TIMEOUT).head_metadata(bucket, key)
    if found is None:
        return None
    head, metadata = found
    return FileState(head.size, head.mtime_ns), metadata_stamp(metadata, head.mtime_ns)


def is_published(job: Job, options: ConvertOptions) -> bool:
    """The object exists and its metadata vouches for it, as a stamp does for a file."""
    source_state = file_state(job.source)
    if source_state is None:
        return False
    found = published_state(job)
    if found is None:
        return False
    state, stamp = found
    # The object's time is the store's clock, not comparable with the master's (a store a few
    # seconds behind would make every fresh master stale): the master's exact size and time in
    # the metadata are the check; the times compared are made equal here.
    state = FileState(state.size, source_state.mtime_ns)
    stamp = None if stamp is None else replace(stamp, output_mtime_ns=source_state.mtime_ns)
    return is_up_to_date(os.path.realpath(job.source), source_state, state, stamp, options.fingerprint())


def output_state(job: Job) -> FileState | None:
    """The output's size and time, wherever it is (file or object)."""
    if not job.destination:
        return file_state(job.output)
    found = published_state(job)
    return None if found is None else found[0]


def convert_and_publish(
    job: Job, options: ConvertOptions, should_stop: Callable[[], bool] = lambda: False
) -> converter.Converted:
    """Convert the master; with a destination, upload the staged output and its stamp as one
    object, then remove the staged files (also on failure). Raises ``ConvertError`` with a
    one-line reason, ``Interrupted`` when ``should_stop`` turns true (the upload is cancelled)."""
    if not job.destination:
        return converter.convert(job, options, should_stop)
    from iiifserver.image.object_store import UploadFailed

    try:
        made = converter.convert(job, options, should_stop)
        stamp, checksum = read_stamp(job.output), read_checksum(job.output)
        if stamp is None or checksum is None:
            raise converter.ConvertError("the staged output's stamp is missing (staging folder changed?)")
        bucket, key = split(job.destination)

        def watch(_sent: int) -> None:
            if should_stop():
                raise converter.Interrupted("interrupted while uploading")

        try:
            store(UPLOAD_TIMEOUT).upload_file(
                bucket, key, str(job.output), stamp_metadata(stamp, checksum), CONTENT_TYPE, progress=watch
            )
        except UploadFailed as exc:
            raise converter.ConvertError(f"not published to {job.destination}: {exc}") from None
        if should_stop():  # a small file's upload may finish before the callback looks
            raise converter.Interrupted("interrupted")
    finally:
        job.output.unlink(missing_ok=True)
        remove_stamp(job.output)
    return made


def verify_object(bucket: str, key: str) -> tuple[Verdict, str]:
    """Stream the object (in chunks, never whole in memory) and compare its SHA-256 with the one
    its metadata records: the verdict and a detail for the report."""
    from iiifserver.errors import SourceChanged
    from iiifserver.image.object_store import StorageUnavailable
    from iiifserver.ingest.verify import Verdict

    client = store(UPLOAD_TIMEOUT)
    try:
        found = client.head_metadata(bucket, key)
        if found is None:
            return Verdict.UNREADABLE, "not found"
        head, metadata = found
        recorded = metadata.get(_PREFIX + "output-sha256", "")
        if len(recorded) != 64:
            return Verdict.NO_CHECKSUM, "no checksum in its metadata"
        digest = hashlib.sha256()
        path = client.path(bucket, key, head)
        for offset in range(0, head.size, _VERIFY_CHUNK):
            digest.update(client.read(path, offset, min(_VERIFY_CHUNK, head.size - offset)))
    except StorageUnavailable:
        return Verdict.UNREADABLE, "object store unreachable"
    except SourceChanged:
        return Verdict.UNREADABLE, "replaced or removed while it was read"
    if digest.hexdigest() != recorded:
        return Verdict.CHANGED, "SHA-256 differs from the one recorded at conversion"
    return Verdict.OK, ""
