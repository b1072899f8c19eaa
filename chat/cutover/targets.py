"""The Redis and SQL database a backup or a rollback works on: the options, else the service's variables."""

from __future__ import annotations

import os

import redis

from chat.cutover.backup_format import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, default_url
from chat.cutover.common import UsageError
from chat.settings import DatabaseConfig, SettingsError, parse_database_url, parse_redis_url


def redis_target(given: str | None) -> str:
    """--redis-url, else $REDIS_URL, else the guide's default."""
    return given or default_url(os.environ, "REDIS_URL", DEFAULT_REDIS_URL)


def check_redis_url(url: str, option: str) -> None:
    """UsageError unless both the service and redis-py accept ``url`` (nothing connects)."""
    try:
        parse_redis_url(url, option)
        redis.Redis.from_url(url).close()  # redis-py's own checks; connects lazily
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def database_target(given: str | None) -> tuple[str, DatabaseConfig]:
    """--database-url, else $DATABASE_URL, else the guide's default; UsageError if it does not parse."""
    url = given or default_url(os.environ, "DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        return url, parse_database_url(url, "--database-url")
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
