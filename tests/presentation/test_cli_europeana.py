"""``iiifserver manifests validate --profile europeana``: the manifests as served, checked for Europeana.

Findings grouped by object with the description file and the field to fix; exit 0 without errors
(warnings alone pass), 1 with errors, 2 on bad usage; ``--format json``; ``--url`` against a live
server on 127.0.0.1 (the real app, and a stand-in that forgets CORS).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn
from click.testing import CliRunner

from iiifserver.app import create_app
from iiifserver.cli import main
from iiifserver.config import Settings
from tests.presentation.conftest import REPO, make_image, write

PUBLIC = "https://iiif.example.org"
GOOD = """\
label: {en: Painting, fr: Tableau}
rights: http://creativecommons.org/licenses/by/4.0/
requiredStatement: {label: {en: Credit}, value: {en: Museum}}
provider:
  - label: {en: Museum}
    homepage: https://museum.example.org/
homepage: https://museum.example.org/objects/1
seeAlso:
  - id: https://museum.example.org/objects/1.edm.xml
    format: application/rdf+xml
    profile: http://www.europeana.eu/schemas/edm/
"""


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    images, manifests = tmp_path / "img", tmp_path / "manifests"
    make_image(images / "painting.tif", 800, 600)
    make_image(images / "sketch.tif", 800, 600)
    write(manifests / "painting.yaml", GOOD)
    write(
        manifests / "sketch.yaml",
        "label: {none: Sketch}\nrights: http://rightsstatements.org/vocab/NoC-US/1.0/\n",
    )
    return images, manifests


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["manifests", "validate", "--profile", "europeana", *args])
    return result.exit_code, result.output


def _settings(images: Path, manifests: Path, *more: str) -> list[str]:
    return ["-s", f"images={images}", "-s", f"manifests={manifests}", *more]


def test_good_object_passes_and_a_bad_one_names_file_and_fields(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    code, output = _run("painting", *_settings(images, manifests, "-s", f"public_url={PUBLIC}"))
    assert code == 0, output
    assert "ok   painting (painting.yaml)" in output
    assert "1 object(s) checked against the europeana profile: 0 with errors; 0 error(s), 0 warning(s)" in output

    code, output = _run(*_settings(images, manifests, "-s", f"public_url={PUBLIC}"))
    assert code == 1, output
    sketch = output[output.index("sketch (sketch.yaml)") :]
    assert "ERROR   field 'rights': Europeana accepts only six RightsStatements.org statements" in sketch
    assert "not NoC-US" in sketch
    assert "source: https://europeana.atlassian.net/wiki/spaces/EF/pages/1503756289/" in sketch
    assert "ERROR   field 'provider': no provider" in sketch
    assert "warning field 'label': the title has no language" in sketch
    assert "warning field 'homepage'" in sketch
    assert "2 object(s) checked against the europeana profile: 1 with errors; 2 error(s), 4 warning(s)" in output


def test_warnings_alone_exit_zero(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    write(manifests / "painting.yaml", GOOD.replace("homepage: https://museum.example.org/objects/1\n", ""))
    code, output = _run("painting", *_settings(images, manifests, "-s", f"public_url={PUBLIC}"))
    assert code == 0, output
    assert "warning field 'homepage': no homepage" in output
    assert "0 error(s), 1 warning(s)" in output


def test_without_an_https_public_url_the_ids_are_an_error(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    code, output = _run("painting", *_settings(images, manifests))
    assert code == 1
    assert "ids are http (first: http://127.0.0.1:8000/iiif/presentation/3/painting/manifest)" in output
    assert "Set public_url" in output
    assert "(https-ids)" in output


def test_folder_objects_say_which_description_to_write(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    make_image(images / "loose.tif", 800, 600)
    code, output = _run("loose", *_settings(images, manifests, "-s", f"public_url={PUBLIC}"))
    assert code == 1
    assert f"loose (no description, built from its image: write {manifests}/loose.yaml)" in output


def test_broken_description_is_an_error_of_its_object(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    write(manifests / "painting.yaml", GOOD + "colour: red\n")
    code, output = _run("painting", *_settings(images, manifests, "-s", f"public_url={PUBLIC}"))
    assert code == 1
    assert "painting.yaml: field 'colour': unknown field" in output


def test_json_format(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    code, output = _run("--format", "json", *_settings(images, manifests, "-s", f"public_url={PUBLIC}"))
    assert code == 1
    report = json.loads(output)
    assert (report["profile"], report["errors"], report["warnings"]) == ("europeana", 2, 4)
    by_id = {o["id"]: o for o in report["objects"]}
    assert by_id["painting"] == {"id": "painting", "description": "painting.yaml", "findings": []}
    rights = next(f for f in by_id["sketch"]["findings"] if f["rule"] == "rights-allowed")
    assert rights["severity"] == "error"
    assert rights["field"] == "rights"
    assert rights["path"] == "rights"
    assert rights["source"].startswith("https://europeana.atlassian.net/")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nowhere"], "no object 'nowhere'"),
        (["--format", "xml"], "'xml' is not one of"),
        (["--url", "ftp://example.org"], "is not an http(s) URL"),
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str], says: str) -> None:
    images, manifests = _tree(tmp_path)
    code, output = _run(*args, *_settings(images, manifests))
    assert code == 2
    assert says in output


def test_identifiers_without_a_profile_exit_2(tmp_path: Path) -> None:
    images, manifests = _tree(tmp_path)
    result = CliRunner().invoke(main, ["manifests", "validate", "painting", *_settings(images, manifests)])
    assert result.exit_code == 2
    assert "go with --profile" in result.output


def test_the_described_demo_objects_pass(demo_images: Path) -> None:
    demo = ["album", "book-of-hours", "painting"]
    code, output = _run(*demo, *_settings(demo_images, REPO / "manifests", "-s", f"public_url={PUBLIC}"))
    assert code == 0, output
    for name in demo:
        assert f"ok   {name} ({name}.yaml)" in output


# -- live: --url -----------------------------------------------------------------------------------


@pytest.fixture(params=[PUBLIC])
def live_app(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, Path]]:
    """The real app (public_url https, or "" for ids from the request) on a free 127.0.0.1 port, in a thread."""
    images, manifests = _tree(tmp_path)
    settings = Settings(images=images, manifests=manifests, cache=tmp_path / "cache", public_url=request.param)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server thread ended"
            assert time.monotonic() < deadline, "the server did not start within 20 s"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", images, manifests
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_live_server_serves_what_europeana_needs(live_app: tuple[str, Path, Path]) -> None:
    base, images, manifests = live_app
    code, output = _run("painting", "--url", base, *_settings(images, manifests))
    assert code == 0, output  # CORS on the manifest and the info.json, https ids as served
    assert "ok   painting (painting.yaml)" in output


class _NoCors(BaseHTTPRequestHandler):
    """Serves one good manifest without CORS headers, and 404 for anything else (its info.json)."""

    manifest: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        if self.path.endswith("/painting/manifest"):
            body = json.dumps(self.manifest).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/ld+json")
        else:
            body = b"not here"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def test_live_server_without_cors_fails(tmp_path: Path, live_app: tuple[str, Path, Path]) -> None:
    base, images, manifests = live_app
    with urllib.request.urlopen(f"{base}/iiif/presentation/3/painting/manifest") as response:
        _NoCors.manifest = json.loads(response.read())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoCors)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        stand_in = f"http://127.0.0.1:{server.server_address[1]}"
        code, output = _run("painting", "--url", stand_in, *_settings(images, manifests))
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    assert code == 1
    assert (
        f"the manifest at {stand_in}/iiif/presentation/3/painting/manifest answered no Access-Control-Allow-Origin"
        in output
    )
    assert f"the info.json at {stand_in}/iiif/3/painting/info.json answered 404 text/plain" in output
    assert "(cors)" in output
    assert "(resolvable)" in output


class _Proxy(BaseHTTPRequestHandler):
    """A stand-in for a TLS proxy: forwards GETs to the app with X-Forwarded-Proto/Host, as nginx would."""

    upstream: ClassVar[str] = ""

    def do_GET(self) -> None:
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "iiif.example.org"}
        ask = urllib.request.Request(self.upstream + self.path, headers={**dict(self.headers), **forwarded})
        try:
            with urllib.request.urlopen(ask, timeout=10) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        self.send_response(status)
        for name in ("Content-Type", "Access-Control-Allow-Origin"):
            if headers.get(name):
                self.send_header(name, headers[name])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.mark.parametrize("live_app", [""], indirect=True)
def test_behind_a_proxy_the_served_ids_are_checked(live_app: tuple[str, Path, Path]) -> None:
    """No public_url: asked directly the ids are http (an error); through the proxy they are https."""
    base, images, manifests = live_app
    code, output = _run("painting", "--url", base, *_settings(images, manifests))
    assert code == 1
    assert f"ids are http (first: {base}/iiif/presentation/3/painting/manifest)" in output

    _Proxy.upstream = base
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=proxy.serve_forever)
    thread.start()
    try:
        code, output = _run(
            "painting", "--url", f"http://127.0.0.1:{proxy.server_address[1]}", *_settings(images, manifests)
        )
    finally:
        proxy.shutdown()
        thread.join(timeout=10)
        proxy.server_close()
    assert code == 0, output  # ids https://iiif.example.org/..., its info.json asked through the proxy
    assert "ok   painting (painting.yaml)" in output
