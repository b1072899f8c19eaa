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
from dataclasses import replace
from pathlib import Path

import redis

from chat.cutover.backup_format import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, show_database
from chat.cutover.backup_sql import TABLE_PREFIX_VARIABLE
from chat.cutover.common import UsageError, mask_url
from chat.envfile import DEFAULT_NAME, EnvFile, EnvFileError, load_env_file, merged
from chat.settings import DatabaseConfig, SettingsError, parse_database_url, parse_redis_url
from chat.settings_parse import TABLE_PREFIX


class Variables:
    """The service's variables a program falls back on, and where they came from.

    The .env file is read only when a value is asked for that neither an option nor the environment
    gives (an unreadable ./.env does not stop a run that needs nothing from it). As in the service
    (chat/envfile.py merged(), then chat/settings), a variable in the environment hides the file's,
    and a blank value means unset: the default.
    """

    def __init__(self, explicit: Path | None, environ: Mapping[str, str], cwd: Path | None = None) -> None:
        self.explicit = explicit
        self.environ = dict(environ)
        self.cwd = cwd or Path.cwd()
        self._env_file: EnvFile | None = None

    @property
    def env_file(self) -> EnvFile:
        """The .env file, read on first use; UsageError naming it when it cannot be read."""
        if self._env_file is None:
            try:
                self._env_file = load_env_file(self.explicit, self.environ, self.cwd)
            except EnvFileError as exc:
                named = "--env-file: " if self.explicit is not None else ""
                raise UsageError(f"{named}{exc}") from None
        return self._env_file

    def file_path(self) -> Path | None:
        """The .env file the service would read (whether or not it was read here)."""
        if self.explicit is not None:
            return self.explicit.resolve()
        path = self.cwd / DEFAULT_NAME
        return path.resolve() if path.is_file() else None

    @property
    def was_read(self) -> bool:
        """Whether a value was asked of the .env file (so it was read)."""
        return self._env_file is not None

    def describe(self) -> str:
        """The first source line: the file read, or why none was."""
        if self._env_file is not None:
            return self._env_file.describe()
        path = self.file_path()
        return "no .env file read" if path is None else f"{path} not read (nothing needed from it)"

    def value(self, name: str) -> tuple[str, str]:
        """``(value stripped, where it came from)``; blank: unset, the source says why."""
        if name in self.environ:
            if self.environ[name].strip():
                return self.environ[name].strip(), f"${name}"
            hidden = self.file_path()
            return "", f"${name} set empty{f' (it hides {hidden})' if hidden else ''}"
        text = merged(self.env_file, self.environ).get(name, "").strip()
        if text:
            return text, f"{name} in {self.env_file.path}"
        if self.env_file.path is None:
            return "", f"{name} not set, no .env file"
        empty = "set empty" if name in self.env_file.values else "not"
        return "", f"{name} {empty} in {self.env_file.path}"

    def source(self, name: str, option: str, given: str | None) -> tuple[str, str]:
        """``(url, where it came from)``: ``option``, else ``$name``, else the .env file, else the default."""
        if given:
            return given, option
        url, source = self.value(name)
        if url:
            return url, source
        return DEFAULT_REDIS_URL if name == "REDIS_URL" else DEFAULT_DATABASE_URL, f"the built-in default: {source}"

    def table_prefix(self) -> tuple[str, str]:
        """``(DB_TABLE_PREFIX, where it came from)`` as the service reads it; UsageError if it is not valid."""
        prefix, source = self.value(TABLE_PREFIX_VARIABLE)
        if not prefix:
            return "", f"no prefix: {source}"
        try:
            return TABLE_PREFIX.read(TABLE_PREFIX_VARIABLE, prefix), source
        except SettingsError as exc:
            raise UsageError(f"{exc} (from {source})") from None


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
    """The environment over the .env file: one named by --env-file is read now (UsageError if it cannot
    be), ./.env only when a value is needed from it."""
    variables = Variables(env_file, os.environ)
    if env_file is not None:
        variables.env_file  # noqa: B018  # read now: a file named on the command line must be readable
    return variables


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


def database_target(
    given: str | None, variables: Variables, *, with_prefix: bool = True
) -> tuple[str, DatabaseConfig, str]:
    """``(url, config, source line)`` like redis_target's, the config with the service's DB_TABLE_PREFIX
    (``with_prefix=False``: left "", the caller takes it from its backup); UsageError on a bad value."""
    url, source = variables.source("DATABASE_URL", "--database-url", given)
    try:
        config = parse_database_url(url, "--database-url")
    except SettingsError as exc:
        raise UsageError(f"{exc} (from {source})") from None
    line = f"database {show_database(url, config)} (from {source})"
    if with_prefix:
        prefix, prefix_source = variables.table_prefix()
        config = replace(config, table_prefix=prefix)
        line += f", tables {prefix or '(no prefix)'}* ({prefix_source})" if prefix else f", tables: {prefix_source}"
    return url, config, line
