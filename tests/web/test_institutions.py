"""Two institutions on one server, end to end: namespaces, isolation, defaults, hosts and reloads.

``lille`` and ``nord`` each have an image folder and a manifests folder in a temporary tree,
configured in one TOML file; the default image root holds one image of its own. Requests go
through the whole app in-process; reloads are driven by the same ``Deployment.check`` the
watcher calls (and once by the watcher itself, through the app's lifespan).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from iiifserver.app import create_app
from iiifserver.config import Settings
from iiifserver.institutions import Institutions, parse_institutions
from iiifserver.web.institutions import Deployment, institution_of_path
from tests.web.conftest import Http, save_pyramid, solid

P = "/iiif/presentation/3"
LILLE_TOKEN = "lille-admin-token-0123456789"
NORD_TOKEN = "nord-admin-token-0123456789"
GLOBAL_TOKEN = "global-admin-token-0123456789"
LILLE = """
[institutions.lille]
images = "{root}/lille/images"
manifests = "{root}/lille/manifests"
rights = "http://rightsstatements.org/vocab/NoC-NC/1.0/"
languages = ["fr", "en"]
admin_token_env = "LILLE_TOKEN"
[institutions.lille.provider]
homepage = "https://pba.lille.fr/"
logo = "https://pba.lille.fr/logo.png"
label = {{ fr = "Palais des Beaux-Arts de Lille", en = "Lille Fine Arts" }}
"""
NORD = """
[institutions.nord]
images = "{root}/nord/images"
manifests = "{root}/nord/manifests"
label = {{ fr = "Archives du Nord" }}
public_url = "https://iiif.nord.example"
admin_token_env = "NORD_TOKEN"
"""


@dataclass
class Site:
    root: Path
    config: Path
    http: Http

    @property
    def deployment(self) -> Deployment:
        deployment: Deployment = self.http.app.state.deployment
        return deployment

    def write(self, *tables: str) -> None:
        text = "port = 8000\n" + "".join(table.format(root=self.root) for table in tables)
        self.config.write_text(text)
        stat = self.config.stat()  # a later mtime even on coarse clocks: the watcher compares it
        os.utime(self.config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    def reload(self) -> bool:
        changed: bool = self.http.portal.call(lambda: self.deployment.check())
        return changed

    def json(self, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.http.get(path, **kwargs)
        assert response.status_code == status, (path, response.status_code, response.text[:300])
        return response.json() if status == 200 else None


def _tree(root: Path) -> None:
    save_pyramid(solid(300, 200, (200, 30, 30)), root / "lille/images/red.tif", tile=128)
    save_pyramid(solid(300, 200, (30, 200, 30)), root / "lille/images/book/p1.tif", tile=128)
    save_pyramid(solid(300, 200, (30, 200, 30)), root / "lille/images/book/p2.tif", tile=128)
    save_pyramid(solid(120, 80, (90, 90, 90)), root / "lille/images/loose.tif", tile=128)
    save_pyramid(solid(200, 300, (30, 30, 200)), root / "nord/images/blue.tif", tile=128)
    save_pyramid(solid(100, 100, (9, 9, 9)), root / "default/own.tif", tile=128)
    (root / "lille/manifests").mkdir(parents=True)
    (root / "nord/manifests").mkdir(parents=True)
    (root / "default-manifests").mkdir()
    (root / "lille/manifests/book.yaml").write_text(
        "label: Livre d'heures\nsummary: {en: A book of hours}\npages: [book/p1, book/p2]\n"
    )
    (root / "lille/manifests/own-rights.yaml").write_text(
        "label: {en: Open}\nrights: http://creativecommons.org/publicdomain/mark/1.0/\n"
        "provider: [{id: 'https://donor.example/', label: Donor}]\npages: [red]\n"
    )
    # Symlinks out of lille's root: to nord's image, and to a folder of nord's.
    (root / "lille/images/stolen.tif").symlink_to(root / "nord/images/blue.tif")
    (root / "lille/images/nord-dir").symlink_to(root / "nord/images")


@pytest.fixture
def site(
    tmp_path: Path, portal: anyio.from_thread.BlockingPortal, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Site]:
    monkeypatch.setenv("LILLE_TOKEN", LILLE_TOKEN)
    monkeypatch.setenv("NORD_TOKEN", NORD_TOKEN)
    _tree(tmp_path)

    def make(*tables: str, **overrides: Any) -> Site:
        config = tmp_path / "iiifserver.toml"
        placeholder = Site(tmp_path, config, None)  # type: ignore[arg-type]
        placeholder.write(*tables)
        settings = Settings(
            images=tmp_path / "default",
            manifests=tmp_path / "default-manifests",
            cache=tmp_path / "cache",
            disk_cache_mb=0,
            source_check_interval=0.0,
            institutions_file=str(config),
            tile_threads=2,
            **{"admin_token": GLOBAL_TOKEN, **overrides},
        )
        return Site(tmp_path, config, Http(create_app(settings), portal))

    return make


def test_namespaces_and_identifiers(site: Callable[..., Site]) -> None:
    s = site(LILLE, NORD)
    info = s.json("/iiif/3/lille%2Fred/info.json")
    assert info["id"].endswith("/iiif/3/lille%2Fred")
    assert (info["width"], info["height"]) == (300, 200)
    assert s.json("/iiif/3/nord%2Fblue/info.json")["height"] == 300
    assert s.http.get("/iiif/3/lille%2Fred/full/max/0/default.jpg").status_code == 200
    assert s.json("/iiif/3/own/info.json")["width"] == 100  # the default root still serves
    # Nothing of one institution is reached through the other's namespace.
    for identifier in (
        "lille%2Fblue",  # nord's image name, under lille
        "lille%2F..%2Fnord%2Fimages%2Fblue",
        "lille%2F..%2F..%2Fnord%2Fimages%2Fblue",
        "lille%2Fstolen",  # a symlink out of lille's root
        "lille%2Fnord-dir%2Fblue",
        "lille%2F%2E%2E%2Fnord%2Fblue",
        "nord%2Fred",
        "lille",  # the slug alone
        "lille%2F",
    ):
        response = s.http.raw(f"/iiif/3/{identifier}/info.json")
        assert response.status_code == 404, (identifier, response.status_code)
        assert str(s.root) not in response.content.decode("utf-8", "replace")
    assert s.http.raw("/iiif/3/lille/../nord%2Fblue/info.json").status_code in (400, 404)


def test_manifests_carry_the_institution_defaults(site: Callable[..., Site]) -> None:
    s = site(LILLE, NORD)
    book = s.json(f"{P}/lille/book/manifest")
    assert book["id"] == f"http://testserver{P}/lille/book/manifest"
    assert book["label"] == {"fr": ["Livre d'heures"]}  # untagged: the institution's first language
    assert book["summary"] == {"en": ["A book of hours"]}  # tagged: kept
    assert book["rights"] == "http://rightsstatements.org/vocab/NoC-NC/1.0/"
    [provider] = book["provider"]
    assert provider["id"] == "https://pba.lille.fr/"
    assert provider["type"] == "Agent"
    assert provider["label"] == {"fr": ["Palais des Beaux-Arts de Lille"], "en": ["Lille Fine Arts"]}
    assert provider["homepage"][0]["id"] == "https://pba.lille.fr/"
    assert provider["logo"][0]["id"] == "https://pba.lille.fr/logo.png"
    assert provider["logo"][0]["format"] == "image/png"
    services = [canvas["items"][0]["items"][0]["body"]["service"][0] for canvas in book["items"]]
    assert [service["id"] for service in services] == [
        "http://testserver/iiif/3/lille%2Fbook%2Fp1",
        "http://testserver/iiif/3/lille%2Fbook%2Fp2",
    ]
    # A description that says otherwise wins.
    own = s.json(f"{P}/lille/own-rights/manifest")
    assert own["rights"] == "http://creativecommons.org/publicdomain/mark/1.0/"
    assert [p["id"] for p in own["provider"]] == ["https://donor.example/"]
    assert own["label"] == {"en": ["Open"]}
    # Folder-built objects get the provider and rights, not a language on folder names.
    loose = s.json(f"{P}/lille/loose/manifest")
    assert loose["rights"] == "http://rightsstatements.org/vocab/NoC-NC/1.0/"
    assert loose["provider"][0]["id"] == "https://pba.lille.fr/"
    assert loose["label"] == {"none": ["Loose"]}
    # nord has no provider or rights: none are made up.
    blue = s.json(f"{P}/nord/blue/manifest", headers={"host": "iiif.nord.example"})
    assert "provider" not in blue
    assert "rights" not in blue
    # The other institution's namespace holds none of them.
    s.json(f"{P}/nord/book/manifest", 404)
    s.json(f"{P}/book/manifest", 404)


def test_top_collection_of_institutions(site: Callable[..., Site]) -> None:
    s = site(LILLE, NORD)
    top = s.json(f"{P}/collection")
    assert top["type"] == "Collection"
    ids = [item["id"] for item in top["items"]]
    # Each member with its own base: nord's is its public URL, as in nord's own documents.
    assert ids[:2] == [f"http://testserver{P}/collection/lille", f"https://iiif.nord.example{P}/collection/nord"]
    assert top["items"][1]["thumbnail"][0]["service"][0]["id"] == "https://iiif.nord.example/iiif/3/nord%2Fblue"
    assert [item["type"] for item in top["items"]][:2] == ["Collection", "Collection"]
    assert f"http://testserver{P}/own/manifest" in ids  # the default catalogue's own objects follow
    lille = s.json(f"{P}/collection/lille")
    assert lille["label"] == {"fr": ["Palais des Beaux-Arts de Lille"], "en": ["Lille Fine Arts"]}
    assert lille["provider"][0]["id"] == "https://pba.lille.fr/"
    members = {item["id"].removeprefix(f"http://testserver{P}/") for item in lille["items"]}
    # The symlink out of its root is listed by name (as in any image folder) but shows nothing of nord's.
    assert members == {
        "lille/book/manifest",
        "lille/own-rights/manifest",
        "lille/loose/manifest",
        "lille/stolen/manifest",
    }
    stolen = s.http.get(f"{P}/lille/stolen/manifest")
    assert stolen.status_code == 500
    assert "nord" not in stolen.text
    assert str(s.root) not in stolen.text
    s.json(f"{P}/collection/lille/book", 404)


def test_an_institution_on_its_own_host(site: Callable[..., Site]) -> None:
    s = site(LILLE, NORD)
    # Its documents use its public URL, whichever host they were asked on.
    blue = s.json(f"{P}/nord/blue/manifest")
    assert blue["id"] == f"https://iiif.nord.example{P}/nord/blue/manifest"
    service = blue["items"][0]["items"][0]["items"][0]["body"]["service"][0]
    assert service["id"] == "https://iiif.nord.example/iiif/3/nord%2Fblue"
    # Its host's top collection is its own collection; other hosts see every institution.
    own = s.json(f"{P}/collection", headers={"host": "iiif.nord.example"})
    assert own["id"] == f"https://iiif.nord.example{P}/collection/nord"
    assert own["label"] == {"fr": ["Archives du Nord"]}
    assert [item["id"] for item in own["items"]] == [f"https://iiif.nord.example{P}/nord/blue/manifest"]
    assert len(s.json(f"{P}/collection", headers={"host": "iiif.other.example"})["items"]) >= 2
    # lille has no public URL: the request's own base.
    assert s.json(f"{P}/collection/lille", headers={"host": "iiif.nord.example"})["id"].startswith("http://iiif.nord")


def test_admin_tokens_are_scoped(site: Callable[..., Site]) -> None:
    s = site(LILLE, NORD)
    assert s.http.get("/iiif/3/lille%2Fred/full/64,/0/default.jpg").status_code == 200
    assert s.http.get("/iiif/3/nord%2Fblue/full/64,/0/default.jpg").status_code == 200

    def purge(token: str, identifier: str | None) -> Any:
        query = f"?identifier={identifier}" if identifier is not None else ""
        return s.http.request("POST", f"/admin/cache/purge{query}", headers={"authorization": f"Bearer {token}"})

    assert purge(LILLE_TOKEN, "lille%2Fred").status_code == 200
    assert purge(LILLE_TOKEN, "lille/red").json()["identifier"] == "lille/red"
    for identifier in (
        "nord%2Fblue",
        "nord/blue",
        None,
        "lille",
        "lille/../nord/blue",
        "lille%2F..%2Fnord%2Fblue",
        "own",
    ):
        response = purge(LILLE_TOKEN, identifier)
        assert response.status_code == 403, (identifier, response.status_code)
        assert "lille" in response.json()["error"]
    assert purge(NORD_TOKEN, "nord%2Fblue").status_code == 200
    assert purge("not-a-token-at-all-000", "lille%2Fred").status_code == 401
    # Statistics are the whole server's: the global token only.
    stats = s.http.get("/admin/stats", headers={"authorization": f"Bearer {LILLE_TOKEN}"})
    assert stats.status_code == 401
    assert s.http.get("/admin/stats", headers={"authorization": f"Bearer {GLOBAL_TOKEN}"}).status_code == 200
    # The global token still purges anything, everything included.
    assert purge(GLOBAL_TOKEN, "nord%2Fblue").status_code == 200
    assert purge(GLOBAL_TOKEN, None).status_code == 200


def test_institution_tokens_without_a_global_token(site: Callable[..., Site]) -> None:
    s = site(LILLE, NORD, admin_token="")
    headers = {"authorization": "Bearer "}
    assert s.http.request("POST", "/admin/cache/purge", headers=headers).status_code == 401
    assert s.http.get("/admin/stats", headers=headers).status_code == 401
    ok = s.http.request(
        "POST", "/admin/cache/purge?identifier=lille/red", headers={"authorization": f"Bearer {LILLE_TOKEN}"}
    )
    assert ok.status_code == 200


def test_reload_adds_changes_and_removes(site: Callable[..., Site], caplog: pytest.LogCaptureFixture) -> None:
    s = site(LILLE)
    s.json("/iiif/3/nord%2Fblue/info.json", 404)
    assert s.json("/iiif/3/lille%2Fred/info.json")["width"] == 300
    assert not s.reload()  # unchanged file: nothing to do
    # Added: served at once, images and manifests and the top collection.
    s.write(LILLE, NORD)
    assert s.reload()
    assert s.json("/iiif/3/nord%2Fblue/info.json")["height"] == 300
    assert s.json(f"{P}/nord/blue/manifest")["id"].startswith("https://iiif.nord.example/")
    assert [i["id"].rsplit("/", 1)[1] for i in s.json(f"{P}/collection")["items"][:2]] == ["lille", "nord"]
    # A broken file keeps what serves, and says why.
    s.write(LILLE, NORD.replace('"https://iiif.nord.example"', '"iiif.nord.example"'))
    with caplog.at_level(logging.ERROR):
        assert not s.reload()
    assert "institutions.nord.public_url" in caplog.text
    assert "previous ones keep serving" in caplog.text
    assert s.json("/iiif/3/nord%2Fblue/info.json")["height"] == 300
    s.config.write_text("[institutions.x\n")
    assert not s.reload()
    assert s.json(f"{P}/nord/blue/manifest")["id"].startswith("https://iiif.nord.example/")
    # Changed: nord's roots move to lille's folders, its defaults change.
    moved = NORD.replace("{root}/nord/images", "{root}/lille/images").replace(
        "{root}/nord/manifests", "{root}/lille/manifests"
    )
    s.write(
        LILLE,
        moved.replace(
            'public_url = "https://iiif.nord.example"\n', 'rights = "http://rightsstatements.org/vocab/InC/1.0/"\n'
        ),
    )
    assert s.reload()
    s.json("/iiif/3/nord%2Fblue/info.json", 404)  # known before: forgotten, looked up again
    assert s.json("/iiif/3/nord%2Fred/info.json")["width"] == 300
    assert s.json(f"{P}/nord/book/manifest")["rights"] == "http://rightsstatements.org/vocab/InC/1.0/"
    # Removed: nothing of it is served any more.
    s.write(NORD)
    assert s.reload()
    s.json("/iiif/3/lille%2Fred/info.json", 404)
    assert s.http.get("/iiif/3/lille%2Fred/full/max/0/default.jpg").status_code == 404
    s.json(f"{P}/lille/book/manifest", 404)
    s.json(f"{P}/collection/lille", 404)
    assert [i["id"].rsplit("/", 1)[1] for i in s.json(f"{P}/collection")["items"][:1]] == ["nord"]
    # Its token is gone with it.
    gone = s.http.request(
        "POST", "/admin/cache/purge?identifier=lille/red", headers={"authorization": f"Bearer {LILLE_TOKEN}"}
    )
    assert gone.status_code == 401
    # The file deleted: no institution at all; the default catalogue serves alone again.
    s.config.unlink()
    assert s.reload()
    s.json("/iiif/3/nord%2Fred/info.json", 404)
    top = s.json(f"{P}/collection")
    assert [item["id"].removeprefix(f"http://testserver{P}/") for item in top["items"]] == ["own/manifest"]


def test_the_running_server_notices_a_new_institution(site: Callable[..., Site]) -> None:
    """The watcher of the app's lifespan: add a table to the file, the institution serves."""
    s = site(LILLE, institutions_check_interval=0.05)
    s.json("/iiif/3/nord%2Fblue/info.json", 404)
    with s.http.portal.wrap_async_context_manager(s.http.app.router.lifespan_context(s.http.app)):
        s.write(LILLE, NORD)
        for _ in range(200):
            if s.http.get("/iiif/3/nord%2Fblue/info.json").status_code == 200:
                break
            s.http.portal.call(anyio.sleep, 0.02)
        assert s.json("/iiif/3/nord%2Fblue/info.json")["height"] == 300
        assert s.json(f"{P}/nord/blue/manifest")["type"] == "Manifest"


