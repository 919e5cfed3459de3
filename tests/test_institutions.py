"""The ``[institutions.<slug>]`` tables: what they accept, and errors that name the table and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iiifserver.config import load_settings
from iiifserver.institutions import InstitutionError, Institutions, load_institutions, parse_institutions

TOKEN = "lille-secret-token-0123456789"
LILLE = {
    "images": "/srv/lille/images",
    "manifests": "/srv/lille/manifests",
    "provider": {
        "label": {"fr": "Palais des Beaux-Arts de Lille", "en": "Lille Museum of Fine Arts"},
        "homepage": "https://pba.lille.fr",
        "logo": "https://pba.lille.fr/logo.png",
    },
    "rights": "http://rightsstatements.org/vocab/NoC-NC/1.0/",
    "languages": ["fr", "en", "nl"],
    "access": "restricted",
    "degraded_max": 800,
    "public_url": "https://iiif.pba.lille.fr/",
    "admin_token_env": "LILLE_ADMIN_TOKEN",
}


def parse(tables: Any, environ: dict[str, str] | None = None) -> Institutions:
    return parse_institutions(tables, {"LILLE_ADMIN_TOKEN": TOKEN} if environ is None else environ)


def test_a_full_table() -> None:
    registry = parse({"musee-lille": LILLE, "archives-nord": {"images": "s3://archives/nord"}})
    lille = registry.by_slug["musee-lille"]
    assert lille.images == "/srv/lille/images"
    assert lille.manifests == Path("/srv/lille/manifests")
    assert lille.provider is not None
    assert lille.provider.id == "https://pba.lille.fr"
    assert lille.provider.label == (("fr", ("Palais des Beaux-Arts de Lille",)), ("en", ("Lille Museum of Fine Arts",)))
    assert lille.provider.logo == "https://pba.lille.fr/logo.png"
    assert lille.rights == "http://rightsstatements.org/vocab/NoC-NC/1.0/"
    assert lille.languages == ("fr", "en", "nl")
    assert (lille.access, lille.degraded_max) == ("restricted", 800)
    assert lille.public_url == "https://iiif.pba.lille.fr"
    assert lille.host == "iiif.pba.lille.fr"
    assert lille.admin_token == TOKEN
    assert TOKEN not in repr(lille)  # the secret is never printed with the value
    assert lille.display_label == lille.provider.label
    nord = registry.by_slug["archives-nord"]
    assert (nord.access, nord.degraded_max, nord.manifests, nord.admin_token) == ("open", 0, None, "")
    assert nord.display_label == (("none", ("archives-nord",)),)
    assert [item.slug for item in registry.items] == ["archives-nord", "musee-lille"]
    assert registry.image_roots() == {"musee-lille": "/srv/lille/images", "archives-nord": "s3://archives/nord"}


def test_lookups() -> None:
    registry = parse({"musee-lille": LILLE, "archives-nord": {"images": "/a"}})
    assert registry.of_identifier("musee-lille/obj1").slug == "musee-lille"  # type: ignore[union-attr]
    assert registry.of_identifier("musee-lille") is None  # the slug alone names no image
    assert registry.of_identifier("musee-lille/") is None
    assert registry.of_identifier("other/obj1") is None
    assert registry.of_host("IIIF.pba.lille.fr").slug == "musee-lille"  # type: ignore[union-attr]
    assert registry.of_host("pba.lille.fr") is None
    assert registry.of_token(TOKEN).slug == "musee-lille"  # type: ignore[union-attr]
    assert registry.of_token(TOKEN + "x") is None
    assert registry.of_token("") is None
    assert not Institutions()
    assert registry


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"Musee": {"images": "/a"}}, "institutions.Musee: the slug must be lower-case"),
        ({"a/b": {"images": "/a"}}, "institutions.a/b: the slug"),
        ({"-a": {"images": "/a"}}, "institutions.-a: the slug"),
        ({"a": "x"}, "institutions.a: expected a table"),
        ({"a": {}}, "institutions.a.images: required"),
        ({"a": {"images": 3}}, "institutions.a.images: expected a string, got int"),
        ({"a": {"images": "/a", "colour": "red"}}, "institutions.a: unknown field(s) colour"),
        ({"a": {"images": "/a", "rights": "https://example.org/mine"}}, "institutions.a.rights:"),
        ({"a": {"images": "/a", "languages": "fr"}}, "institutions.a.languages: expected a list"),
        ({"a": {"images": "/a", "languages": ["fr", "f r"]}}, "institutions.a.languages"),
        ({"a": {"images": "/a", "access": "secret"}}, "institutions.a.access: expected open or restricted"),
        ({"a": {"images": "/a", "degraded_max": -1}}, "institutions.a.degraded_max"),
        ({"a": {"images": "/a", "degraded_max": True}}, "institutions.a.degraded_max"),
        ({"a": {"images": "/a", "public_url": "iiif.example.org"}}, "institutions.a.public_url"),
        ({"a": {"images": "/a", "public_url": "https://x.org/?a=1"}}, "institutions.a.public_url"),
        ({"a": {"images": "/a", "provider": "Lille"}}, "institutions.a.provider: expected a table"),
        ({"a": {"images": "/a", "provider": {"homepage": "https://x.org"}}}, "institutions.a.provider.label: required"),
        ({"a": {"images": "/a", "provider": {"label": "L"}}}, "institutions.a.provider: an id or a homepage"),
        ({"a": {"images": "/a", "provider": {"label": "L", "homepage": "x.org"}}}, "institutions.a.provider.homepage"),
        ({"a": {"images": "/a", "provider": {"label": "L", "id": "https://x", "web": 1}}}, "unknown field(s) web"),
        ({"a": {"images": "/a", "label": {"f r": "x"}}}, "institutions.a.label: 'f r' is not a language tag"),
        ({"a": {"images": "/a", "label": {"fr": ""}}}, "institutions.a.label.fr: expected a text"),
        ({"a": {"images": "/a", "admin_token_env": "NOT SET"}}, "is not an environment variable name"),
        ({"a": {"images": "/a", "admin_token_env": "MISSING_TOKEN"}}, "MISSING_TOKEN is not set"),
        ({"a": {"images": "/a", "admin_token_env": "SHORT"}}, "SHORT must hold at least 16 characters"),
        (
            {
                "a": {"images": "/a", "public_url": "https://h.org"},
                "b": {"images": "/b", "public_url": "https://H.org"},
            },
            "institutions.b.public_url: host 'h.org' is already institutions.a's",
        ),
        (
            {"a": {"images": "/a", "admin_token_env": "LILLE"}, "b": {"images": "/b", "admin_token_env": "LILLE"}},
            "institutions.b.admin_token_env: same token as institutions.a",
        ),
        ("x", "institutions: expected tables"),
    ],
)
def test_errors_name_the_table_and_field(tables: Any, message: str) -> None:
    environ = {"SHORT": "short", "LILLE": TOKEN}
    with pytest.raises(InstitutionError) as caught:
        parse(tables, environ)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert "short" not in str(caught.value).replace("SHORT", "")


def test_reserved_prefixes() -> None:
    with pytest.raises(InstitutionError, match=r"institutions\.maps: the slug is already an image_roots prefix"):
        parse_institutions({"maps": {"images": "/m"}}, {}, reserved=frozenset({"maps"}))


def test_from_the_config_file(tmp_path: Path) -> None:
    """The server's settings and the institutions share one file; each reads its own part."""
    path = tmp_path / "iiifserver.toml"
    path.write_text(
        'port = 8100\n\n[institutions.musee-lille]\nimages = "/srv/lille"\nlanguages = ["fr"]\n'
        '\n[institutions.archives]\nimages = "s3://bucket/archives"\n'
    )
    settings = load_settings(path, environ={})
    assert settings.port == 8100
    assert settings.institutions_file == str(path)
    registry = load_institutions(Path(settings.institutions_file), {})
    assert sorted(registry.by_slug) == ["archives", "musee-lille"]
    # A [server] table works too.
    path.write_text('[server]\nport = 8200\n\n[institutions.a]\nimages = "/a"\n')
    assert load_settings(path, environ={}).port == 8200
    assert list(load_institutions(path, {}).by_slug) == ["a"]
    assert load_institutions(None) == Institutions()
    path.write_text("port = 8100\n")
    assert not load_institutions(path, {})


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InstitutionError, match="cannot read config file"):
        load_institutions(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[institutions.a\n")
    with pytest.raises(InstitutionError, match=r"broken\.toml"):
        load_institutions(broken)


def test_serve_refuses_wrong_tables_before_starting(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from iiifserver.cli import main

    path = tmp_path / "iiifserver.toml"
    path.write_text('[institutions.lille]\nimages = "/srv/lille"\naccess = "members"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "institutions.lille.access: expected open or restricted" in result.output


def test_check_interval_is_checked() -> None:
    from iiifserver.config import SettingsError

    with pytest.raises(SettingsError, match="institutions_check_interval must be >= 0"):
        load_settings(environ={"IIIFSERVER_INSTITUTIONS_CHECK_INTERVAL": "-1"})
    assert load_settings(environ={"IIIFSERVER_INSTITUTIONS_CHECK_INTERVAL": "0"}).institutions_check_interval == 0
