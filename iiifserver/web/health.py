"""Liveness and readiness: ``/health`` and ``/ready``, for load balancers and orchestrators.

Owns: what "ready" means. ``/health``: the process answers (200, always). ``/ready``: the image
root is a readable folder (else 503: nothing can be served), the cache folder is writable when
the disk tier is on (else 200, ``degraded``: tiles are rendered or read again, never lost), and
the worker processes are up (fewer than configured: ``degraded``). Damaged sources this worker
has met are listed (identifier and reason, at most ``MAX_DAMAGED_LISTED``): they are left out of
collections, and do not make the service unready. The body is JSON naming each check and its
outcome, never a filesystem path (attack case: no paths in bodies).
Must not know: IIIF, the image service.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

NO_STORE = {"cache-control": "no-store"}
RunIO = Callable[..., Awaitable[Any]]
MAX_DAMAGED_LISTED = 100  # a whole broken share must not make the probe's answer huge


def _no_damage() -> dict[str, str]:
    return {}


def readiness(
    images: Path | None,
    cache: Path | None,
    workers_expected: int,
    workers_up: Callable[[], int | None],
    damaged: Callable[[], dict[str, str]] = _no_damage,
) -> dict[str, Any]:
    """The checks (blocking: file system calls) and the verdict: ``status`` ready, degraded or not_ready."""
    checks: dict[str, str] = {}
    # None: the image root is an object store, not checked here (each request meets its state).
    readable = images is None or (images.is_dir() and os.access(images, os.R_OK | os.X_OK))
    checks["images"] = "ok" if readable else "unreadable"
    if cache is not None:
        try:
            with tempfile.NamedTemporaryFile(dir=cache, prefix=".ready-"):
                pass
            checks["cache"] = "ok"
        except OSError:
            checks["cache"] = "not writable"
    counted = workers_up()
    up = 1 if counted is None else counted  # None: not known beyond this process, which is up
    checks["workers"] = f"{up} of {workers_expected} up"
    degraded = [name for name in ("cache",) if checks.get(name, "ok") != "ok"]
    if up < workers_expected:
        degraded.append("workers")
    status = "not_ready" if checks["images"] != "ok" or up < 1 else "degraded" if degraded else "ready"
    found = damaged()
    listed = dict(list(found.items())[:MAX_DAMAGED_LISTED])
    return {
        "status": status,
        "checks": checks,
        "degraded": degraded,
        "damaged_sources": {"count": len(found), "listed": listed},
    }


def routes(
    images: Path | None,
    cache: Path | None,
    workers_expected: int,
    workers_up: Callable[[], int | None],
    run_io: RunIO,
    damaged: Callable[[], dict[str, str]] = _no_damage,
) -> list[Route]:
    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n", headers=NO_STORE)

    async def ready(request: Request) -> Response:
        verdict = await run_io(readiness, images, cache, workers_expected, workers_up, damaged)
        return JSONResponse(verdict, status_code=503 if verdict["status"] == "not_ready" else 200, headers=NO_STORE)

    return [Route("/health", health, methods=["GET", "HEAD"]), Route("/ready", ready, methods=["GET", "HEAD"])]