def test_without_institutions_nothing_changes(site: Callable[..., Site]) -> None:
    s = site()
    top = s.json(f"{P}/collection")
    assert [item["id"] for item in top["items"]] == [f"http://testserver{P}/own/manifest"]
    s.json("/iiif/3/lille%2Fred/info.json", 404)
    assert s.deployment.access_default("lille/red") is None


def test_access_defaults_for_the_authorization_rules(site: Callable[..., Site]) -> None:
    s = site(LILLE.replace('languages = ["fr", "en"]', 'access = "restricted"\ndegraded_max = 640'), NORD)
    assert s.deployment.access_default("lille/red") == ("restricted", 640)
    assert s.deployment.access_default("nord/blue") == ("open", None)
    assert s.deployment.access_default("own") is None


def test_change_discovery_sees_every_institution(site: Callable[..., Site]) -> None:
    """One log for the deployment: every institution's manifests and collections are in it."""
    s = site(LILLE, NORD)
    page = s.json("/iiif/discovery/activity/page/0")
    named = {item["object"]["id"].split(P + "/", 1)[1] for item in page["orderedItems"]}
    assert {"lille/book/manifest", "lille/loose/manifest", "nord/blue/manifest"} <= named
    assert {"collection/lille", "collection/nord", "collection"} <= named


