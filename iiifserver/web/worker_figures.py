"""This worker's figures: what the metrics publish and what ``/admin/stats`` shows of it.

Owns: picking the cumulative figures ``web.metrics`` publishes out of the image service, its tiers
and its lanes (``cache_figures``, ``lane_figures``); this worker's statistics, the service's own
and beside them the fast path's memo and the object store's block cache (``WorkerFigures``); and
publishing both once a second (``publish_every_second``), so a scrape or ``/admin/stats`` answered
by any worker sees every worker's.
Must not know: the metric names and the stats files' format (``web.metrics``, ``web.admin``),
how the figures are counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from iiifserver.concurrency import Lane
from iiifserver.image.block_cache import BlockCache
from iiifserver.image.object_store import ObjectStore
from iiifserver.image.service import ImageService, Lanes
from iiifserver.web.admin import WorkerStats
from iiifserver.web.fast_path import FastPath
from iiifserver.web.metrics import Metrics

log = logging.getLogger(__name__)


def cache_figures(service: ImageService) -> dict[str, int]:
    """The cumulative figures ``web.metrics`` publishes, from this process's service and tiers."""
    figures = {
        "renders": service.counters.renders,
        "renders_deferred": service.admission.deferred,
        "stored_tiles_not_kept": service.doorkeeper.first_asks,
        "passthrough": service.counters.passthrough,
    }
    cache = service.cache
    if cache is not None:
        figures["memory_hits"] = cache.memory.stats.hits
        figures["memory_misses"] = cache.memory.stats.misses
        if cache.disk is not None:
            figures["disk_hits"] = cache.disk.stats.hits
            figures["disk_misses"] = cache.disk.stats.misses
        if cache.shared is not None:
            shared = cache.shared.stats
            figures["shared_hits"] = shared.hits
            figures["shared_misses"] = shared.misses
            figures["shared_facts_hits"] = shared.facts_hits
            figures["shared_facts_misses"] = shared.facts_misses
            figures["shared_up"] = int(shared.up)
    return figures


def lane_figures(lanes: Lanes) -> dict[str, int]:
    """Each lane's waiting requests (by its name) and busy threads (``<name>:busy``)."""
    figures: dict[str, int] = {}
    for lane in (lanes.io, lanes.tile, lanes.heavy, lanes.rechecks):
        figures[lane.name] = lane.waiting
        figures[f"{lane.name}:busy"] = lane.busy
    return figures


class WorkerFigures:
    """This worker's statistics: ``all()`` for its stats file, ``extra()`` beside the service's own.

    ``fast_path`` is asked each time: the app gets its fast path after the service exists.
    """

    def __init__(
        self, service: ImageService, store: ObjectStore | None, fast_path: Callable[[], FastPath | None]
    ) -> None:
        self.service = service
        self.store = store
        self.fast_path = fast_path

    def all(self) -> dict[str, object]:
        return {**self.service.stats(), **self.extra()}

    def extra(self) -> dict[str, object]:
        """The fast path's figures and the block cache's (absent without an object store)."""
        fast_path = self.fast_path()
        return {"fast_path": fast_path.stats() if fast_path is not None else {}, **self._block_cache()}

    def _block_cache(self) -> dict[str, object]:
        blocks = self.store.block_cache if self.store is not None else None
        if not isinstance(blocks, BlockCache):
            return {}
        return {"block_cache": {"fetched": blocks.fetched, "hits": blocks.hits, "bytes": blocks.nbytes}}


async def publish_every_second(
    metrics: Metrics | None, workers: WorkerStats, figures: Callable[[], dict[str, object]], io: Lane
) -> None:
    """Metrics to prometheus_client's files and this worker's figures to its stats file."""
    while True:
        try:
            if metrics is not None:
                metrics.publish()
            if workers.directory is not None:
                await io.run(workers.publish, figures())
        except asyncio.CancelledError:
            raise
        except Exception:  # a publisher that dies silently would freeze every figure
            log.exception("publishing metrics")
        await asyncio.sleep(1.0)
