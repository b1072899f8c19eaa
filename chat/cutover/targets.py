"""The Redis and SQL database a backup or a rollback works on: the options, else the service's variables.

The variables are read as `chat-api serve` reads them (chat/envfile.py): the environment over the
`.env` file (`--env-file PATH`, else ./.env when it exists), so a program run beside the service
works on the service's stores. Each URL's source is said (masked), since a wrong guess here
restores or empties the wrong database.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from chat.cutover.backup_format import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, default_url, show_database
from chat.cutover.common import UsageError, mask_url
from chat.envfile import EnvFile, EnvFileError, load_env_file, merged
from chat.settings import DatabaseConfig, SettingsError, parse_database_url, parse_redis_url


@dataclass(frozen=True)
class Variables:
    """The service's variables a program falls back on, and where they came from."""

    env_file: EnvFile = field(default_factory=EnvFile)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def source(self, name: str, option: str, given: str | None) -> tuple[str, str]:
        """``(url, where it came from)``: ``option``, else ``$name``, else the .env file, else the default."""
        fallback = DEFAULT_REDIS_URL if name == "REDIS_URL" else DEFAULT_DATABASE_URL
        if given:
            return given, option
        url = default_url(merged(self.env_file, self.environ), name, fallback)
        if self.environ.get(name, "").strip():
            return url, f"${name}"
        if self.env_file.values.get(name, "").strip():
            return url, f"{name} in {self.env_file.path}"
        no_file = "no .env file" if self.env_file.path is None else f"not in {self.env_file.path}"
        return url, f"the built-in default: {name} not set, {no_file}"


def add_env_file_option(parser: argparse.ArgumentParser) -> None:
    """--env-file, as `chat-api serve` takes it."""
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help="read REDIS_URL and DATABASE_URL from this .env file when neither an option nor the "
        "environment gives them (default: ./.env when it exists, as chat-api serve reads it)",
    )


def read_variables(env_file: Path | None) -> Variables:
    """The environment over the .env file; UsageError when a named file cannot be read."""
    try:
        return Variables(load_env_file(env_file, os.environ), dict(os.environ))
    except EnvFileError as exc:
        raise UsageError(f"--env-file: {exc}") from None


def redis_target(given: str | None, variables: Variables) -> tuple[str, str]:
    """``(url, source line)``: --redis-url, else $REDIS_URL, else REDIS_URL in the .env, else the default."""
    url, source = variables.source("REDIS_URL", "--redis-url", given)
    return url, f"redis {mask_url(url)} (from {source})"


def check_redis_url(url: str, option: str) -> None:
    """UsageError unless both the service and redis-py accept ``url`` (nothing connects)."""
    try:
        parse_redis_url(url, option)
        redis.Redis.from_url(url).close()  # redis-py's own checks; connects lazily
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def database_target(given: str | None, variables: Variables) -> tuple[str, DatabaseConfig, str]:
    """``(url, config, source line)`` like redis_target's; UsageError if the URL does not parse."""
    url, source = variables.source("DATABASE_URL", "--database-url", given)
    try:
        config = parse_database_url(url, "--database-url")
    except SettingsError as exc:
        raise UsageError(f"{exc} (from {source})") from None
    return url, config, f"database {show_database(url, config)} (from {source})"
