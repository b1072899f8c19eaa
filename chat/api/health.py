"""GET /health (real dependency checks) and GET /metrics (Prometheus text)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat import keys

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0


async def _check(name: str, probe: Callable[[], Awaitable[Any]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure of a dependency is a degraded check, never a 500
        log.warning("health check %s failed: %s", name, type(exc).__name__)
        return "fail"
    return "ok"


async def handle_health(request: web.Request) -> web.Response:
    """200 when Redis, the database and the AI provider are fine, else 503 naming the failing check."""
    app = request.app
    checks = {
        "redis": await _check("redis", app[keys.REDIS].ping),
        "database": await _check("database", app[keys.STORE].db.ping),
    }
    # the AI check is listed only when it fails (e.g. InvalidApiKey), so a healthy body is exactly
    # {"status": "ok", "checks": {"redis": "ok", "database": "ok"}}
    ai_health = getattr(app.get(keys.AI_PROVIDER), "health", None) or {}
    if ai_health.get("status", "ok") != "ok":
        checks["ai"] = ai_health.get("code") or "fail"
    ok = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ok else "degraded", "checks": checks}
    return web.json_response(body, status=200 if ok else 503)


async def handle_metrics(request: web.Request) -> web.Response:
    """Every metric of the process in the Prometheus text format (the desk's gauges read first)."""
    desk = request.app.get(keys.DESK)
    if desk is not None:
        await desk.refresh()
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def register(app: web.Application) -> None:
    """Add the routes of this module."""
    app.router.add_get("/health", handle_health)
    app.router.add_get("/metrics", handle_metrics)
