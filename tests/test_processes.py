"""is_alive: this process is, a reaped child is not."""

from __future__ import annotations

import os
import subprocess
import sys

from iiifserver.processes import is_alive


def test_this_process_is_alive() -> None:
    assert is_alive(os.getpid())


def test_a_process_that_ended_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names nothing now
    assert not is_alive(child.pid)
