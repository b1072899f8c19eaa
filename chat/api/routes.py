"""Every REST route of /api/v1 and the OpenAPI document."""

from aiohttp import web


def register(app: web.Application) -> None:
    """Add the REST routes."""
