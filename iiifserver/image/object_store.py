"""S3-compatible object storage: one client per process, and the ranged reads the image path needs.

Owns: ``s3://BUCKET/PREFIX`` URLs; ``ObjectPath`` (one object version addressed like a file:
bucket, key, ETag, size, and the store it is read through); ``ObjectStore``, the one boto3
client of a process (endpoint, region and credentials from boto3's own resolution: ``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or ``AWS_PROFILE``), with connect and read
timeouts and no retries beyond one attempt, so a dead or silent store answers within the timeout;
``HEAD`` as an ``ObjectHead`` (ETag, size, last modified) and ranged ``GET`` with ``If-Match``; and
mapping storage failures onto the server's typed errors (missing: ``head`` gives None; replaced
or gone under a read: ``SourceChanged``; unreachable, slow, refused: ``StorageUnavailable``, a
503, logged without secrets); ``put`` for the tools that write objects; ``head_metadata`` and
``upload_file`` (managed multipart transfer, user metadata) for ``iiifserver convert --out s3://``.
Must not know: image formats, TIFF structure, pyvips, the block cache's layout, HTTP serving.
The only module that imports boto3 or botocore (an import-linter contract).
Blocking: every call runs in a worker thread, never on the event loop. A boto3 client is
thread-safe; one is shared by every thread of the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import boto3.exceptions
import boto3.s3.transfer
import botocore.config
import botocore.exceptions

from iiifserver.errors import ServiceUnavailable, SourceChanged

log = logging.getLogger(__name__)

SCHEME = "s3://"
STORAGE_RETRY_AFTER = 5  # seconds a client is told to wait when the store is unreachable
UPLOAD_PART_BYTES = 16 * 2**20  # multipart beyond this; also the part size
_LOG_EVERY = 10.0  # at most one storage failure line per this many seconds (a dead store fails every request)


class StorageUnavailable(ServiceUnavailable):
    """The object store did not answer in time, refused us, or failed: retry later (503)."""

    def __init__(self) -> None:
        super().__init__("the image store is unavailable; retry", retry_after=STORAGE_RETRY_AFTER)


class UploadFailed(Exception):
    """An upload did not complete; the message is one line, without secrets. Nothing was published."""


def is_object_url(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_object_url(text: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix without slashes at either end); ``ValueError`` if malformed."""
    if not is_object_url(text):
        raise ValueError(f"not an s3:// URL: {text!r}")
    bucket, _, prefix = text[len(SCHEME) :].partition("/")
    if not bucket or any(c in bucket for c in " \\?#") or "\x00" in prefix:
        raise ValueError(f"no bucket in {text!r}")
    prefix = prefix.strip("/")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
        raise ValueError(f"empty, '.' or '..' segment in {text!r}")
    return bucket, prefix


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """What ``HEAD`` says of an object: the parts of its version."""

    etag: str  # as the store sends it, quotes included (what If-Match wants back)
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """One version of an object, in the role of a source file's path: bucket, key, the ETag and
    size its ``HEAD`` gave (every read asks for that ETag), and the store it is read through."""

    bucket: str
    key: str
    etag: str
    size: int
    store: ObjectStore = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def suffix(self) -> str:
        name = self.key.rsplit("/", 1)[-1]
        return name[name.rfind(".") :].lower() if "." in name else ""


