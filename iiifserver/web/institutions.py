"""The institutions of a running server: the current registry, its reload, and what HTTP needs of it.

Owns: holding the ``Institutions`` registry of this worker process and swapping it whole when
the institutions file changes (checked by modification time, off the event loop, at most every
``institutions_check_interval`` seconds; a file with errors keeps the old registry and logs why,
once per version of the file), the image ``Source`` that follows the registry (each institution's
slug is an identifier prefix routed to its root, beside ``image_roots``), the base URL of an
institution's documents (its ``public_url``) and the institution a request's Host names.
Must not know: how the tables are parsed (``iiifserver.institutions``), catalogues, caches.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.types import Scope

from iiifserver.config import TrustedProxies
from iiifserver.image.object_sources import make_source
from iiifserver.image.object_store import ObjectStore
from iiifserver.image.sources import Source, SourceFile
from iiifserver.institutions import NONE, Institution, InstitutionError, Institutions, load_institutions
from iiifserver.web.urls import first_values

log = logging.getLogger(__name__)


class SwitchableSource:
    """A ``Source`` whose roots can be replaced whole; each call goes to the roots of that moment."""

    def __init__(self, source: Source) -> None:
        self.current = source

    def resolve(self, identifier: str) -> SourceFile:
        return self.current.resolve(identifier)

    def recheck(self, file: SourceFile) -> SourceFile:
        return self.current.recheck(file)


class Deployment:
    """This worker's institutions: ``registry`` now, and ``check`` to pick up a changed file.

    ``default_root`` and ``image_roots`` are the settings' own roots; every institution adds
    ``slug -> its images``. ``on_swap`` is told after each swap (the image side then forgets the
    files it resolved, so nothing of a removed or moved institution is served from memory).
    """

    def __init__(
        self,
        path: Path | None,
        default_root: str | Path,
        image_roots: dict[str, str],
        store: ObjectStore | None,
        environ: Callable[[], dict[str, str]] = lambda: dict(os.environ),
    ) -> None:
        self.path = path
        self._default_root = default_root
        self._image_roots = image_roots
        self._store = store
        self._environ = environ
        self._stamp = self._stat()
        self._failed_stamp: tuple[int, int, int] | None = None
        self.on_swap: list[Callable[[Institutions], None]] = []
        try:
            self.registry = self._load()
            self.source = SwitchableSource(self._source(self.registry))
        except InstitutionError as exc:
            # ``serve`` refuses such a file before starting; a worker started later (a SIGHUP, a
            # crashed worker replaced) while it is wrong serves the rest, and the fixed file then.
            log.error("institutions not loaded, none is served until the file is fixed: %s", exc)
            self._failed_stamp = self._stamp
            self.registry = NONE
            self.source = SwitchableSource(self._source(NONE))

    def current(self) -> Institutions:
        return self.registry

    def access_default(self, identifier: str) -> tuple[str, int | None] | None:
        """The institution-wide access default of ``identifier`` (``access``, ``degraded_max`` or
        None), for the authorization rules; None outside every institution."""
        item = self.registry.of_identifier(identifier)
        return None if item is None else (item.access, item.degraded_max or None)

    def _stat(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> Institutions:
        if self.path is None:
            return NONE
        registry = load_institutions(self.path, self._environ())
        clash = sorted(set(registry.by_slug) & set(self._image_roots))
        if clash:
            raise InstitutionError(f"institutions.{clash[0]}: the slug is already an image_roots prefix")
        return registry

    def _source(self, registry: Institutions) -> Source:
        try:
            return make_source(self._default_root, {**self._image_roots, **registry.image_roots()}, self._store)
        except ValueError as exc:  # an s3:// root on a server started without object storage
            raise InstitutionError(f"institutions: {exc} (restart the server to add the first s3:// root)") from None

    def check(self) -> bool:
        """Reload now if the file changed (blocking); True when a new registry was swapped in."""
        return self.apply(self.prepare())

    def prepare(self) -> tuple[tuple[int, int, int] | None, Institutions, Source] | None:
        """The changed file's registry and image roots, or None (unchanged, or wrong: logged).

        Blocking (a stat; the file read when it changed): runs in a worker thread."""
        stamp = self._stat()
        if stamp == self._stamp or (stamp is not None and stamp == self._failed_stamp):
            return None
        try:
            registry = self._load() if stamp is not None else NONE  # a deleted file: no institutions
            source = self._source(registry)
        except InstitutionError as exc:
            self._failed_stamp = stamp
            log.error("institutions not reloaded, the previous ones keep serving: %s", exc)
            return None
        return stamp, registry, source

    def apply(self, prepared: tuple[tuple[int, int, int] | None, Institutions, Source] | None) -> bool:
        """Swap in what ``prepare`` read (on the event loop: the listeners are the loop's)."""
        if prepared is None:
            return False
        stamp, registry, source = prepared
        self._stamp, self._failed_stamp = stamp, None
        old = {item.slug for item in self.registry.items}
        self.registry, self.source.current = registry, source
        new = {item.slug for item in registry.items}
        log.info(
            "institutions reloaded from %s: %d (added: %s; removed: %s)",
            self.path,
            len(registry.items),
            ", ".join(sorted(new - old)) or "none",
            ", ".join(sorted(old - new)) or "none",
        )
        for listener in self.on_swap:
            listener(registry)
        return True

    async def watch(self, interval: float, run_io: Callable[..., Awaitable[Any]]) -> None:
        """``prepare`` every ``interval`` seconds in a worker thread, ``apply`` on the loop."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.apply(await run_io(self.prepare))
            except asyncio.CancelledError:
                raise
            except Exception:  # a watcher that dies silently would stop every later reload
                log.exception("checking the institutions file")


def document_base(registry: Institutions, name: str, base: str) -> str:
    """The base URL of the document named ``name`` (an object id or collection path): its
    institution's ``public_url`` when it has one, else ``base`` (the request's)."""
    if not registry:
        return base
    item = registry.by_slug.get(name.partition("/")[0])
    return item.public_url if item is not None and item.public_url else base


def request_host(scope: Scope, trusted_proxies: str) -> str:
    """The Host a request was sent to: a trusted proxy's ``X-Forwarded-Host``, else its ``Host``."""
    headers = first_values(scope["headers"], _HOST_HEADERS)
    forwarded = headers.get(b"x-forwarded-host", b"")
    client = scope.get("client")
    if forwarded and client is not None and client[0] in _trusted(trusted_proxies):
        return forwarded.decode("latin-1").split(",")[0].strip()
    return headers.get(b"host", b"").decode("latin-1")


