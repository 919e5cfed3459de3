"""Which renders earn a place in the disk tier: those asked for again.

Owns: counting, per worker process and bounded in keys, how often each rendered response that is
not yet in the lower tiers has been asked for (rendered, or found in the memory tier), and saying
when it has been asked ``after`` times: then it is written.
Must not know: the tiers themselves, HTTP, rendering.

Why: most renders of a scholarly workload are asked for once (a cited region, a download), and
writing each to the disk tier (a file created and renamed, later evicted) cost about 14 % of the
throughput of the benchmark's unaligned regions, ext4's inode allocation plain in the kernel's
profile, for entries nobody reads again. A response asked for twice is written at its second
request (from memory, when it is still there: no second render). Counting is per worker process:
a thumbnail asked of two workers may be rendered once by each before it is written. The shared
tier of several instances takes every render (``ImageService``): another instance's next ask,
which no count here sees, is what it is for.
"""

from __future__ import annotations

from collections import OrderedDict

# Keys counted at once: about 150 bytes each, so 10 MB per worker at most; the oldest is forgotten
# first (a render asked for again after 65,536 other renders counts from one again).
DEFAULT_MAX_KEYS = 65_536


class Admission:
    """``rendered(key)`` and ``hit(key)`` count an ask; True: write the entry to the disk tier now."""

    def __init__(self, after: int, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.after = max(1, after)
        self.max_keys = max(1, max_keys)
        self.deferred = 0  # renders not written when made (asked for fewer than ``after`` times)
        self.admitted_on_hit = 0  # written when a memory hit made them due
        self._counts: OrderedDict[str, int] = OrderedDict()  # the event loop's alone: no lock

    def rendered(self, key: str) -> bool:
        """A fresh render of ``key``: True when it is due for the disk tier now."""
        if self.after == 1:
            return True
        return self._count(key, new=True)

    def hit(self, key: str) -> bool:
        """``key`` found in the memory tier: True when that render is now due for the disk tier
        (only renders still waiting are counted: a stored tile's or a written entry's hit is not)."""
        if not self._counts:  # the hot path of stored tiles: nothing waits
            return False
        return self._count(key, new=False)

    def forget(self, key: str | None = None) -> None:
        """Stop counting ``key`` (None: every key), as when its entry is purged."""
        if key is None:
            self._counts.clear()
        else:
            self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._counts)

    def _count(self, key: str, *, new: bool) -> bool:
        count = self._counts.pop(key, 0)
        if count == 0 and not new:
            return False
        count += 1
        if count >= self.after:
            if not new:
                self.admitted_on_hit += 1
            return True
        if new and count == 1:
            self.deferred += 1
        self._counts[key] = count
        while len(self._counts) > self.max_keys:
            self._counts.popitem(last=False)
        return False
