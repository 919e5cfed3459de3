"""Three instances behind nginx with one shared Redis: no failed request through a crash or a
rolling restart, and a region rendered on one instance is a shared-tier hit on another.

Runs ``benchmarks/scale_out.py``'s ``Cluster`` (deploy/nginx/iiifserver.conf with three
upstreams, each instance with its own disk cache); everything is on loopback and stopped by PID.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.scale_out import FAIL_TIMEOUT, NGINX, Cluster, free_port, load_for, metric, run_load, viewer_urls
from tests.redis_server import REDIS_SERVER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NGINX is None or REDIS_SERVER is None, reason="needs nginx and redis-server"),
    pytest.mark.timeout(120),
]

SHARED_HITS = 'iiifserver_cache_hits_total{tier="shared"}'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("scale-out"), n=3)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_a_region_rendered_on_one_instance_is_a_shared_hit_on_another(cluster: Cluster) -> None:
    a, b = cluster.instances[0], cluster.instances[1]
    path = f"/iiif/3/{cluster.identifiers[0]}/123,45,321,234/160,/0/default.jpg"
    hits_before = metric(b.base, SHARED_HITS)
    renders_before = metric(b.base, "iiifserver_renders_total")
    rendered = httpx.get(a.base + path, timeout=30)
    assert rendered.status_code == 200
    deadline = time.monotonic() + 5
    while True:  # A writes to the shared tier in the background, after its response
        served = httpx.get(b.base + path, timeout=30)
        assert served.status_code == 200
        if metric(b.base, SHARED_HITS) > hits_before or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert served.content == rendered.content
    assert metric(b.base, SHARED_HITS) == hits_before + 1
    assert metric(b.base, "iiifserver_renders_total") == renders_before
    assert metric(b.base, "iiifserver_shared_cache_up") == 1.0


def test_no_failed_request_when_an_instance_is_killed(cluster: Cluster) -> None:
    urls = viewer_urls(cluster.identifiers, random.Random(3))

    def kill_then_replace() -> None:
        time.sleep(1.5)
        cluster.instances[2].stop(signal.SIGKILL)  # mid-run, no warning
        time.sleep(1.5)
        assert cluster.redis is not None
        cluster.instances[2].start(cluster.images, cluster.manifests, cluster.redis.url)

    result = load_for(cluster.base, urls, clients=6, seconds=5.0, during=kill_then_replace)
    assert result.ok > 100
    assert result.failed == 0, result.failures[:10]


def test_no_failed_request_during_a_rolling_restart(cluster: Cluster) -> None:
    urls = viewer_urls(cluster.identifiers, random.Random(4))

    def rolling_restart() -> None:
        for index in range(len(cluster.instances)):
            cluster.replace(index, signal.SIGTERM)  # returns once the replacement is /ready
            # As an operator's rolling restart must: let nginx's fail_timeout pass, so the
            # replacement is back in its rotation before the next instance goes.
            time.sleep(FAIL_TIMEOUT + 0.5)

    result = load_for(cluster.base, urls, clients=6, seconds=3.0, during=rolling_restart)
    assert result.ok > 100
    assert result.failed == 0, result.failures[:10]


def test_the_load_generator_counts_failures() -> None:
    """A refused connection is a failure, not silently skipped (so a zero above means zero)."""
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    result = run_load(f"http://127.0.0.1:{free_port()}", ["/iiif/3/x/info.json"], 2, stop)
    timer.join()
    assert result.ok == 0
    assert result.failed > 0