@pytest.mark.parametrize(
    ("path", "slug"),
    [
        (b"/iiif/3/lille%2Fred/info.json", "lille"),
        (b"/iiif/3/lille%2fred/full/max/0/default.jpg", "lille"),
        (b"/iiif/2/nord%2Fblue/info.json", "nord"),
        (b"/iiif/3/lille/info.json", ""),  # the slug alone is no identifier of it
        (b"/iiif/3/other%2Fred/info.json", ""),
        (b"/iiif/3/own/info.json", ""),
        (b"/iiif/presentation/3/lille/book/manifest", "lille"),
        (b"/iiif/presentation/3/collection/nord", "nord"),
        (b"/iiif/presentation/3/collection/nord/sub", "nord"),
        (b"/iiif/presentation/3/collection", ""),
        (b"/iiif/presentation/3/own/manifest", ""),
        (b"/", ""),
        (b"/admin/stats", ""),
    ],
)
def test_institution_of_a_path(path: bytes, slug: str) -> None:
    registry = parse_institutions({"lille": {"images": "/l"}, "nord": {"images": "/n"}}, {})
    assert institution_of_path(registry, path) == slug
    assert institution_of_path(Institutions(), path) == ""


def test_metrics_and_access_log_name_the_institution(
    site: Callable[..., Site], caplog: pytest.LogCaptureFixture
) -> None:
    s = site(LILLE, NORD, access_log=True, log_format="json")
    with caplog.at_level(logging.INFO, logger="iiifserver.access"):
        for _ in range(2):
            assert s.http.get("/iiif/3/lille%2Fred/info.json").status_code == 200
        assert s.http.get(f"{P}/nord/blue/manifest").status_code == 200
        assert s.http.get("/iiif/3/own/info.json").status_code == 200
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "iiifserver.access"]
    assert [(line["path"], line["institution"]) for line in lines] == [
        ("/iiif/3/lille%2Fred/info.json", "lille"),
        ("/iiif/3/lille%2Fred/info.json", "lille"),
        (f"{P}/nord/blue/manifest", "nord"),
        ("/iiif/3/own/info.json", ""),
    ]
    scrape = s.http.get("/metrics").text
    assert 'iiifserver_institution_requests_total{institution="lille",kind="info.json",status="200"} 2.0' in scrape
    assert 'iiifserver_institution_requests_total{institution="nord",kind="manifest",status="200"} 1.0' in scrape
    assert 'institution=""' not in scrape
    # A reload attributes paths afresh: a removed institution's requests are no longer its own.
    s.write(NORD)
    assert s.reload()
    assert s.http.get("/iiif/3/lille%2Fred/info.json").status_code == 404
    scrape = s.http.get("/metrics").text
    assert 'institution="lille",kind="info.json",status="404"' not in scrape


