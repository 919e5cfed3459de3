"""The stamp: a small hidden JSON file next to each output recording how it was made.

Owns: the stamp's file name (``.NAME.tif.convert.json`` beside ``NAME.tif``), its content
(including the SHA-256 of the output, which ``iiifserver verify`` checks the file against later),
reading it (a missing or unreadable stamp is no stamp: the output is made again) and writing
it atomically. Why a sidecar: libvips writes no custom TIFF tags, and the TIFF
ImageDescription belongs to the master's own description, which is kept.
Must not know: pyvips, how outputs are made.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from iiifserver.ingest.plan import FileState, Stamp

STAMP_SUFFIX = ".convert.json"
CHECKSUM = "output_sha256"  # the stamp field; absent in stamps written before checksums were kept


def stamp_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{STAMP_SUFFIX}")


def file_state(path: Path) -> FileState | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return FileState(st.st_size, st.st_mtime_ns)


def read_stamp(output: Path) -> Stamp | None:
    try:
        data = json.loads(stamp_path(output).read_text(encoding="utf-8"))
        return Stamp(
            source=str(data["source"]),
            source_size=int(data["source_size"]),
            source_mtime_ns=int(data["source_mtime_ns"]),
            fingerprint=str(data["fingerprint"]),
            output_size=int(data["output_size"]),
            output_mtime_ns=int(data["output_mtime_ns"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex. Blocking; reads the file once, in chunks."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def read_checksum(output: Path) -> str | None:
    """The output's SHA-256 as its stamp records it; None without a stamp or a checksum in it."""
    try:
        data = json.loads(stamp_path(output).read_text(encoding="utf-8"))
        value = data[CHECKSUM]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) and len(value) == 64 else None


def write_stamp(output: Path, source: Path, source_state: FileState, fingerprint: str) -> None:
    """Record the output as it is now; call right after it is moved into place."""
    # Hashed before the stat, so a change between the two shows as a size or mtime mismatch; the
    # file was just written, so this read is served from the page cache.
    checksum = file_sha256(output)
    st = output.stat()
    record = {
        "converter": "iiifserver convert",
        "source": os.path.realpath(source),
        "source_size": source_state.size,
        "source_mtime_ns": source_state.mtime_ns,
        "fingerprint": fingerprint,
        "output_size": st.st_size,
        "output_mtime_ns": st.st_mtime_ns,
        CHECKSUM: checksum,
    }
    path = stamp_path(output)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stamp(output: Path) -> None:
    stamp_path(output).unlink(missing_ok=True)
