"""Shared tier: entries in Redis (or Valkey), shared by every instance of a deployment.

Owns: the Redis key layout and value format of shared entries (rendered responses and opaque
facts blobs), their integrity checks, the connection and its timeouts, whether the tier is up,
noticing it going down (one log line) and coming back (a background reconnect with exponential
back-off), its counters, and the only import of ``redis``.
Must not know: the event loop's work (every method but ``keep_connected`` blocks: callers run
them in worker threads, in the same hop as the disk lookup and the render they may save), the
other tiers, IIIF, how facts blobs are encoded.

Why blocking calls in worker threads rather than ``redis.asyncio`` on the loop: a cold request
already makes one thread hop for its disk lookup and render (``image/service.py``); the shared
lookup goes between them in that same hop, so the tiers stay in order (memory, disk, shared,
render) at no extra hop, and the event loop never waits for the network. Probes run in worker
threads too, so facts use the same client.

A slow or dead Redis never slows a request by more than one ``timeout``: the first error marks
the tier down, and until a background ping succeeds every call returns at once (a miss, a
skipped write).

Value format (big-endian)::

    magic "IIIFshr1", media type length (1 byte), identifier length (2 bytes), the entry's key
    (20 bytes: its 40 hex digits), body length (8 bytes), BLAKE2b-128 of everything before it and
    after it; then the media type (ASCII), the identifier (UTF-8) and the body.

An entry whose key or identifier is not the one asked for (values swapped or copied by hand), or
whose length or digest is wrong (truncated, damaged), is a miss: counted as corrupt and deleted.

Redis keys: ``<prefix>t:<identifier digest>:<key>`` for entries (so an identifier's entries can be
purged with one ``SCAN`` pattern) and ``<prefix>f:<digest of the name>`` for facts. A facts value
is magic ``IIIFfct1``, its length, a BLAKE2b-128 digest, then the name, NUL and the blob: bound to
its name like an entry to its key; a blob the caller's decoder refuses is damaged too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from iiifserver.cache.entry import Entry
from iiifserver.cache.keys import identifier_digest

log = logging.getLogger(__name__)
T = TypeVar("T")

MAGIC = b"IIIFshr1"
# magic, media type length, identifier length, key (20 bytes), body length, digest (16 bytes)
HEADER = struct.Struct(">8sBH20sQ16s")
_DIGEST_AT = HEADER.size - 16
DIGEST_BYTES = 16
FACTS_MAGIC = b"IIIFfct1"
FACTS_HEADER = struct.Struct(">8sQ16s")  # magic, length of the name and blob, digest

# Background reconnect: first retry after this, doubling up to the cap.
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 30.0
# While up, how often an idle tier is pinged (so the gauge tells the truth between requests).
HEALTH_INTERVAL = 5.0
_PURGE_BATCH = 500


@dataclass(frozen=True, slots=True)
class SharedStats:
    hits: int
    misses: int
    corrupt: int  # entries found damaged or bound to another key, deleted
    writes: int
    errors: int  # calls that failed (timeout, connection refused, ...)
    skipped: int  # calls not made while the tier was down
    too_large: int  # entries over max_entry_bytes, not written
    up: bool
    facts_hits: int
    facts_misses: int
    facts_writes: int


class SharedCache:
    """Entries and facts in one Redis database; every method blocks and never raises.

    Thread-safe: redis-py's connection pool hands each thread its own connection. Retries are
    off (the background reconnect is the only retry), so one failed call costs at most
    ``timeout`` seconds, and only the calls in flight when Redis went away pay it.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.1,
        max_entry_bytes: int = 1024 * 1024,
        ttl: int = 0,
        prefix: str = "iiifserver:",
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.max_entry_bytes = max_entry_bytes
        self.ttl = ttl if ttl > 0 else None
        self.prefix = prefix
        self._client: Any = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            health_check_interval=0,
        )
        self._lock = threading.Lock()  # counters and the up/down state
        self._up: bool | None = None  # None: not known yet (before the first ping)
        self._hits = self._misses = self._corrupt = self._writes = 0
        self._errors = self._skipped = self._too_large = 0
        self._facts_hits = self._facts_misses = self._facts_writes = 0

    # --- state -----------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up is True

    @property
    def where(self) -> str:
        """The URL without its password, for log lines."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
            was_up, self._up = self._up, False
        if was_up is not False:  # one line per outage, not one per request
            log.warning(
                "shared cache %s unreachable (%s): serving without it, reconnecting in the background",
                self.where,
                exc.__class__.__name__,
            )

    def _answered(self) -> None:
        if self._up is None:  # the first call before any ping: it is up
            self._up = True

    def _usable(self) -> bool:
        if self._up is not False:  # up, or not known yet: the first call finds out
            return True
        with self._lock:
            self._skipped += 1
        return False

    def ping(self) -> bool:
        """Ask Redis whether it is there; marks the tier up or down (and logs the change)."""
        try:
            self._client.ping()
        except Exception as exc:
            self._failed(exc)
            return False
        with self._lock:
            was_up, self._up = self._up, True
        if was_up is False:
            log.info("shared cache %s reachable again", self.where)
        return True

    async def keep_connected(self, run_blocking: Callable[..., Awaitable[Any]]) -> None:
        """Run for the process's life (a task): ping while up, reconnect with back-off while down.

        ``run_blocking(fn)`` runs ``fn`` in a worker thread. Only this task ever turns a down
        tier up again, so requests never wait for a reconnect.
        """
        delay = RECONNECT_FIRST
        while True:
            try:
                ok: bool = await run_blocking(self.ping)
            except asyncio.CancelledError:
                raise
            except Exception:  # a lane's 503: try again later
                ok = self.up
            if ok:
                delay = RECONNECT_FIRST
                await asyncio.sleep(HEALTH_INTERVAL)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:
            log.debug("closing the shared cache client: %r", exc)

    # --- entries ---------------------------------------------------------------------------------

    def entry_key(self, identifier: str, key: str) -> str:
        return f"{self.prefix}t:{identifier_digest(identifier)}:{key}"

    def get(self, identifier: str, key: str) -> Entry | None:
        """The entry, or None: a miss, a damaged or foreign value (deleted), or Redis unusable."""
        if not self._usable():
            return None
        name = self.entry_key(identifier, key)
        try:
            data: bytes | None = self._client.get(name)
        except Exception as exc:
            self._failed(exc)
            return None
        self._answered()
        if data is None:
            with self._lock:
                self._misses += 1
            return None
        entry = decode_entry(data, identifier, key)
        if entry is None:
            with self._lock:
                self._corrupt += 1
                self._misses += 1
            log.warning("shared cache entry %s is damaged or holds another key's entry; deleted", key)
            self._delete(name)
            return None
        with self._lock:
            self._hits += 1
        return entry

    def put(self, identifier: str, key: str, entry: Entry) -> bool:
        """Store ``entry`` (replacing any value of its key); False if not stored."""
        if len(entry.body) > self.max_entry_bytes:
            with self._lock:
                self._too_large += 1
            return False
        if not self._usable():
            return False
        try:
            self._client.set(self.entry_key(identifier, key), encode_entry(entry, key), ex=self.ttl)
        except Exception as exc:
            self._failed(exc)
            return False
        self._answered()
        with self._lock:
            self._writes += 1
        return True

    def purge(self, identifier: str | None) -> int:
        """Delete ``identifier``'s entries (all entries for None; facts stay: they are keyed by
        source version); how many. A ``SCAN``: purges are rare, and an index would cost every put."""
        if not self._usable():
            return 0
        pattern = f"{self.prefix}t:{identifier_digest(identifier) if identifier is not None else '*'}:*"
        removed = 0
        try:
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=_PURGE_BATCH):
                batch.append(name)
                if len(batch) >= _PURGE_BATCH:
                    removed += int(self._client.unlink(*batch))
                    batch = []
            if batch:
                removed += int(self._client.unlink(*batch))
        except Exception as exc:
            self._failed(exc)
        return removed

    def _delete(self, name: str) -> None:
        try:
            self._client.unlink(name)
        except Exception as exc:
            self._failed(exc)

    # --- facts (opaque blobs: the caller encodes them) -------------------------------------------

    def get_facts(self, name: str) -> bytes | None:
        """The blob stored under ``name``, or None (missing, damaged: deleted, or Redis unusable)."""
        return self.load_facts(name, bytes)

    def load_facts(self, name: str, decode: Callable[[bytes], T]) -> T | None:
        """``decode`` of the blob stored under ``name``, or None: missing, Redis unusable, or damaged
        (a wrong digest, another name's value, or a blob ``decode`` refuses with ``ValueError``:
        another encoding version, say), which is counted as corrupt and deleted."""
        if not self._usable():
            return None
        redis_key = self._facts_key(name)
        try:
            data: bytes | None = self._client.get(redis_key)
        except Exception as exc:
            self._failed(exc)
            return None
        self._answered()
        value: T | None = None
        blob = decode_facts(data, name) if data is not None else None
        if blob is not None:
            try:
                value = decode(blob)
            except ValueError:
                value = None
        with self._lock:
            if value is None:
                self._facts_misses += 1
            else:
                self._facts_hits += 1
            if data is not None and value is None:
                self._corrupt += 1
        if data is not None and value is None:
            log.warning("shared facts entry %s is damaged or of another format; deleted", redis_key)
            self._delete(redis_key)
        return value

    def put_facts(self, name: str, blob: bytes) -> bool:
        if not self._usable():
            return False
        try:
            self._client.set(self._facts_key(name), encode_facts(name, blob), ex=self.ttl)
        except Exception as exc:
            self._failed(exc)
            return False
        self._answered()
        with self._lock:
            self._facts_writes += 1
        return True

    def _facts_key(self, name: str) -> str:
        return f"{self.prefix}f:{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"

    @property
    def stats(self) -> SharedStats:
        with self._lock:
            return SharedStats(
                hits=self._hits,
                misses=self._misses,
                corrupt=self._corrupt,
                writes=self._writes,
                errors=self._errors,
                skipped=self._skipped,
                too_large=self._too_large,
                up=self._up is True,
                facts_hits=self._facts_hits,
                facts_misses=self._facts_misses,
                facts_writes=self._facts_writes,
            )


# --- value formats (pure) -------------------------------------------------------------------------


def _digest(*parts: bytes | memoryview) -> bytes:
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for part in parts:
        h.update(part)
    return h.digest()


def encode_entry(entry: Entry, key: str) -> bytes:
    media = entry.media_type.encode("ascii")
    ident = entry.identifier.encode("utf-8", "surrogatepass")
    if len(media) > 255 or len(ident) > 65535:
        raise ValueError("media type or identifier too long for a shared entry")
    head = HEADER.pack(MAGIC, len(media), len(ident), bytes.fromhex(key), len(entry.body), b"")[:_DIGEST_AT]
    tail = media + ident
    return b"".join((head, _digest(head, tail, entry.body), tail, entry.body))


def decode_entry(data: bytes, identifier: str, key: str) -> Entry | None:
    """The entry in ``data`` if it is complete, intact, and the one of ``identifier`` and ``key``."""
    if len(data) < HEADER.size:
        return None
    magic, media_length, ident_length, stored_key, body_length, digest = HEADER.unpack_from(data)
    start = HEADER.size + media_length + ident_length
    if magic != MAGIC or len(data) != start + body_length or stored_key != bytes.fromhex(key):
        return None
    view = memoryview(data)
    if _digest(view[:_DIGEST_AT], view[HEADER.size : start], view[start:]) != digest:
        return None
    try:
        media_type = data[HEADER.size : HEADER.size + media_length].decode("ascii")
        stored_identifier = data[HEADER.size + media_length : start].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    if stored_identifier != identifier:
        return None
    return Entry(data[start:], media_type, identifier)


def encode_facts(name: str, blob: bytes) -> bytes:
    payload = name.encode("utf-8", "surrogatepass") + b"\0" + blob
    head = FACTS_HEADER.pack(FACTS_MAGIC, len(payload), b"")[: FACTS_HEADER.size - DIGEST_BYTES]
    return head + _digest(head, payload) + payload


def decode_facts(data: bytes, name: str) -> bytes | None:
    if len(data) < FACTS_HEADER.size:
        return None
    magic, length, digest = FACTS_HEADER.unpack_from(data)
    payload = data[FACTS_HEADER.size :]
    if magic != FACTS_MAGIC or len(payload) != length:
        return None
    if _digest(data[: FACTS_HEADER.size - DIGEST_BYTES], payload) != digest:
        return None
    stored_name, sep, blob = payload.partition(b"\0")
    if not sep or stored_name != name.encode("utf-8", "surrogatepass"):
        return None
    return blob