class ObjectStore:
    """The process's S3 client. ``timeout`` bounds each connect and each read (seconds).

    ``block_cache`` is where renders read objects through (``image/block_cache.py``); it is held
    here so that an ``ObjectPath`` carries everything needed to read its object.
    """

    def __init__(self, timeout: float, block_cache: Any = None, *, max_connections: int = 64) -> None:
        self.timeout = timeout
        self.block_cache = block_cache
        config = botocore.config.Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            # One attempt: botocore's default retries (with back-off) would turn a dead store's
            # answer into several timeouts; the client retries on our 503 instead.
            retries={"max_attempts": 1, "mode": "standard"},
            max_pool_connections=max_connections,
            # Path-style addressing works with every S3-compatible server (MinIO, SeaweedFS, Ceph).
            s3={"addressing_style": "path"},
            # Checksums only where the API requires them: a ranged read cannot be checked against
            # the object's checksum anyway, and computing them costs a quarter of a tile read's CPU.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # boto3's own resolution of endpoint, region and credentials (variables, profile, instance role).
        self._client = boto3.session.Session().client("s3", config=config)
        self._log_lock = threading.Lock()
        self._logged_at = -_LOG_EVERY

    def path(self, bucket: str, key: str, head: ObjectHead) -> ObjectPath:
        return ObjectPath(bucket, key, head.etag, head.size, self)

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        """The object's version, or None when there is no such object."""
        found = self.head_metadata(bucket, key)
        return None if found is None else found[0]

    def read(self, path: ObjectPath, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of the object, which must still have ``path.etag``.

        ``If-Match`` makes the store refuse (412) a replaced object instead of sending the new
        object's bytes under the old version: ``SourceChanged``. A short answer (the object is
        shorter than the range says) is a ``SourceChanged`` too: whatever was read is not served.
        """
        if length <= 0:
            return b""
        try:
            reply = self._client.get_object(
                Bucket=path.bucket, Key=path.key, Range=f"bytes={offset}-{offset + length - 1}", IfMatch=path.etag
            )
            data: bytes = reply["Body"].read()
        except botocore.exceptions.ClientError as exc:
            status = _status(exc)
            if status == 412:
                raise SourceChanged(str(path)) from None
            if status == 404:
                raise SourceChanged(str(path)) from None  # deleted since its HEAD: retry resolves it again
            if status == 416:
                raise SourceChanged(str(path)) from None
            raise self._unavailable(str(path), exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._unavailable(str(path), exc) from None
        if len(data) != length:
            raise SourceChanged(str(path))
        return data

    def put(self, bucket: str, key: str, body: bytes) -> None:
        """Store ``body`` under ``key`` (tests, tools). Errors propagate as ``StorageUnavailable``."""
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=body)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._unavailable(f"{SCHEME}{bucket}/{key}", exc) from None

    def head_metadata(self, bucket: str, key: str) -> tuple[ObjectHead, dict[str, str]] | None:
        """The object's version and its user metadata (``x-amz-meta-*``, names lower-cased), or
        None when there is no such object. Failures as ``head``'s."""
        try:
            reply = self._client.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _status(exc) == 404:
                return None
            raise self._unavailable(f"{SCHEME}{bucket}/{key}", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._unavailable(f"{SCHEME}{bucket}/{key}", exc) from None
        modified = reply.get("LastModified")
        mtime_ns = int(modified.timestamp() * 1_000_000_000) if modified is not None else 0
        head = ObjectHead(str(reply.get("ETag", "")), int(reply["ContentLength"]), mtime_ns)
        metadata = {str(k).lower(): str(v) for k, v in (reply.get("Metadata") or {}).items()}
        return head, metadata

    def list_keys(self, bucket: str, prefix: str) -> Iterator[str]:
        """The keys under ``prefix`` (a folder: ``prefix/...``; empty: the whole bucket), page by
        page. Failures as ``StorageUnavailable``."""
        paginator = self._client.get_paginator("list_objects_v2")
        start = f"{prefix}/" if prefix else ""
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=start):
                for item in page.get("Contents", []):
                    yield str(item["Key"])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._unavailable(f"{SCHEME}{bucket}/{start}", exc) from None

    def upload_file(
        self,
        bucket: str,
        key: str,
        path: str,
        metadata: dict[str, str],
        content_type: str,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a local file under ``key`` with boto3's managed transfer (multipart beyond
        ``UPLOAD_PART_BYTES``). The object appears only once the upload completes (S3 publishes
        a single PUT or a multipart completion as a whole); a failed or interrupted multipart
        upload is aborted by the transfer manager, leaving nothing under ``key``.
        ``progress`` gets the bytes sent so far, in steps; raising there cancels the upload.
        Raises ``UploadFailed`` with a one-line reason (no credentials, no signature).
        """
        config = boto3.s3.transfer.TransferConfig(
            multipart_threshold=UPLOAD_PART_BYTES, multipart_chunksize=UPLOAD_PART_BYTES, use_threads=True
        )
        extra = {"Metadata": metadata, "ContentType": content_type}
        try:
            self._client.upload_file(path, bucket, key, ExtraArgs=extra, Config=config, Callback=progress)
        except boto3.exceptions.S3UploadFailedError as exc:
            # boto3 folds the ClientError into the message: keep its code, drop the rest.
            text = str(exc)
            if "NoSuchBucket" in text:
                raise UploadFailed(f"no bucket {bucket!r} in the object store") from None
            if "AccessDenied" in text or "SignatureDoesNotMatch" in text or "InvalidAccessKeyId" in text:
                raise UploadFailed("the object store refused the upload (credentials?)") from None
            raise UploadFailed("the object store refused the upload: " + " ".join(text.split())[:200]) from None
        except botocore.exceptions.ClientError as exc:
            raise UploadFailed(f"the object store refused the upload ({_status(exc)})") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise UploadFailed(f"object store unreachable ({type(exc).__name__})") from None

    def _unavailable(self, where: str, exc: Exception) -> StorageUnavailable:
        """One log line now and then: the failure's class and code, never the request's
        headers (they hold the signature) nor the credentials."""
        now = time.monotonic()
        with self._log_lock:
            due = now - self._logged_at >= _LOG_EVERY
            if due:
                self._logged_at = now
        if due:
            if isinstance(exc, botocore.exceptions.ClientError):
                error = exc.response.get("Error", {})
                what = f"{_status(exc)} {error.get('Code', '')}".strip()
            else:
                what = type(exc).__name__
            log.warning("object store unavailable reading %s: %s (answering 503)", where, what)
        return StorageUnavailable()


def _status(exc: botocore.exceptions.ClientError) -> int:
    meta = exc.response.get("ResponseMetadata", {})
    status = meta.get("HTTPStatusCode")
    if isinstance(status, int):
        return status
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return int(code) if code.isdigit() else 0
