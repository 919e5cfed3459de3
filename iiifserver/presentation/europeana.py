"""The ``europeana`` aggregator profile: what Europeana asks of a IIIF provider, checked on a built manifest.

Owns: the rules of the profile (each with its severity, the description field that fixes it and
the public page it comes from), the lists they check against (the 14 rights statements Europeana
accepts, the shape of a BCP 47 language tag), ``check_manifest`` (one Manifest, the dict as
served, to findings) and ``check_served`` (what a live server answered for one document: its
status and its ``Access-Control-Allow-Origin``, to findings). Errors are what Europeana would
refuse or could not show; warnings are what its guides recommend. ``docs/europeana.md`` lists
every rule with its source.
Must not know: HTTP clients (the CLI fetches), the CLI, files, how descriptions are written,
iiif_prezi3.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONTEXT_3 = "http://iiif.io/api/presentation/3/context.json"

# Pages the rules come from (read December 2026); docs/europeana.md quotes what each says.
_RIGHTS_PAGE = (
    "https://europeana.atlassian.net/wiki/spaces/EF/pages/1503756289/Providing+copyright+metadata+to+Europeana"
)
_RIGHTS_LIST = "https://pro.europeana.eu/page/available-rights-statements"
_MANIFESTS_PAGE = "https://europeana.atlassian.net/wiki/spaces/EF/pages/2398912540/IIIF+Manifests+at+Europeana"
_API_PAGE = "https://europeana.atlassian.net/wiki/spaces/EF/pages/1627914244/IIIF+APIs+Documentation"
_MEDIA_POLICY = "https://pro.europeana.eu/page/media-policy"
_EDM_IIIF = "https://europeana.atlassian.net/wiki/spaces/EF/pages/2189262875/EDM+IIIF+pattern"
_EDM_IIIF_CASES = "https://europeana.atlassian.net/wiki/spaces/EF/pages/2189262969/Different+cases+of+IIIF+in+EDM"
_TIER_1 = "https://europeana.atlassian.net/wiki/spaces/EF/pages/2060288023"
_TIER_2_4 = (
    "https://europeana.atlassian.net/wiki/spaces/EF/pages/2060386364/Technical+criteria+for+image+files+Tier+2-4"
)
_METADATA_TIERS = "https://europeana.atlassian.net/wiki/spaces/EF/pages/1969979393/Tier+A-C+requirements"


class Severity(enum.Enum):
    ERROR = "error"  # Europeana would refuse the object, or could not show it
    WARNING = "warning"  # recommended by Europeana's guides; the object is published without it


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: Severity
    field: str  # the description field that fixes it ("" when the fix is a setting or the images)
    title: str
    source: str


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    path: str  # where in the manifest, e.g. ``items[0].items[0].items[0].body.service``
    message: str  # for a curator: what is wrong and how to fix it

    @property
    def severity(self) -> Severity:
        return self.rule.severity


def _rule(rule_id: str, severity: Severity, field: str, title: str, source: str) -> Rule:
    return Rule(rule_id, severity, field, title, source)


E, W = Severity.ERROR, Severity.WARNING
CONTEXT = _rule("context", E, "", "Presentation 3.0 @context", _API_PAGE)
LABEL = _rule("label", E, "label", "a title (label)", _MANIFESTS_PAGE)
LABEL_LANGUAGE = _rule("label-language", W, "label", "the title in at least one named language", _METADATA_TIERS)
LANGUAGE_TAG = _rule("language-tag", E, "", "language tags are BCP 47 (or none)", _METADATA_TIERS)
RIGHTS = _rule("rights", E, "rights", "a rights statement", _RIGHTS_LIST)
RIGHTS_ALLOWED = _rule("rights-allowed", E, "rights", "one of the 14 statements Europeana accepts", _RIGHTS_PAGE)
HTTPS_IDS = _rule("https-ids", E, "", "https ids for everything a viewer loads", _MEDIA_POLICY)
HTTPS_LINKS = _rule("https-links", W, "", "https links (homepage, seeAlso, provider)", _MEDIA_POLICY)
PROVIDER = _rule("provider", E, "provider", "the providing institution, with a label", _MANIFESTS_PAGE)
PROVIDER_HOMEPAGE = _rule("provider-homepage", W, "provider", "the provider's homepage", _MANIFESTS_PAGE)
HOMEPAGE = _rule("homepage", W, "homepage", "the object's page (edm:isShownAt)", _TIER_1)
SEE_ALSO = _rule("see-also", W, "seeAlso", "a link to the metadata record, with format and profile", _API_PAGE)
REQUIRED_STATEMENT = _rule("required-statement", W, "requiredStatement", "an attribution", _MANIFESTS_PAGE)
THUMBNAIL = _rule("thumbnail", W, "thumbnail", "a thumbnail", _TIER_2_4)
IMAGE_SERVICE = _rule("image-service", E, "", "each image has a IIIF Image API service", _EDM_IIIF)
IMAGE_SERVICE_LEVEL = _rule("image-service-level", W, "", "image services at level 1 or more", _EDM_IIIF_CASES)
IMAGE_SIZE = _rule("image-size", E, "pages", "images of at least 0.1 megapixel (content tier 1)", _TIER_1)
IMAGE_SIZE_SHOWCASE = _rule(
    "image-size-showcase", W, "pages", "images of at least 0.42 megapixel (content tier 2)", _TIER_2_4
)
# Checked only on a live server (``check_served``).
RESOLVABLE = _rule("resolvable", E, "", "the manifest and info.json answer 200 with JSON", _MEDIA_POLICY)
CORS = _rule("cors", E, "", "CORS on the manifest and info.json", _MEDIA_POLICY)

RULES: tuple[Rule, ...] = (
    CONTEXT, LABEL, LABEL_LANGUAGE, LANGUAGE_TAG, RIGHTS, RIGHTS_ALLOWED, HTTPS_IDS, HTTPS_LINKS, PROVIDER,
    PROVIDER_HOMEPAGE, HOMEPAGE, SEE_ALSO, REQUIRED_STATEMENT, THUMBNAIL, IMAGE_SERVICE, IMAGE_SERVICE_LEVEL,
    IMAGE_SIZE, IMAGE_SIZE_SHOWCASE, RESOLVABLE, CORS,
)  # fmt: skip

# -- rights --------------------------------------------------------------------------------------

# "Providing copyright metadata to Europeana": the URIs must be exactly as listed, http and not
# https; Creative Commons licences in any version up to 4.0, with or without a jurisdiction port.
CC_LICENCES = ("by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd")
CC_VERSIONS = ("1.0", "2.0", "2.1", "2.5", "3.0", "4.0")
CC_TOOLS = ("http://creativecommons.org/publicdomain/mark/1.0/", "http://creativecommons.org/publicdomain/zero/1.0/")
RIGHTS_STATEMENTS = ("InC", "InC-EDU", "InC-EU-OW", "NoC-NC", "NoC-OKLR", "CNE")
_CC_LICENCE = re.compile(
    r"http://creativecommons\.org/licenses/(?P<licence>[a-z-]+)/(?P<version>[0-9.]+)/(?:(?P<port>[a-z]{2,}(?:-[a-z]+)?)/)?"
)
_RS = re.compile(r"http://rightsstatements\.org/vocab/(?P<statement>[A-Za-z-]+)/1\.0/")


def is_europeana_rights(uri: str) -> bool:
    """Whether ``uri`` is, exactly, one of the rights statements Europeana accepts."""
    if uri in CC_TOOLS:
        return True
    if cc := _CC_LICENCE.fullmatch(uri):
        licence, version, port = cc["licence"], cc["version"], cc["port"]
        # 4.0 licences are international: there is no ported 4.0 licence.
        return licence in CC_LICENCES and version in CC_VERSIONS and not (port and version == "4.0")
    if rs := _RS.fullmatch(uri):
        return rs["statement"] in RIGHTS_STATEMENTS
    return False


def _rights_problem(uri: str) -> str:
    """Why ``uri`` is not accepted, and what to write instead when that can be told."""
    fixed = uri.strip()
    if fixed.startswith("https://"):
        fixed = "http://" + fixed.removeprefix("https://")
    fixed = fixed.replace("://www.", "://", 1)
    fixed = fixed.replace("rightsstatements.org/page/", "rightsstatements.org/vocab/", 1).split("?")[0]
    if not fixed.endswith("/"):
        fixed += "/"
    if fixed != uri and is_europeana_rights(fixed):
        return (
            f"{uri!r} is not written the way Europeana accepts it: write {fixed!r} "
            "(http, not https; no www; a trailing slash)"
        )
    if rs := _RS.fullmatch(fixed):
        return (
            f"Europeana accepts only six RightsStatements.org statements ({', '.join(RIGHTS_STATEMENTS)}), "
            f"not {rs['statement']}: choose one of them or a Creative Commons licence or tool"
        )
    if cc := _CC_LICENCE.fullmatch(fixed):
        if cc["version"] not in CC_VERSIONS:
            return f"Creative Commons version {cc['version']} is not one Europeana accepts ({', '.join(CC_VERSIONS)})"
        if cc["port"] and cc["version"] == "4.0":
            return "4.0 licences have no jurisdiction ports: drop the last part of the URI"
        return f"{cc['licence']!r} is not a Creative Commons licence ({', '.join(CC_LICENCES)})"
    return (
        f"{uri!r} is not one of the 14 rights statements Europeana accepts: a Creative Commons licence "
        "(http://creativecommons.org/licenses/by/4.0/ and the like), CC0, the Public Domain Mark, or "
        f"one of the RightsStatements.org statements {', '.join(RIGHTS_STATEMENTS)}"
    )


# -- language tags -------------------------------------------------------------------------------

# RFC 5646 section 2.1, well-formedness (the registry is not consulted; grandfathered tags aside).
_BCP47 = re.compile(
    r"""
    (?:
      (?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4}|[a-z]{5,8})   # language, extlang
      (?:-[a-z]{4})?                                         # script
      (?:-(?:[a-z]{2}|[0-9]{3}))?                            # region
      (?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*               # variants
      (?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*                    # extensions
      (?:-x(?:-[a-z0-9]{1,8})+)?                             # private use
    | x(?:-[a-z0-9]{1,8})+
    )
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)