def test_text_access_log_lines(site: Callable[..., Site], caplog: pytest.LogCaptureFixture) -> None:
    s = site(LILLE, access_log=True)
    with caplog.at_level(logging.INFO, logger="iiifserver.access"):
        s.http.get("/iiif/3/lille%2Fred/info.json")
        s.http.get("/iiif/3/own/info.json")
    first, second = (r.getMessage() for r in caplog.records if r.name == "iiifserver.access")
    assert first.endswith(" institution=lille")
    assert "institution=" not in second


def test_landing_pages(site: Callable[..., Site]) -> None:
    """Each institution's landing page is its collection's page; on its own host, the home page."""
    s = site(LILLE, NORD)
    html = {"accept": "text/html"}

    def collection_url(path: str, **headers: str) -> str:
        response = s.http.get(path, headers={**html, **headers})
        assert response.status_code == 200
        config = json.loads(response.text.split('type="application/json"', 1)[1].split(">", 1)[1].split("</script>")[0])
        return str(config["collectionUrl"])

    assert collection_url("/collections/lille") == f"http://testserver{P}/collection/lille"
    assert collection_url("/") == f"http://testserver{P}/collection"
    assert collection_url("/", host="iiif.nord.example") == f"http://iiif.nord.example{P}/collection/nord"
    assert s.http.get("/objects/lille/book", headers=html).status_code == 200
    assert s.http.get("/objects/nord/book", headers=html).status_code == 404


