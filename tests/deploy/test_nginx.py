"""deploy/nginx: the configuration passes `nginx -t`, and nginx in front of a live server keeps `%2F`.

The live test runs Debian's nginx as the current user on a free loopback port, with its own
prefix, pid file and temporary folders, in front of a real `iiifserver serve`; both are stopped
by their PIDs. nginx is installed by `scripts/install.sh --test`; without it the tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ASSETS, VALIDATOR_ID, free_port, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
NGINX_DIR = REPO / "deploy" / "nginx"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/install.sh --test)")


def nginx_prefix(tmp: Path, listen_port: int, upstream_port: int) -> Path:
    """A self-contained nginx prefix running deploy/nginx/iiifserver.conf; returns its nginx.conf."""
    prefix = tmp / "nginx"
    for folder in ("logs", "temp/client", "temp/proxy", "temp/fastcgi", "temp/uwsgi", "temp/scgi"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    site = (NGINX_DIR / "iiifserver.conf").read_text()
    # The shipped file listens on 80 (and [::]:80); here one free loopback port.
    assert site.count("listen 80;") == 1
    assert site.count("listen [::]:80;") == 1
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen_port};").replace("listen [::]:80;", "")
    (prefix / "iiifserver.conf").write_text(site)
    upstream = (NGINX_DIR / "upstream.conf").read_text()
    assert upstream.count("server 127.0.0.1:8000 ") == 1
    (prefix / "upstream.conf").write_text(upstream.replace("127.0.0.1:8000 ", f"127.0.0.1:{upstream_port} "))
    mime = Path("/etc/nginx/mime.types")
    temp = prefix / "temp"
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    {f"include {mime};" if mime.exists() else ""}
    access_log {prefix}/logs/access.log;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include iiifserver.conf;
}}
"""
    )
    return conf


def test_config_passes_nginx_t(tmp_path: Path) -> None:
    conf = nginx_prefix(tmp_path, free_port(), 8000)
    assert NGINX is not None
    result = subprocess.run(
        [NGINX, "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[str]:
    """nginx on a free port in front of ``iiifserver serve``; yields nginx's base URL."""
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    shutil.copy(ASSETS / f"{VALIDATOR_ID}.png", images / "a" / "b.png")
    server, server_port = start_server(
        images, tmp_path / "cache", "--trusted-proxies", "127.0.0.1", log=tmp_path / "server.log", workers=1
    )
    try:
        port = free_port()
        conf = nginx_prefix(tmp_path, port, server_port)
        assert NGINX is not None
        log = (conf.parent / "logs" / "stderr.log").open("wb")
        proxy = subprocess.Popen([NGINX, "-p", str(conf.parent), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(f"http://127.0.0.1:{port}/images/health", proxy)
            yield f"http://127.0.0.1:{port}"
        finally:
            proxy.send_signal(signal.SIGQUIT)  # graceful stop of nginx's master and its worker
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(timeout=10)
            log.close()
    finally:
        stop_server(server)


def wait_for(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"nginx exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 20 s")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_sub_folder_identifier_through_the_prefix(proxied: str) -> None:
    status, body = get(f"{proxied}/images/iiif/3/a%2Fb/info.json")
    assert status == 200, body
    info = json.loads(body)
    # The public prefix and nginx's Host reach the id (X-Forwarded-Prefix/Host from a trusted proxy).
    assert info["id"] == f"{proxied}/images/iiif/3/a%2Fb"
    status, body = get(f"{proxied}/images/iiif/3/a%2Fb/full/64,/0/default.jpg")
    assert status == 200
    assert body[:3] == b"\xff\xd8\xff"


def test_decoded_slash_is_not_the_same_identifier(proxied: str) -> None:
    # The raw path passes untouched: an unencoded slash stays two segments (attack case A07).
    assert get(f"{proxied}/images/iiif/3/a/b/info.json")[0] == 404


def test_admin_is_not_published(proxied: str) -> None:
    assert get(f"{proxied}/images/admin/stats")[0] == 404


def test_bare_prefix_redirects(proxied: str) -> None:
    request = urllib.request.Request(f"{proxied}/images", method="GET")
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=10)
    with caught.value:  # holds the response's socket
        assert caught.value.code == 301
        assert caught.value.headers["Location"].endswith("/images/")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