def is_language_tag(tag: str) -> bool:
    """``none`` (IIIF's "no language") or a well-formed BCP 47 tag."""
    return tag == "none" or _BCP47.fullmatch(tag) is not None


# -- the checks ----------------------------------------------------------------------------------

_LANGUAGE_MAPS = ("label", "summary", "value")  # the properties whose values are language maps
_LINK_PROPERTIES = frozenset({"homepage", "seeAlso", "provider", "rendering", "partOf"})
_MEGAPIXEL = 1_000_000


def check_manifest(manifest: Mapping[str, Any]) -> list[Finding]:
    """Every finding of the ``europeana`` profile on one Manifest, errors and warnings, in manifest order."""
    findings: list[Finding] = []
    add = findings.append
    context = manifest.get("@context")
    contexts = context if isinstance(context, list) else [context]
    if not contexts or contexts[-1] != CONTEXT_3:
        add(Finding(CONTEXT, "@context", f"@context must be (or end with) {CONTEXT_3}: Presentation 3.0"))

    label = manifest.get("label")
    if not _has_text(label):
        add(Finding(LABEL, "label", "the object has no title: give it a label"))
    elif isinstance(label, Mapping) and not any(k != "none" and _has_text({k: v}) for k, v in label.items()):
        add(
            Finding(
                LABEL_LANGUAGE,
                "label",
                "the title has no language (only 'none'): write it as {en: ..., fr: ...} so Europeana can "
                "show it in the reader's language",
            )
        )
    for path, tag in _language_tags(manifest, ""):
        if not is_language_tag(tag):
            add(Finding(LANGUAGE_TAG, path, f"{tag!r} is not a language tag (BCP 47, e.g. en, fr, nl-BE; or none)"))

    findings += _rights(manifest.get("rights"))
    findings += _https(manifest)
    findings += _provider(manifest.get("provider"))

    if not _links(manifest.get("homepage")):
        add(
            Finding(
                HOMEPAGE,
                "homepage",
                "no homepage: link the object's page on your website (it becomes edm:isShownAt, where "
                "Europeana sends readers for the full context)",
            )
        )
    see_also = _links(manifest.get("seeAlso"))
    if not see_also:
        add(
            Finding(
                SEE_ALSO,
                "seeAlso",
                "no seeAlso: link the object's metadata record (EDM, LIDO or Dublin Core), with its format and profile",
            )
        )
    for i, link in enumerate(see_also):
        missing = [name for name in ("format", "profile") if not link.get(name)]
        if missing:
            add(
                Finding(
                    SEE_ALSO,
                    f"seeAlso[{i}]",
                    f"the record link {link.get('id')!r} has no {' or '.join(missing)}: say what it is "
                    "(e.g. format: application/rdf+xml, profile: http://www.europeana.eu/schemas/edm/)",
                )
            )
    if not isinstance(manifest.get("requiredStatement"), Mapping):
        cc_by = isinstance(manifest.get("rights"), str) and "/licenses/by" in manifest["rights"]
        why = " (the Creative Commons licence requires attribution)" if cc_by else ""
        add(
            Finding(
                REQUIRED_STATEMENT,
                "requiredStatement",
                f"no requiredStatement: give the attribution that must be shown with the images{why}",
            )
        )
    if not _links(manifest.get("thumbnail")):
        add(Finding(THUMBNAIL, "thumbnail", "no thumbnail: Europeana's search results show one"))
    findings += _images(manifest.get("items"))
    return findings