def test_admin_endpoints_stay_off_without_any_token(site: Callable[..., Site]) -> None:
    """A config file with no token anywhere keeps /admin absent (attack case F12), until one is added."""
    s = site(LILLE.replace('admin_token_env = "LILLE_TOKEN"\n', ""), admin_token="")
    assert s.http.request("POST", "/admin/cache/purge?identifier=lille/red").status_code == 404
    assert s.http.get("/admin/stats").status_code == 404
    s.write(LILLE)
    assert s.reload()
    assert s.http.get("/admin/stats").status_code == 401
    ok = s.http.request(
        "POST", "/admin/cache/purge?identifier=lille/red", headers={"authorization": f"Bearer {LILLE_TOKEN}"}
    )
    assert ok.status_code == 200


def test_the_default_catalogue_cannot_shadow_an_institution(site: Callable[..., Site]) -> None:
    """A folder of the default root named like a slug is not served under the institution's name."""
    s = site(LILLE)
    save_pyramid(solid(50, 50, (1, 2, 3)), s.root / "default" / "lille" / "fake.tif", tile=128)
    s.json(f"{P}/lille/fake/manifest", 404)
    s.json("/iiif/3/lille%2Ffake/info.json", 404)  # lille/ is lille's root, not a folder of the default root
    catalogue = s.http.portal.call(s.http.app.state.presentation.catalogue)
    assert any("'lille' is hidden by the institution of that name" in str(p) for p in catalogue.problems)
    assert "lille" not in {entry.id for entry in catalogue.objects.values() if entry.origin == "folder"}


