"""The stamp: a small hidden JSON file next to each output recording how it was made.

Owns: the stamp's file name (``.NAME.tif.convert.json`` beside ``NAME.tif``), its content,
reading it (a missing or unreadable stamp is no stamp: the output is made again) and writing
it atomically. Why a sidecar: libvips writes no custom TIFF tags, and the TIFF
ImageDescription belongs to the master's own description, which is kept.
Must not know: pyvips, how outputs are made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from iiifserver.ingest.plan import FileState, Stamp

STAMP_SUFFIX = ".convert.json"


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


def write_stamp(output: Path, source: Path, source_state: FileState, fingerprint: str) -> None:
    """Record the output as it is now; call right after it is moved into place."""
    st = output.stat()
    record = {
        "converter": "iiifserver convert",
        "source": os.path.realpath(source),
        "source_size": source_state.size,
        "source_mtime_ns": source_state.mtime_ns,
        "fingerprint": fingerprint,
        "output_size": st.st_size,
        "output_mtime_ns": st.st_mtime_ns,
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
