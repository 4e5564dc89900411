"""/healthz: 200 when the database and the object store answer, else 503."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise import connections

log = logging.getLogger("printvault.health")


async def healthz(request: Request) -> Response:
    checks = {"database": await _database_ok(), "storage": await _storage_ok(request)}
    ok = all(checks.values())
    return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)


async def _database_ok() -> bool:
    try:
        await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), 3)
    except Exception:  # any failure means "not healthy"; the reason goes to the log
        log.warning("health check: database unavailable", exc_info=True)
        return False
    return True


async def _storage_ok(request: Request) -> bool:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return False
    try:
        await asyncio.wait_for(services.store.ping(), 5)
    except Exception:  # any failure means "not healthy"; the reason goes to the log
        log.warning("health check: object store unavailable", exc_info=True)
        return False
    return True
