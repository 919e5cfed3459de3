"""The institutions of a shared deployment: the ``[institutions.<slug>]`` tables of the TOML file.

Owns: the table's fields, their checks (every error names the table and the field), the frozen
``Institution`` values and the ``Institutions`` registry built from them (swapped whole when the
file changes: nothing in it is ever modified), and reading each institution's admin token from
the environment variable its table names (the secret is never in the file, never in a message).
Must not know: image roots beyond their spelling, catalogues, HTTP. The server's other settings
are ``config``'s; this module only reads the same file.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from iiifserver.config import object_root, read_toml

# A slug is the first segment of every identifier of the institution: URL-safe without escaping.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?", re.ASCII)
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# Presentation 3.0 section 3.3.2 (the same rule ``presentation.description`` applies to objects).
_RIGHTS = (
    re.compile(r"http://creativecommons\.org/(?:licenses|publicdomain)/[a-z0-9.+-]+(?:/[0-9.]+)?(?:/[a-z]{2,})?/"),
    re.compile(r"http://rightsstatements\.org/vocab/[A-Za-z-]+/1\.0/"),
)
ACCESS = ("open", "restricted")
FIELDS = frozenset(
    {
        "label",
        "images",
        "manifests",
        "provider",
        "rights",
        "languages",
        "access",
        "degraded_max",
        "public_url",
        "admin_token_env",
    }
)
PROVIDER_FIELDS = frozenset({"id", "label", "homepage", "logo"})
MIN_TOKEN_LENGTH = 16  # as ``admin_token``

# A language map as the presentation model spells it: (language, (values...)) pairs.
LanguageMap = tuple[tuple[str, tuple[str, ...]], ...]


class InstitutionError(ValueError):
    """The institutions' tables are wrong; the message names the table and the field."""


@dataclass(frozen=True, slots=True)
class Provider:
    """Who is behind the institution's objects (the ``provider`` of its manifests)."""

    id: str
    label: LanguageMap
    homepage: str = ""
    logo: str = ""


@dataclass(frozen=True, slots=True)
class Institution:
    slug: str
    images: str  # a folder, or an s3://BUCKET/PREFIX URL
    manifests: Path | None = None  # its object descriptions; None: only its image folders
    label: LanguageMap = ()  # of its top collection; default: the provider's label, else the slug
    provider: Provider | None = None
    rights: str = ""  # default of its objects
    languages: tuple[str, ...] = ()  # the first one tags descriptions' untagged texts
    access: str = "open"  # default access of its images (for the authorization layer)
    degraded_max: int = 0  # pixels on the longer side anyone may see of a restricted image; 0: none
    public_url: str = ""  # its own base URL (https://iiif.example.org), if any
    admin_token: str = field(default="", repr=False)  # from the environment; empty: none

    @property
    def prefix(self) -> str:
        """What every identifier of the institution starts with."""
        return self.slug + "/"

    @property
    def host(self) -> str:
        """The Host its ``public_url`` names (lower-case, with a port if given), or ""."""
        return urlsplit(self.public_url).netloc.lower() if self.public_url else ""

    @property
    def display_label(self) -> LanguageMap:
        if self.label:
            return self.label
        if self.provider is not None and self.provider.label:
            return self.provider.label
        return (("none", (self.slug,)),)


@dataclass(frozen=True, slots=True)
class Institutions:
    """Every configured institution, looked up by slug, identifier, host or admin token."""

    items: tuple[Institution, ...] = ()
    by_slug: Mapping[str, Institution] = field(default_factory=dict)
    by_host: Mapping[str, Institution] = field(default_factory=dict)

    @classmethod
    def of(cls, items: tuple[Institution, ...]) -> Institutions:
        by_slug = MappingProxyType({item.slug: item for item in items})
        by_host = MappingProxyType({item.host: item for item in items if item.host})
        return cls(tuple(sorted(items, key=lambda item: item.slug)), by_slug, by_host)

    def __bool__(self) -> bool:
        return bool(self.items)

    def of_identifier(self, identifier: str) -> Institution | None:
        """The institution whose namespace ``identifier`` (decoded: ``slug/rest``) is in."""
        slug, sep, rest = identifier.partition("/")
        return self.by_slug.get(slug) if sep and rest else None

    def of_host(self, host: str) -> Institution | None:
        return self.by_host.get(host.lower()) if host and self.by_host else None

    def of_token(self, token: str) -> Institution | None:
        """The institution whose admin token ``token`` is (compared in constant time)."""
        found = None
        for item in self.items:
            if item.admin_token and hmac.compare_digest(item.admin_token.encode(), token.encode()):
                found = item
        return found

    def image_roots(self) -> dict[str, str]:
        """slug -> image root, for the image side's prefix routing."""
        return {item.slug: item.images for item in self.items}


NONE = Institutions()


def load_institutions(path: Path | None, environ: Mapping[str, str] | None = None) -> Institutions:
    """The ``[institutions.*]`` tables of the TOML file at ``path`` (none: no file, or no tables)."""
    if path is None:
        return NONE
    data = read_toml(path, InstitutionError)
    return parse_institutions(data.get("institutions", {}), os.environ if environ is None else environ)


