"""Identifier -> source file, with the containment checks.

Owns: mapping a decoded identifier to a regular file under the image root and its
``SourceVersion``. ``Source`` is a protocol so that other stores (S3) can come later.
``RootedSource`` puts several roots behind one ``Source``: identifiers under a configured prefix
resolve in that prefix's root (a folder or an object store, ``object_sources``), the others in
the default root.
Must not know: image formats, HTTP.

Rules (documented in the README):
- ``/`` in an identifier (``%2F`` in the URL) addresses a sub-folder; empty, ``.`` and ``..``
  segments are refused, as is anything whose real path leaves the image root (symlinks included).
- The identifier may name the file with or without its extension; without one, the known
  extensions are tried in a fixed order.
- Only regular files are served (not folders, FIFOs, devices).
- Names are compared as NFC; a file stored with a decomposed (NFD) name is found too.
"""

from __future__ import annotations

import errno
import os
import random
import stat
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cachetools

from iiifserver.errors import NotFound, SourceChanged
from iiifserver.image.object_store import ObjectPath
from iiifserver.image.source_info import SourceVersion

PYRAMID_EXTENSIONS = (".tif", ".tiff", ".ptif")
PLAIN_EXTENSIONS = (".jpg", ".jpeg", ".png")
JP2_EXTENSIONS = (".jp2", ".j2k", ".jpx")  # JPEG 2000: resolution levels are its pyramid
EXTENSIONS = PYRAMID_EXTENSIONS + PLAIN_EXTENSIONS + JP2_EXTENSIONS


@dataclass(frozen=True, slots=True)
class SourceFile:
    identifier: str
    path: Path | ObjectPath  # the real path, inside the root; or the object in its store
    version: SourceVersion
    name: str = ""  # the file as addressed, relative to the root, with its extension: the cache identity

    @property
    def cache_name(self) -> str:
        return self.name or self.identifier


def cache_names(identifier: str) -> list[str]:
    """Every file name ``identifier`` may address: what a purge by identifier must cover."""
    names = [identifier] if identifier.lower().endswith(EXTENSIONS) else []
    return names + [identifier + ext for ext in EXTENSIONS]


# What a failed lookup of a candidate name means "no such image" for (anything else is raised).
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EACCES)


class Source(Protocol):
    def resolve(self, identifier: str) -> SourceFile: ...

    def recheck(self, file: SourceFile) -> SourceFile:
        """``resolve(file.identifier)`` again, knowing it was ``file``: may be cheaper."""
        ...


class FilesystemSource:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def resolve(self, identifier: str) -> SourceFile:
        segments = identifier.split("/")
        if any(seg in ("", ".", "..") for seg in segments) or "\x00" in identifier:
            raise NotFound(f"no image {identifier!r}", parameter="identifier")
        for candidate in self._candidates(identifier):
            found = self._stat_inside_root(candidate)
            if found is not None:
                real, st = found
                version = SourceVersion.of(st)
                # Named as addressed (not the symlink target): aliases keep caches of their own.
                return SourceFile(identifier, real, version, unicodedata.normalize("NFC", candidate))
        raise NotFound(f"no image {identifier!r}", parameter="identifier")

    def recheck(self, file: SourceFile) -> SourceFile:
        """One ``stat`` when ``file`` is unchanged, else a full ``resolve``.

        ``resolve`` walks the path (``realpath``: a system call per component), and in a worker
        thread of a loaded server every system call waits for the GIL again. The same candidate
        name still naming a regular file of the same inode, size and modification time is the
        same file; the name must be the identifier's first candidate, so that a file added
        since under a name that takes precedence is not missed.
        """
        if not file.name or self._candidates(file.identifier)[:1] != [file.name]:
            return self.resolve(file.identifier)
        try:
            st = os.stat(os.path.join(self.root, file.name))
        except OSError:
            return self.resolve(file.identifier)
        if stat.S_ISREG(st.st_mode) and SourceVersion.of(st) == file.version:
            return file
        return self.resolve(file.identifier)

    def _candidates(self, identifier: str) -> list[str]:
        names = [identifier]
        nfd = unicodedata.normalize("NFD", identifier)
        if nfd != identifier:
            names.append(nfd)
        out: list[str] = []
        for name in names:
            if name.lower().endswith(EXTENSIONS):
                out.append(name)
            out.extend(name + ext for ext in EXTENSIONS)
        return out

    def _stat_inside_root(self, relative: str) -> tuple[Path, os.stat_result] | None:
        candidate = os.path.join(self.root, relative)
        if "/" not in relative:
            # A name right under the (real) root that is no symlink is its own real path: one lstat
            # instead of realpath's walk over every component of the root (a system call each, and
            # under load each waits for the GIL again). Symlinks still go through realpath below.
            try:
                st = os.lstat(candidate)
            except OSError as exc:
                if exc.errno in _ABSENT:
                    return None
                raise
            if stat.S_ISREG(st.st_mode):
                return Path(candidate), st
            if not stat.S_ISLNK(st.st_mode):
                return None  # folders, FIFOs (opening one blocks), devices, sockets
        try:
            real = os.path.realpath(candidate, strict=True)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise
        if os.path.commonpath((self.root, real)) != str(self.root):
            return None  # a symlink (or anything else) that leaves the image root
        try:
            st = os.stat(real)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None  # folders, FIFOs (opening one blocks), devices, sockets
        return Path(real), st


