"""Restricted pages in manifests: the services of their images, and their thumbnails.

Owns: ``ManifestServices``, the ``presentation.access.ManifestAccess`` of the server: the image
of a restricted page (the canvas's content resource) gets the 2.0 probe service beside its image
services, and those get the 1.0 login service; a thumbnail of a restricted image shows its
degraded tier, or is left out when it has none; the manifest's ``@context`` puts Authorization
Flow 2.0's first.
Must not know: how the manifest was built (``presentation``), sessions, tokens, HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iiifserver.image.access import DEGRADED_SUFFIX, Rule
from iiifserver.image.request import encode_identifier
from iiifserver.web.auth import AUTH_CONTEXT_2, Auth


class ManifestServices:
    """``presentation.access.ManifestAccess`` from ``auth``'s rules and service descriptions (see above)."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def key(self, identifiers: Sequence[str]) -> str:
        rules = self.auth.rules.by_identifier
        return "|".join(f"{i}={rules[i].degraded_max}" for i in identifiers if i in rules)

    def apply(self, document: dict[str, Any], pages: Sequence[str], base: str) -> None:
        rules = self.auth.rules.by_identifier
        restricted = {i: rules[i] for i in pages if i in rules}
        if not restricted:
            return
        document["@context"] = [AUTH_CONTEXT_2, *_as_list(document.get("@context"))]
        thumbnails: dict[str, Rule] = {}
        for canvas, identifier in zip(document.get("items", []), pages, strict=False):
            rule = restricted.get(identifier)
            if rule is None:
                continue
            probe, login_1 = self.auth.services(base, identifier)
            for page in canvas.get("items", []):
                for annotation in page.get("items", []):
                    body = annotation.get("body", {})
                    services = body.get("service", [])
                    for service in services:
                        service["service"] = [*service.get("service", []), login_1]
                    body["service"] = [probe, *services]
            thumbnails[f"{base}/iiif/3/{encode_identifier(identifier)}"] = rule
        for holder in (document, *document.get("items", [])):
            kept = []
            for thumbnail in holder.get("thumbnail", []):
                service_id = next((s.get("id") for s in thumbnail.get("service", [])), None)
                rule = thumbnails.get(service_id or "")
                if rule is None:
                    kept.append(thumbnail)
                elif rule.degraded_max is not None:
                    kept.append(_degraded_thumbnail(thumbnail, service_id or "", rule.degraded_max))
            if "thumbnail" in holder:
                if kept:
                    holder["thumbnail"] = kept
                else:
                    del holder["thumbnail"]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _degraded_thumbnail(thumbnail: dict[str, Any], service_id: str, degraded_max: int) -> dict[str, Any]:
    """The thumbnail from the degraded tier: its whole image, at most ``degraded_max`` on its longer side."""
    w, h = int(thumbnail.get("width") or 1), int(thumbnail.get("height") or 1)
    scale = min(1.0, degraded_max / max(w, h))
    w, h = max(1, int(w * scale)), max(1, int(h * scale))
    degraded = service_id + DEGRADED_SUFFIX
    return {
        **thumbnail,
        "id": f"{degraded}/full/{w},{h}/0/default.jpg",
        "width": w,
        "height": h,
        "service": [{"id": degraded, "type": "ImageService3", "profile": "level2"}],
    }