def check_served(
    what: str, url: str, status: int, content_type: str, allow_origin: str | None, origin: str
) -> list[Finding]:
    """What a live server answered for one document (``what``: "manifest" or "info.json") asked from ``origin``."""
    findings = []
    if status != 200 or "json" not in content_type:
        findings.append(
            Finding(
                RESOLVABLE, url, f"the {what} at {url} answered {status} {content_type or '(no type)'}, not 200 JSON"
            )
        )
    if allow_origin not in ("*", origin):
        got = (
            "no Access-Control-Allow-Origin"
            if allow_origin is None
            else f"Access-Control-Allow-Origin {allow_origin!r}"
        )
        findings.append(
            Finding(
                CORS,
                url,
                f"the {what} at {url} answered {got} to a request from {origin}: Europeana's viewer runs in "
                "the reader's browser on another site and cannot read it (a proxy in front may strip the header)",
            )
        )
    return findings


# -- helpers -------------------------------------------------------------------------------------


def _has_text(value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    return any(isinstance(v, list) and any(isinstance(t, str) and t.strip() for t in v) for v in value.values())


def _links(value: Any) -> list[Mapping[str, Any]]:
    items = value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, Mapping) and isinstance(item.get("id"), str)]


def _language_tags(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in _LANGUAGE_MAPS and isinstance(value, Mapping):
                for tag in value:
                    yield where, str(tag)
            else:
                yield from _language_tags(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _language_tags(value, f"{path}[{i}]")


def _rights(rights: Any) -> list[Finding]:
    if not isinstance(rights, str) or not rights:
        return [
            Finding(
                RIGHTS,
                "rights",
                "no rights statement: every object published in Europeana needs one (e.g. "
                "http://creativecommons.org/publicdomain/mark/1.0/ or http://rightsstatements.org/vocab/InC/1.0/)",
            )
        ]
    if not is_europeana_rights(rights):
        return [Finding(RIGHTS_ALLOWED, "rights", _rights_problem(rights))]
    return []


def _ids(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in ("id", "@id") and isinstance(value, str):
                yield where, value
            else:
                yield from _ids(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _ids(value, f"{path}[{i}]")


def _https(manifest: Mapping[str, Any]) -> list[Finding]:
    findings = []
    loaded: list[tuple[str, str]] = []  # ids of what a viewer loads: the manifest, canvases, images, services
    for path, value in _ids(manifest, ""):
        if not value.lower().startswith("http://"):
            continue
        top = re.split(r"[.\[]", path, maxsplit=1)[0]
        if top in _LINK_PROPERTIES:
            rule = Rule(HTTPS_LINKS.id, HTTPS_LINKS.severity, top, HTTPS_LINKS.title, HTTPS_LINKS.source)
            findings.append(
                Finding(rule, path, f"{value} is http: link its https address (readers are on an https page)")
            )
        else:
            loaded.append((path, value))
    if loaded:
        first_path, first = loaded[0]
        findings.insert(
            0,
            Finding(
                HTTPS_IDS,
                first_path,
                f"{len(loaded)} ids are http (first: {first}): Europeana's pages are https and browsers block "
                "http content in them. Set public_url to the server's https address, or have the proxy send "
                "X-Forwarded-Proto: https (from an address in trusted_proxies), and check the served "
                "documents with --url",
            ),
        )
    return findings


def _provider(value: Any) -> list[Finding]:
    providers = value if isinstance(value, list) else []
    if not providers:
        return [
            Finding(
                PROVIDER,
                "provider",
                "no provider: name the institution that provides the object (label and homepage); "
                "Europeana credits the data provider with every object",
            )
        ]
    findings = []
    for i, agent in enumerate(providers):
        agent = agent if isinstance(agent, Mapping) else {}
        if not _has_text(agent.get("label")):
            findings.append(Finding(PROVIDER, f"provider[{i}].label", "the provider has no name: give it a label"))
        if not _links(agent.get("homepage")):
            findings.append(
                Finding(PROVIDER_HOMEPAGE, f"provider[{i}].homepage", "the provider has no homepage: link its website")
            )
    return findings


def _images(items: Any) -> list[Finding]:
    findings = []
    for c, canvas in enumerate(items if isinstance(items, list) else []):
        if not isinstance(canvas, Mapping):
            continue
        for a, body, where in _painted_images(canvas, f"items[{c}]"):
            services = [s for s in _services(body) if _service_type(s).startswith("ImageService")]
            if not services:
                findings.append(
                    Finding(
                        IMAGE_SERVICE,
                        where,
                        f"canvas {c + 1} image {a + 1} has no IIIF Image API service: Europeana's viewer "
                        "needs one to zoom (its EDM record's svcs:Service names it)",
                    )
                )
            elif not any(_level(s) >= 1 for s in services):
                findings.append(
                    Finding(
                        IMAGE_SERVICE_LEVEL,
                        f"{where}.service",
                        f"canvas {c + 1}: the image service is level 0: deep zoom at any size needs level 1 or 2",
                    )
                )
        width, height = canvas.get("width"), canvas.get("height")
        if isinstance(width, int) and isinstance(height, int):
            pixels = width * height
            if pixels < 0.1 * _MEGAPIXEL:
                findings.append(
                    Finding(
                        IMAGE_SIZE,
                        f"items[{c}]",
                        f"canvas {c + 1} is {width}x{height} ({pixels / _MEGAPIXEL:.2f} megapixel): Europeana "
                        "needs at least 0.1 megapixel (about 400x300) to show it at all; use a larger scan",
                    )
                )
            elif pixels < 0.42 * _MEGAPIXEL:
                findings.append(
                    Finding(
                        IMAGE_SIZE_SHOWCASE,
                        f"items[{c}]",
                        f"canvas {c + 1} is {width}x{height} ({pixels / _MEGAPIXEL:.2f} megapixel): content tier 2 "
                        "and above need 0.42 megapixel (about 800x533)",
                    )
                )
    return findings


def _painted_images(canvas: Mapping[str, Any], path: str) -> Iterator[tuple[int, Mapping[str, Any], str]]:
    n = 0
    for p, page in enumerate(_list(canvas.get("items"))):
        for a, annotation in enumerate(_list(page.get("items")) if isinstance(page, Mapping) else []):
            if not isinstance(annotation, Mapping) or annotation.get("motivation") != "painting":
                continue
            body = annotation.get("body")
            bodies: Sequence[Any] = body if isinstance(body, list) else [body]
            for b, item in enumerate(bodies):
                if isinstance(item, Mapping) and item.get("type") == "Image":
                    suffix = f"[{b}]" if isinstance(body, list) else ""
                    yield n, item, f"{path}.items[{p}].items[{a}].body{suffix}"
                    n += 1


def first_image_service(manifest: Mapping[str, Any]) -> str:
    """The id of the first painted image's first image service ("" if none): a live check asks its info.json."""
    for c, canvas in enumerate(_list(manifest.get("items"))):
        if not isinstance(canvas, Mapping):
            continue
        for _, body, _where in _painted_images(canvas, f"items[{c}]"):
            for service in _services(body):
                service_id = service.get("id", service.get("@id"))
                if _service_type(service).startswith("ImageService") and isinstance(service_id, str):
                    return service_id
    return ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _services(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    service = resource.get("service")
    services = service if isinstance(service, list) else [service]
    return [s for s in services if isinstance(s, Mapping)]


def _service_type(service: Mapping[str, Any]) -> str:
    kind = service.get("type", service.get("@type", ""))
    return kind if isinstance(kind, str) else ""


def _level(service: Mapping[str, Any]) -> int:
    """The compliance level a service claims: ``level2`` (3.0) or ``http://iiif.io/api/image/2/level1.json``."""
    profile = service.get("profile")
    first = profile[0] if isinstance(profile, list) and profile else profile
    match = re.search(r"level([0-2])", first) if isinstance(first, str) else None
    return int(match[1]) if match else 0