def raise_if_changed(path: Path | ObjectPath, version: SourceVersion) -> None:
    """Raise ``SourceChanged`` unless ``path`` still holds ``version``. Blocking: one ``stat``
    (an object: one ``HEAD``).

    For the error paths (and the one-off probe) of reads that open a file by name: a file replaced
    between the stat that named its version and the open is read as another file (other
    dimensions, other tile offsets), and what fails on it is a retryable change, not damage.
    """
    if isinstance(path, ObjectPath):
        head = path.store.head(path.bucket, path.key)
        if head is None or (head.etag, head.size) != (path.etag, path.size):
            raise SourceChanged(str(path))
        return
    try:
        st = os.stat(path)
    except OSError:
        raise SourceChanged(str(path)) from None
    if SourceVersion.of(st) != version:
        raise SourceChanged(str(path))


class RootedSource:
    """Several roots behind one ``Source``: ``prefix/rest`` resolves ``rest`` in ``prefix``'s root.

    The longest matching prefix wins; identifiers under no prefix resolve in ``default`` (None:
    they are not found). The file is named by the whole identifier (``prefix/name``), so two
    roots' files of one name keep caches of their own.
    """

    def __init__(self, default: Source | None, roots: dict[str, Source]) -> None:
        self.default = default
        self.roots = dict(sorted(roots.items(), key=lambda item: -len(item[0])))

    def _route(self, identifier: str) -> tuple[str, Source, str]:
        for prefix, source in self.roots.items():
            if identifier.startswith(prefix + "/") and len(identifier) > len(prefix) + 1:
                return prefix + "/", source, identifier[len(prefix) + 1 :]
        if self.default is None:
            raise NotFound(f"no image {identifier!r}", parameter="identifier")
        return "", self.default, identifier

    def resolve(self, identifier: str) -> SourceFile:
        lead, source, rest = self._route(identifier)
        return _renamed(source.resolve(rest), identifier, lead)

    def recheck(self, file: SourceFile) -> SourceFile:
        lead, source, rest = self._route(file.identifier)
        if not lead:
            return source.recheck(file)
        inner = SourceFile(rest, file.path, file.version, file.name[len(lead) :] if file.name else "")
        return _renamed(source.recheck(inner), file.identifier, lead)


def _renamed(file: SourceFile, identifier: str, lead: str) -> SourceFile:
    if not lead:
        return file
    return SourceFile(identifier, file.path, file.version, lead + file.name if file.name else "")


# Draws the spread of re-check times: a generator of its own, as the ``random`` module's state is
# everyone's in the process (and watched by property-based tests).
_DUE_SPREAD = random.Random()


class VersionCache:
    """identifier -> SourceFile, trusted for ``interval`` seconds after its last stat.

    Lets hot requests skip the stat (and the thread hop it needs) entirely. A source replaced on
    disk is noticed at most ``interval`` seconds later; the cache key includes the version, so
    from then on only the new file's tiles are served. ``interval`` 0 stats on every request.
    Used from the event loop only.
    """

    def __init__(
        self,
        interval: float,
        maxsize: int = 65536,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _DUE_SPREAD.random,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._random = random
        self._files: cachetools.LRUCache[str, tuple[float, SourceFile]] = cachetools.LRUCache(maxsize)
        self._due: dict[str, float] = {}
        self._used: dict[str, float] = {}  # identifier -> when a lookup last found it (``in_use``)

    def get(self, identifier: str) -> SourceFile | None:
        if self.interval <= 0:
            return None
        hit = self._files.get(identifier)
        if hit is None:
            return None
        checked_at, file = hit
        if self._clock() - checked_at > self.interval:
            return None
        return file

    def peek(self, identifier: str) -> SourceFile | None:
        """The file last seen for ``identifier``, however old (a hint for a cheaper re-check)."""
        hit = self._files.get(identifier)
        return None if hit is None else hit[1]

    def lookup(self, identifier: str) -> tuple[SourceFile | None, bool]:
        """``get``, and whether the file is due for a re-check in the background: busy identifiers
        are re-checked before they expire, so no request of theirs waits for a stat.

        Due after half to nine tenths of the interval, drawn per check: identifiers first seen
        together (a viewer opening a collection) are not re-checked in one synchronised wave.
        """
        if self.interval <= 0:
            return None, False
        hit = self._files.get(identifier)
        if hit is None:
            return None, False
        now = self._clock()
        self._used[identifier] = now
        if now - hit[0] > self.interval:
            return None, False
        return hit[1], now > self._due.get(identifier, hit[0] + self.interval / 2)

    def in_use(self, window: float) -> list[str]:
        """Identifiers a lookup found within the last ``window`` seconds whose file was last
        checked half an interval ago or more (expired ones included): what a keeper re-checks
        before a request finds them expired. Forgets the uses older than ``window``."""
        now = self._clock()
        due, idle = [], []
        for identifier, used in self._used.items():
            hit = self._files.get(identifier)
            if hit is None or now - used > window:
                idle.append(identifier)
            elif now - hit[0] >= self.interval / 2:
                due.append(identifier)
        for identifier in idle:
            del self._used[identifier]
        return due

    def in_use_count(self) -> int:
        """Identifiers whose last use ``in_use`` has not forgotten yet."""
        return len(self._used)

    def put(self, file: SourceFile) -> None:
        if self.interval > 0:
            now = self._clock()
            self._files[file.identifier] = (now, file)
            self._due[file.identifier] = now + self.interval * (0.5 + 0.4 * self._random())
            if len(self._due) > 2 * self._files.maxsize:  # entries evicted from _files linger here
                self._due = {name: self._due[name] for name in self._files if name in self._due}

    def forget(self, identifier: str | None = None) -> None:
        if identifier is None:
            self._files.clear()
            self._due.clear()
            self._used.clear()
        else:
            self._files.pop(identifier, None)
            self._used.pop(identifier, None)
            self._due.pop(identifier, None)
