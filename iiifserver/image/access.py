"""Access rules of images: which source files are restricted, and their degraded tier.

Owns: ``Rule`` (restricted or not, the degraded tier's longest side), ``AccessRules`` (the rules
of one worker process, keyed by the *real* source file so that no alias of a restricted image,
another spelling, a symlink or the name with its extension, reaches it as open), the degraded
tier's identifiers (``<identifier>;degraded``) and its scale bound.
Must not know: descriptions (``presentation/access.py`` builds the rules from them), HTTP,
sessions and tokens (``web/auth.py``).

An open image has no entry: the request path asks ``rules.get(path)`` once, a dict lookup on a
path object the source registry keeps, and finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace

from iiifserver.errors import IIIFError
from iiifserver.image.source_info import SourceInfo

DEGRADED_SUFFIX = ";degraded"
# The tier a cache key carries (appended to the render tag): restricted and degraded responses
# never share an entry with open ones, whatever spelling reached them.
TIER_RESTRICTED = "/tier:restricted"
TIER_DEGRADED = "/tier:degraded"


@dataclass(frozen=True, slots=True)
class Rule:
    """The rule of one source file: restricted (login needed for the full image), and the longer
    side of the degraded tier anyone may see (None: no degraded tier)."""

    restricted: bool = True
    degraded_max: int | None = None

    def merged(self, other: Rule) -> Rule:
        """Two descriptions name the same file: the stricter of each part wins (fail closed)."""
        sizes = [size for size in (self.degraded_max, other.degraded_max) if size is not None]
        both_degraded = self.degraded_max is not None and other.degraded_max is not None
        return Rule(self.restricted or other.restricted, min(sizes) if sizes and both_degraded else None)


def split_degraded(identifier: str) -> tuple[str, bool]:
    """``"a;degraded"`` -> ``("a", True)``; anything else unchanged."""
    if identifier.endswith(DEGRADED_SUFFIX):
        return identifier[: -len(DEGRADED_SUFFIX)], True
    return identifier, False


def virtual_info(info: SourceInfo, degraded_max: int) -> SourceInfo:
    """The degraded tier as an image of its own: the source scaled to ``degraded_max`` pixels on its
    longer side (never larger than the source). Requests of the degraded tier are in its pixels,
    so every zoom level a viewer derives from its info.json exists (Cantaloupe's scale constraint
    does the same)."""
    longest = max(info.width, info.height)
    if longest <= degraded_max:
        return info
    return replace(
        info,
        width=max(1, round(info.width * degraded_max / longest)),
        height=max(1, round(info.height * degraded_max / longest)),
    )


def real_box(x: int, y: int, w: int, h: int, info: SourceInfo, virtual: SourceInfo) -> tuple[int, int, int, int]:
    """A region in the degraded tier's pixels -> the same region in the source's pixels."""
    sx, sy = info.width / virtual.width, info.height / virtual.height
    x0, y0 = min(info.width - 1, int(x * sx)), min(info.height - 1, int(y * sy))
    x1, y1 = min(info.width, round((x + w) * sx)), min(info.height, round((y + h) * sy))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def within_degraded(info: SourceInfo, degraded_max: int, region_w: int, region_h: int, out_w: int, out_h: int) -> bool:
    """Whether an output of ``out_w`` x ``out_h`` from a region of ``region_w`` x ``region_h`` shows
    the image at no more than the degraded tier's resolution (``degraded_max`` px on its longer side).
    One pixel of rounding is allowed per side, as sizes round up."""
    longest = max(info.width, info.height)
    return out_w * longest <= region_w * degraded_max + longest and out_h * longest <= region_h * degraded_max + longest


class _Unloaded(dict[Hashable, Rule]):
    """The rules before the descriptions were first read: every file counts as ruled, so nothing
    is answered without the full check, which waits for the rules."""

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: Hashable, default: Rule | None = None) -> Rule | None:  # type: ignore[override]
        return UNLOADED


UNLOADED = Rule(True, None)


class AccessRules:
    """Source file (real path or object) -> ``Rule``; no entry for an open file.

    ``rules`` is replaced whole when the descriptions change; ``on_change`` callbacks run then
    (the response memo is emptied: it may hold answers made under the old rules)."""

    def __init__(self) -> None:
        self.rules: dict[Hashable, Rule] = _Unloaded()
        self.by_identifier: dict[str, Rule] = {}  # as described, for pages and manifests
        self._listeners: list[Callable[[], None]] = []

    @property
    def loaded(self) -> bool:
        return not isinstance(self.rules, _Unloaded)

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def replace(self, rules: Mapping[Hashable, Rule], by_identifier: Mapping[str, Rule]) -> bool:
        """Install new rules; True when they differ from the current ones."""
        if self.loaded and dict(rules) == self.rules and dict(by_identifier) == self.by_identifier:
            return False
        self.rules = dict(rules)
        self.by_identifier = dict(by_identifier)
        for listener in self._listeners:
            listener()
        return True


class Unauthorized(IIIFError):
    """A restricted image asked for without a valid session, token or trusted user."""

    status = 401


class OverDegradedTier(IIIFError):
    """A request of the degraded tier above its resolution."""

    status = 403
