"""Which responses earn a place in a cache tier: those asked for again.

Owns: counting, per worker process and bounded in keys, how often each rendered response that is
not yet in the lower tiers has been asked for (rendered, or found in the memory tier), and saying
when it has been asked ``after`` times: then it is written (``Admission``, the disk tier); and
remembering, in a fixed few hundred kilobytes, which keys were asked for lately, so that a
response cheap to make again is kept in memory only from its second ask (``Doorkeeper``).
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
from typing import Final

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


# The doorkeeper's bits per generation (2**22: 512 KiB) and first sightings per generation: a
# generation holds at most 2**18 keys, so at most 1 in 16 of its bits is set and a key never
# seen passes as seen again at most 6 % of the time (it is then kept at once, as before).
DOORKEEPER_BITS: Final = 1 << 22
DOORKEEPER_GENERATION: Final = 1 << 18


class Doorkeeper:
    """``seen_again(key)``: True when ``key`` was seen lately, else False (and it is noted).

    Why: a whole stored tile read from the page cache costs about a tenth of a millisecond to
    answer again; keeping every one in the memory tier (and its answer in the protocol's memo)
    made each cold tile allocate an entry that evicts another, which cost 3-11 % of the cold
    deep-zoom throughput (the kernel's page faults on the allocator's fresh pages among it) for
    tiles most of which nobody asks for again. Kept from the second ask, a tile many visitors
    view is in memory after its second view; a viewer's own repeats are its browser's.

    One bit per key (its ``hash`` modulo the bits), in two generations: the current one takes
    new keys, and when it has taken ``generation`` of them it becomes the previous one and a
    cleared one takes over. A key is seen again when its bit is set in either, so a repeat is
    recognised within the last ``generation`` to ``2 * generation`` first sightings. Fixed
    memory and no allocation per key: the point is to spare the allocator. A collision only
    keeps a response at its first ask, never refuses one. Event loop only.
    """

    def __init__(self, bits: int = DOORKEEPER_BITS, generation: int = DOORKEEPER_GENERATION) -> None:
        if bits < 8 or bits & (bits - 1):
            raise ValueError("bits must be a power of two of at least 8")
        self._mask = bits - 1
        self._generation = max(1, generation)
        self._current = bytearray(bits >> 3)
        self._previous = bytearray(bits >> 3)
        self._noted = 0  # first sightings in the current generation
        self.first_asks = 0  # keys not seen lately, since start (what was not kept)

    def seen_again(self, key: str) -> bool:
        h = hash(key) & self._mask
        byte, bit = h >> 3, 1 << (h & 7)
        current = self._current
        if current[byte] & bit:
            return True
        current[byte] |= bit  # a repeat from the previous generation is carried into this one
        if self._previous[byte] & bit:
            return True
        self.first_asks += 1
        self._noted += 1
        if self._noted >= self._generation:
            self._previous, self._current = current, bytearray(len(current))
            self._noted = 0
        return False

    def forget(self) -> None:
        """Nothing was seen (as when every cached response is purged)."""
        self._current = bytearray(len(self._current))
        self._previous = bytearray(len(self._previous))
        self._noted = 0
