"""Access rules from the descriptions: which images are restricted, with which degraded tier.

Owns: the inheritance of ``access`` and ``degraded_max`` (page, else object, else the nearest
folder's ``_collection.yaml``, else the institution-wide default, else open), the stricter rule
when several descriptions show one image, and turning the rules by identifier into the image
side's rules by source file (``AccessRules``), refreshed with the catalogue.
Must not know: HTTP, sessions, tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from iiifserver.errors import IIIFError
from iiifserver.image.access import AccessRules, Rule
from iiifserver.image.service import ImageService
from iiifserver.presentation.catalogue import Catalogue

log = logging.getLogger(__name__)


class ManifestAccess(Protocol):
    """What manifests learn of access (``web.auth_manifests`` implements it: the services are ``web.auth``'s)."""

    def key(self, identifiers: Sequence[str]) -> str:
        """The rules of ``identifiers``, for the key of a built manifest (a rule change rebuilds it)."""
        ...

    def apply(self, document: dict[str, Any], pages: Sequence[str], base: str) -> None:
        """Add the services of restricted pages to a built manifest (``pages``: each canvas's image)."""
        ...


# identifier -> the institution-wide default (access, degraded_max), or None.
DefaultFor = Callable[[str], tuple[str, int | None] | None]


def rules_by_identifier(catalogue: Catalogue, default_for: DefaultFor | None = None) -> dict[str, Rule]:
    """Image identifier (as the descriptions name it) -> its rule, for restricted images only."""
    out: dict[str, Rule] = {}
    for entry in catalogue.objects.values():
        description = entry.description
        if description is None:
            continue
        access, degraded = description.access, description.degraded_max
        path: str | None = entry.collection
        while path is not None and (not access or degraded is None):
            folder = catalogue.collections.get(path)
            if folder is not None and folder.description is not None:
                access = access or folder.description.access
                degraded = degraded if degraded is not None else folder.description.degraded_max
            path = None if path == "" else path.rpartition("/")[0]
        for page in description.pages:
            page_access, page_degraded = page.access or access, page.degraded_max
            page_degraded = page_degraded if page_degraded is not None else degraded
            if (not page_access or page_degraded is None) and default_for is not None:
                default = default_for(page.image)
                if default is not None:
                    page_access = page_access or default[0]
                    page_degraded = page_degraded if page_degraded is not None else default[1]
            if page_access != "restricted":
                continue
            rule = Rule(True, page_degraded or None)
            known = out.get(page.image)
            out[page.image] = rule if known is None else known.merged(rule)
    return out


async def refresh(
    catalogue: Catalogue, images: ImageService, rules: AccessRules, default_for: DefaultFor | None = None
) -> None:
    """Install the catalogue's rules, keyed by each image's real source file."""
    by_identifier = rules_by_identifier(catalogue, default_for)
    by_file: dict[Hashable, Rule] = {}
    for identifier, rule in by_identifier.items():
        try:
            known = await images.find(identifier)
        except IIIFError:
            continue  # no such image (yet): nothing to protect; the next refresh finds it
        path = known.file.path
        previous = by_file.get(path)
        by_file[path] = rule if previous is None else previous.merged(rule)
    if rules.replace(by_file, by_identifier):
        log.info("access rules: %d restricted image(s)", len(by_file))