_HOST_HEADERS = (b"host", b"x-forwarded-host")


@functools.lru_cache(maxsize=16)
def _trusted(trusted_proxies: str) -> TrustedProxies:
    return TrustedProxies(trusted_proxies)  # one per setting value: its memory of CIDR matches is shared


def host_collection(registry: Institutions, host: str) -> str:
    """The collection path a landing page on ``host`` shows: its institution's, else the top one."""
    item = host_institution(registry, host)
    return item.slug if item is not None else ""


def host_institution(registry: Institutions, host: bytes | str | None) -> Institution | None:
    """The institution whose own public host ``host`` (a request's Host header) is."""
    if not registry.by_host or not host:
        return None
    text = host.decode("latin-1") if isinstance(host, bytes) else host
    return registry.of_host(text)


_IMAGE_PREFIXES = (b"/iiif/3/", b"/iiif/2/")
_PRESENTATION = b"/iiif/presentation/3/"


def institution_of_path(registry: Institutions, raw_path: bytes) -> str:
    """The slug of the institution a request's raw path is about, or "" (for metrics and logs).

    From the shape of the URL alone, no decoding beyond ``%2F``: an image identifier
    ``slug%2F...``, a manifest ``/iiif/presentation/3/slug/...`` or a collection ``.../collection/slug``.
    """
    if not registry or not raw_path.startswith(b"/iiif/"):
        return ""
    if raw_path.startswith(_IMAGE_PREFIXES):
        segment = raw_path[8:].partition(b"/")[0]
        head, sep, _ = segment.replace(b"%2f", b"%2F").partition(b"%2F")
    elif raw_path.startswith(_PRESENTATION):
        rest = raw_path[len(_PRESENTATION) :]
        if rest.startswith(b"collection/"):  # .../collection/slug[/...]
            head, sep = rest[len(b"collection/") :].partition(b"/")[0], b"/"
        else:  # .../slug/object/manifest
            head, sep, _ = rest.partition(b"/")
    else:
        return ""
    slug = head.decode("latin-1")
    return slug if sep and slug in registry.by_slug else ""
