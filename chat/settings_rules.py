"""The rules between settings (chat.settings reads each one alone, then joins them here): the embedded
mode and its defaults, the JWT secrets' length outside it, Redis Cluster's needs, and what each AI provider
needs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from chat.embedded_secret import embedded_secret
from chat.settings_parse import DatabaseConfig, RedisConfig, SettingsError

MIN_JWT_SECRET_BYTES = 32  # outside the embedded mode (PROTOCOL 7)

# What a command reads of an embedded instance's data: "data" its database (and secret), "secret" its JWT secret
# only (nothing when JWT_SECRET_KEY is given); None: nothing, or it makes them (`serve`, `db upgrade`); "refused":
# the command does not run in the embedded mode at all (`serve --workers N`).
InstanceData = Literal["data", "secret", "refused"] | None


class NoInstanceData(Exception):
    """In the embedded mode, CHAT_DATA_DIR holds no instance's database (chat.db) and the command would read an
    empty one there or sign with a new secret; raised before anything is made there."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(f"no embedded instance's data in {data_dir}")
        self.data_dir = data_dir


class EmbeddedRefused(Exception):
    """The settings are the embedded mode's, which the command does not run in (InstanceData "refused");
    raised before anything is made in CHAT_DATA_DIR."""


def join_settings(values: dict[str, Any], given: set[str], instance: InstanceData = None) -> None:
    """The rules between settings: embedded mode and its defaults, and what each AI provider needs;
    NoInstanceData when `instance` is needed and missing, EmbeddedRefused when it is refused (Settings.from_env)."""
    embedded = not given & {"database", "redis"}
    values["embedded"] = embedded
    if "database" not in given:
        values["database"] = DatabaseConfig(kind="sqlite", path=str(values["data_dir"] / "chat.db"))
    values["database"] = replace(values["database"], table_prefix=values["db_table_prefix"])
    _check_instance_data(values, given, instance)  # before embedded_secret() makes the directory and a secret
    if "jwt_secret_key" not in given:
        if not embedded:
            raise SettingsError("JWT_SECRET_KEY", "required when DATABASE_URL or REDIS_URL is set")
        values["jwt_secret_key"] = embedded_secret(values["data_dir"])
    elif not embedded and len(values["jwt_secret_key"].encode()) < MIN_JWT_SECRET_BYTES:
        raise SettingsError("JWT_SECRET_KEY", f"must be at least {MIN_JWT_SECRET_BYTES} bytes when DATABASE_URL or "
                                              f"REDIS_URL is set, got {len(values['jwt_secret_key'].encode())}")
    if not embedded:
        _check_previous_keys(values["jwt_previous_secret_keys"])
    if "anonymous_visitors" not in given:  # a demo convenience: on by default only on a developer's machine
        values["anonymous_visitors"] = embedded
    if "host" not in given and embedded:  # its banner prints an admin password and tokens: this machine only
        values["host"] = "127.0.0.1"
    if values["redis_cluster"]:
        check_cluster(values["redis"])
    if "ai_provider" not in given:
        values["ai_provider"] = "dashscope" if "dashscope_api_key" in given else "echo"
    if values["ai_provider"] == "dashscope" and "dashscope_api_key" not in given:
        raise SettingsError("DASHSCOPE_API_KEY", "required when AI_PROVIDER=dashscope")
    if values["ai_provider"] == "openai" and "ai_base_url" not in given:
        raise SettingsError("AI_BASE_URL", "required when AI_PROVIDER=openai")


def _check_instance_data(values: dict[str, Any], given: set[str], instance: InstanceData) -> None:
    """In the embedded mode, NoInstanceData when CHAT_DATA_DIR holds no instance's database and the command
    needs it, or its secret (`instance` "secret" without JWT_SECRET_KEY): the one check of every command but
    `serve` and `db upgrade` (chat/cli.py); EmbeddedRefused for a command that does not run in that mode."""
    if not values["embedded"] or instance is None:
        return
    if instance == "refused":
        raise EmbeddedRefused
    if Path(values["database"].path).exists():
        return
    if instance == "data" or "jwt_secret_key" not in given:
        raise NoInstanceData(values["data_dir"])


def check_cluster(redis: RedisConfig | None) -> None:
    """REDIS_CLUSTER=true needs a node to start from, over TCP, and database 0 (a cluster has no other)."""
    if redis is None:
        raise SettingsError("REDIS_CLUSTER", "needs REDIS_URL: a node of the cluster, e.g. redis://10.0.0.5:6379")
    if redis.scheme == "unix":
        raise SettingsError("REDIS_URL", "a Redis Cluster is reached over TCP: use redis:// or rediss://")
    if redis.db != 0:
        raise SettingsError("REDIS_URL", f"a Redis Cluster has only database 0, got {redis.db}")


def _check_previous_keys(keys: tuple[str, ...]) -> None:
    """A short previous key would make tokens as easy to forge as a short current one."""
    for key in keys:
        if len(key.encode()) < MIN_JWT_SECRET_BYTES:
            raise SettingsError("JWT_PREVIOUS_SECRET_KEYS", f"each key must be at least {MIN_JWT_SECRET_BYTES} bytes "
                                                            f"when DATABASE_URL or REDIS_URL is set, got one of "
                                                            f"{len(key.encode())}")
