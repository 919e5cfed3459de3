"""Operator endpoints under ``/admin``: cache purge and statistics, behind a bearer token.

Owns: the token check (constant-time), the two routes, and the per-worker statistics files.
Absent unless ``admin_token`` is set (attack case F12: off by default, authenticated). Put them
behind your proxy's access rules as well; a purge reaches the other worker processes' memory
tiers within a second. Each worker writes its figures to ``stats-<pid>.json`` in the run folder
``serve`` made (``WorkerStats``, once a second), so ``/admin/stats``, answered by any one worker,
shows every worker's figures and their total.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from iiifserver.errors import BadRequest
from iiifserver.image.request import decode_identifier
from iiifserver.image.service import ImageService
from iiifserver.institutions import Institution, Institutions
from iiifserver.processes import is_alive
from iiifserver.web.errors import NO_STORE, error_response


class WorkerStats:
    """Worker figures in files, one per process: ``publish`` writes this one's, ``read`` all live ones."""

    STALE_AFTER = 10.0  # seconds without a write: a worker that is gone (or hung)

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def publish(self, figures: Mapping[str, object]) -> None:
        """Write this worker's figures atomically (blocking: call it in a worker thread)."""
        if self.directory is None:
            return
        target = self.directory / f"stats-{os.getpid()}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(figures))
        temporary.replace(target)

    def forget(self) -> None:
        """This worker stops: its file goes."""
        if self.directory is not None:
            (self.directory / f"stats-{os.getpid()}.json").unlink(missing_ok=True)

    def read(self) -> dict[str, dict[str, Any]] | None:
        """Every live worker's last figures by pid (blocking); None without a run folder."""
        if self.directory is None:
            return None
        now = time.time()
        found: dict[str, dict[str, Any]] = {}
        for path in self.directory.glob("stats-*.json"):
            pid = path.stem.removeprefix("stats-")
            with contextlib.suppress(OSError, ValueError):
                if now - path.stat().st_mtime > self.STALE_AFTER or not is_alive(int(pid)):
                    continue
                found[pid] = json.loads(path.read_text())
        return found

    def live_workers(self) -> int | None:
        found = self.read()
        return None if found is None else len(found)


def total(figures: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Every number summed over the workers; the disk tier's shared figures (its size, bound and
    purge generation: one tree seen by every worker) taken as the largest instead."""

    def merge(into: dict[str, Any], item: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for name, value in item.items():
            if isinstance(value, Mapping):
                merge(into.setdefault(name, {}), value, (*path, name))
            elif isinstance(value, bool) or not isinstance(value, int | float):
                into.setdefault(name, value)
            elif path[-1:] == ("disk",) and name in _SHARED_DISK:
                into[name] = max(into.get(name) or 0, value)
            else:
                into[name] = into.get(name, 0) + value

    out: dict[str, Any] = {}
    for item in figures:
        merge(out, item, ())
    return out


_SHARED_DISK = frozenset({"bytes", "max_bytes", "generation"})


def routes(
    service: ImageService,
    token: str,
    extra_stats: Callable[[], dict[str, object]] | None = None,
    workers: WorkerStats | None = None,
    run_io: Callable[..., Any] | None = None,
    institutions: Callable[[], Institutions] | None = None,
) -> list[Route]:
    # ``institutions``: each one's admin token purges its own identifiers only (``slug/...``).
    if not token and institutions is None:
        return []

    def bearer(request: Request) -> str:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""

    def authorised(request: Request) -> bool:
        given = bearer(request)
        return bool(token) and bool(given) and hmac.compare_digest(given.encode(), token.encode())

    def institution(request: Request) -> Institution | None:
        given = bearer(request)
        return institutions().of_token(given) if institutions is not None and given else None

    def off() -> bool:
        # No token at all (an institutions file whose tables name none): as if the endpoints were absent.
        return not token and (institutions is None or not any(item.admin_token for item in institutions().items))

    def denied() -> Response:
        return JSONResponse(
            {"error": "a valid 'Authorization: Bearer <admin_token>' header is required"},
            status_code=401,
            headers={**NO_STORE, "www-authenticate": 'Bearer realm="iiifserver-admin"'},
        )

    async def purge(request: Request) -> Response:
        if off():
            raise HTTPException(status_code=404)
        own = None if authorised(request) else institution(request)
        if own is None and not authorised(request):
            return denied()
        raw = request.query_params.get("identifier")
        try:
            identifier = decode_identifier(raw.encode("utf-8")) if raw is not None else None
        except BadRequest as exc:
            return error_response(exc)
        if own is not None and (
            identifier is None
            or not identifier.startswith(own.prefix)
            or any(segment in ("", ".", "..") for segment in identifier.split("/"))
        ):
            return JSONResponse(
                {"error": f"this token purges only identifiers of {own.slug} (identifier={own.slug}/...)"},
                status_code=403,
                headers=NO_STORE,
            )
        removed = await service.purge(identifier)
        return JSONResponse({"purged": removed, "identifier": identifier}, headers=NO_STORE)

    async def stats(request: Request) -> Response:
        if off():
            raise HTTPException(status_code=404)
        if not authorised(request):
            return denied()
        own: dict[str, Any] = {**service.stats(), **(extra_stats() if extra_stats else {})}
        others = await run_io(workers.read) if workers is not None and run_io is not None else None
        per_worker = {str(os.getpid()): own} if others is None else {**others, str(os.getpid()): own}
        # This worker's figures at the top (as before), then every worker's, then their sum.
        return JSONResponse(
            {**own, "pid": os.getpid(), "workers": per_worker, "total": total(list(per_worker.values()))},
            headers=NO_STORE,
        )

    return [
        Route("/admin/cache/purge", purge, methods=["POST"]),
        Route("/admin/stats", stats, methods=["GET"]),
    ]