def test_own_host_through_a_proxy(site: Callable[..., Site]) -> None:
    """Behind a trusted proxy its X-Forwarded-Host names the host; from anyone else it is ignored."""
    s = site(LILLE, NORD, trusted_proxies="10.9.8.7")
    forwarded = {"x-forwarded-host": "iiif.nord.example", "accept": "text/html"}
    own = s.http.get(f"{P}/collection", headers=forwarded, client="10.9.8.7").json()
    assert own["id"] == f"https://iiif.nord.example{P}/collection/nord"
    forged = s.http.get(f"{P}/collection", headers=forwarded, client="203.0.113.9").json()
    assert forged["id"] == f"http://testserver{P}/collection"
    page = s.http.get("/", headers=forwarded, client="10.9.8.7").text
    assert f"{P}/collection/nord" in page
    assert f"{P}/collection/nord" not in s.http.get("/", headers=forwarded, client="203.0.113.9").text


def test_an_institution_in_a_bucket(
    site: Callable[..., Site], seaweedfs: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An s3:// institution on a server whose own roots are folders: the store is made for it,
    its descriptions name its objects, and its prefix reaches nothing else in the bucket."""
    from tests.object_storage import new_place, put, use_store

    use_store(monkeypatch, seaweedfs)
    place = new_place(seaweedfs)
    put(seaweedfs, place.bucket, place.key("scan.tif"), (tmp_path / "lille/images/red.tif").read_bytes())
    put(seaweedfs, place.bucket, place.prefix + "-other/secret.tif", (tmp_path / "lille/images/red.tif").read_bytes())
    (tmp_path / "bucket-manifests").mkdir()
    (tmp_path / "bucket-manifests/scan.yaml").write_text("label: Scan\npages: [scan]\n")
    table = f'\n[institutions.archives]\nimages = "{place.url}"\nmanifests = "{{root}}/bucket-manifests"\n'
    s = site(table, block_cache=tmp_path / "blocks")
    assert s.json("/iiif/3/archives%2Fscan/info.json")["width"] == 300
    assert s.json(f"{P}/archives/scan/manifest")["label"] == {"none": ["Scan"]}
    s.json("/iiif/3/archives%2F..%2Fscans-other%2Fsecret/info.json", 404)
    s.json("/iiif/3/archives%2F..%2F" + place.prefix.rpartition("/")[2] + "-other%2Fsecret/info.json", 404)


def test_a_worker_started_on_a_broken_file_serves_the_rest_until_it_is_fixed(
    site: Callable[..., Site], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        s = site(LILLE, NORD.replace("https://iiif.nord.example", "ftp://nord"))
    assert "institutions not loaded" in caplog.text
    assert "institutions.nord.public_url" in caplog.text
    assert s.json("/iiif/3/own/info.json")["width"] == 100
    s.json("/iiif/3/lille%2Fred/info.json", 404)
    assert not s.reload()  # the same broken file: nothing new, not logged again
    s.write(LILLE, NORD)
    assert s.reload()
    assert s.json("/iiif/3/lille%2Fred/info.json")["width"] == 300
