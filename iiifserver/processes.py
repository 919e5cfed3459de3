"""Facts about other processes of this machine.

Owns: whether a process id is alive (the worker statistics of ``/admin/stats`` and the lock files
of ``convert`` both outlive their writers when those are killed).
Must not know: IIIF, the server.
"""

from __future__ import annotations

import os


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts: it is alive, just not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