def parse_institutions(tables: Any, environ: Mapping[str, str], reserved: frozenset[str] = frozenset()) -> Institutions:
    """``tables`` (the parsed ``institutions`` table) -> the registry; ``reserved``: prefixes
    already used by other image roots (``image_roots``), which no slug may take."""
    if not isinstance(tables, Mapping):
        raise InstitutionError("institutions: expected tables [institutions.<slug>]")
    items: list[Institution] = []
    hosts: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for slug, table in tables.items():
        item = parse_institution(slug, table, environ)
        if slug in reserved:
            raise InstitutionError(f"institutions.{slug}: the slug is already an image_roots prefix")
        if item.host and item.host in hosts:
            raise InstitutionError(
                f"institutions.{slug}.public_url: host {item.host!r} is already institutions.{hosts[item.host]}'s"
            )
        if item.admin_token and item.admin_token in tokens:
            raise InstitutionError(
                f"institutions.{slug}.admin_token_env: same token as institutions.{tokens[item.admin_token]}"
            )
        hosts[item.host] = slug
        tokens[item.admin_token] = slug
        items.append(item)
    return Institutions.of(tuple(items))


def parse_institution(slug: Any, table: Any, environ: Mapping[str, str]) -> Institution:
    where = f"institutions.{slug}"
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise InstitutionError(
            f"{where}: the slug must be lower-case letters, digits and inner hyphens (at most 64), e.g. musee-lille"
        )
    if not isinstance(table, Mapping):
        raise InstitutionError(f"{where}: expected a table")
    unknown = sorted(set(table) - FIELDS)
    if unknown:
        raise InstitutionError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})")
    images = _text(table, "images", where)
    if not images:
        raise InstitutionError(f"{where}.images: required (a folder or an s3://BUCKET/PREFIX URL)")
    if object_root(images) is not None and not images.startswith("s3://"):
        raise InstitutionError(f"{where}.images: write s3:// URLs as s3://BUCKET/PREFIX")
    manifests = _text(table, "manifests", where)
    rights = _text(table, "rights", where)
    if rights and not any(pattern.fullmatch(rights) for pattern in _RIGHTS):
        raise InstitutionError(
            f"{where}.rights: {rights!r} is not a Creative Commons licence or RightsStatements.org URI "
            "(e.g. http://rightsstatements.org/vocab/NoC-NC/1.0/)"
        )
    languages = table.get("languages", [])
    if not isinstance(languages, list) or not all(isinstance(x, str) and _LANGUAGE.fullmatch(x) for x in languages):
        raise InstitutionError(f'{where}.languages: expected a list of language tags, e.g. ["fr", "en"]')
    access = _text(table, "access", where) or "open"
    if access not in ACCESS:
        raise InstitutionError(f"{where}.access: expected open or restricted, got {access!r}")
    degraded_max = table.get("degraded_max", 0)
    if isinstance(degraded_max, bool) or not isinstance(degraded_max, int) or degraded_max < 0:
        raise InstitutionError(f"{where}.degraded_max: expected a whole number of pixels >= 0 (0: no degraded image)")
    public_url = _text(table, "public_url", where).rstrip("/")
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise InstitutionError(f"{where}.public_url: expected http(s)://host[/path], got {public_url!r}")
    return Institution(
        slug=slug,
        images=images,
        manifests=Path(manifests) if manifests else None,
        label=_language_map(table.get("label"), f"{where}.label") if "label" in table else (),
        provider=_provider(table.get("provider"), f"{where}.provider") if "provider" in table else None,
        rights=rights,
        languages=tuple(languages),
        access=access,
        degraded_max=degraded_max,
        public_url=public_url,
        admin_token=_token(table, where, environ),
    )


def _text(table: Mapping[str, Any], name: str, where: str) -> str:
    value = table.get(name, "")
    if not isinstance(value, str):
        raise InstitutionError(f"{where}.{name}: expected a string, got {type(value).__name__}")
    return value.strip()


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise InstitutionError(f"{where}: expected an http(s) URL, got {value!r}")
    return value


def _language_map(value: Any, where: str) -> LanguageMap:
    """A string (no language) or a table language -> string or list of strings."""
    if isinstance(value, str) and value.strip():
        return (("none", (value.strip(),)),)
    if isinstance(value, Mapping) and value:
        out = []
        for language, texts in value.items():
            if language != "none" and not _LANGUAGE.fullmatch(language):
                raise InstitutionError(f"{where}: {language!r} is not a language tag")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise InstitutionError(f"{where}.{language}: expected a text or a list of texts")
            out.append((language, tuple(t.strip() for t in texts)))
        return tuple(out)
    raise InstitutionError(f"{where}: expected a text or a table of language = text")


def _provider(value: Any, where: str) -> Provider:
    if not isinstance(value, Mapping):
        raise InstitutionError(f"{where}: expected a table {{ label = ..., homepage = ..., logo = ... }}")
    unknown = sorted(set(value) - PROVIDER_FIELDS)
    if unknown:
        raise InstitutionError(f"{where}: unknown field(s) {', '.join(unknown)} (known: id, label, homepage, logo)")
    if "label" not in value:
        raise InstitutionError(f"{where}.label: required")
    homepage = _url(value["homepage"], f"{where}.homepage") if "homepage" in value else ""
    logo = _url(value["logo"], f"{where}.logo") if "logo" in value else ""
    agent_id = _url(value["id"], f"{where}.id") if "id" in value else homepage
    if not agent_id:
        raise InstitutionError(f"{where}: an id or a homepage is required (the provider's id is a URI)")
    return Provider(agent_id, _language_map(value["label"], f"{where}.label"), homepage, logo)


def _token(table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> str:
    name = _text(table, "admin_token_env", where)
    if not name:
        return ""
    if not _ENV_NAME.fullmatch(name):
        raise InstitutionError(f"{where}.admin_token_env: {name!r} is not an environment variable name")
    token = environ.get(name, "")
    # The message names the variable, never its value.
    if not token:
        raise InstitutionError(f"{where}.admin_token_env: the environment variable {name} is not set")
    if len(token) < MIN_TOKEN_LENGTH:
        raise InstitutionError(f"{where}.admin_token_env: {name} must hold at least {MIN_TOKEN_LENGTH} characters")
    return token
