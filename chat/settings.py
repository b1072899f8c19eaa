"""Configuration: one frozen dataclass read from the environment (PROTOCOL section 9.1).

The dataclass is the settings table: each field is declared once with `setting(...)` (its
variable, default, parser with its check, one-line doc and docs group). `Settings.from_env`
reads that table, and the README's table and docs/settings.md are generated from it
(`python -m chat.settings_docs --write`; a test fails when they are stale).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chat.settings_parse import (
    DATABASE,
    PATH,
    PHRASES,
    REDIS,
    TEXT,
    URL_ROOT,
    DatabaseConfig,
    Group,
    RedisConfig,
    Row,
    SettingsError,
    choice,
    integer,
    number,
    parse_database_url,
    parse_redis_url,
    read_table,
    setting,
    table_of,
)
from states.redis_keys import EVENTS_CHANNEL

__all__ = [
    "DEFAULT_DASHSCOPE_BASE_URL",
    "DEFAULT_HANDOFF_PHRASES",
    "DEFAULT_SYSTEM_PROMPT",
    "DatabaseConfig",
    "RedisConfig",
    "Settings",
    "SettingsError",
    "parse_database_url",
    "parse_redis_url",
    "settings_table",
]

DEFAULT_HANDOFF_PHRASES = (
    "转人工",
    "人工客服",
    "人工服务",
    "真人客服",
    "talk to a human",
    "speak to a human",
    "human agent",
    "real person",
    "live agent",
)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful customer-support assistant. Answer briefly and politely. "
    "If the customer asks for a human or you cannot help, call transfer_to_human."
)

DEFAULT_DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/api/v1"  # chat.ai.dashscope's default too

AI_PROVIDERS = ("dashscope", "openai", "echo")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_SERVICE, _STORAGE, _AI, _WS, _ROUTING = Group.SERVICE, Group.STORAGE, Group.AI, Group.WEBSOCKET, Group.ROUTING


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment; units in the names."""

    host: str = setting("HOST", "0.0.0.0", TEXT, "listen address (`serve --host` overrides it)", group=_SERVICE)
    port: int = setting("PORT", 8000, integer(0), "listen port (`serve --port` overrides it)", group=_SERVICE)
    data_dir: Path = setting(
        "CHAT_DATA_DIR", Path("data"), PATH, "where the embedded mode keeps its SQLite file and JWT secret",
        group=_SERVICE,
    )
    database: DatabaseConfig = setting(
        "DATABASE_URL", DatabaseConfig(kind="sqlite", path="data/chat.db"), DATABASE,
        "`mysql://`, `mysql+aiomysql://`, `mysql+asyncmy://` or `mariadb://user:pass@host[:port]/db` "
        "(percent-encode user and password), or `sqlite:///relative.db` / `sqlite:////absolute.db`",
        group=_STORAGE, shown_default="embedded SQLite file `$CHAT_DATA_DIR/chat.db`",
    )
    redis: RedisConfig | None = setting(  # None: embedded in-process Redis
        "REDIS_URL", None, REDIS, "`redis://[:pass@]host[:port][/db]`, `rediss://…` or `unix://…`",
        group=_STORAGE, shown_default="embedded in-process Redis (single instance only)",
    )
    jwt_secret_key: str = setting(
        "JWT_SECRET_KEY", "dev-secret-change-me-0123456789abcdef", TEXT, "HS256 secret of the tokens",
        group=_SERVICE, shown_default="embedded mode: a random one kept in `$CHAT_DATA_DIR/jwt-secret`",
        note="**required** when `DATABASE_URL` or `REDIS_URL` is set", secret=True,
    )
    embedded: bool = True  # not a variable: neither DATABASE_URL nor REDIS_URL is set
    log_level: str = setting("LOG_LEVEL", "INFO", choice(*LOG_LEVELS, upper=True), "log level", group=_SERVICE)

    ai_provider: str = setting(
        "AI_PROVIDER", "echo", choice(*AI_PROVIDERS), "the AI provider (`echo` is offline)", group=_AI,
        shown_default="`dashscope` when `DASHSCOPE_API_KEY` is set, else `echo`",
        note="`dashscope` requires `DASHSCOPE_API_KEY`; `openai` requires `AI_BASE_URL`",
    )
    ai_model: str = setting("AI_MODEL", "qwen-turbo", TEXT, "model name", group=_AI)
    dashscope_api_key: str = setting(
        "DASHSCOPE_API_KEY", "", TEXT, "DashScope key; setting it selects the DashScope provider", group=_AI,
        secret=True,
    )
    dashscope_base_url: str = setting(
        "DASHSCOPE_BASE_URL", DEFAULT_DASHSCOPE_BASE_URL, URL_ROOT, "DashScope API root", group=_AI
    )
    ai_base_url: str = setting(
        "AI_BASE_URL", "", URL_ROOT, "OpenAI-compatible root (the part before `/chat/completions`)", group=_AI
    )
    ai_api_key: str = setting(
        "AI_API_KEY", "", TEXT, "OpenAI-compatible key; when empty no `Authorization` header is sent", group=_AI,
        secret=True,
    )
    ai_connect_timeout_s: float = setting(
        "AI_CONNECT_TIMEOUT_S", 5.0, number(0.001), "connect timeout, including the wait for a pooled connection",
        group=_AI,
    )
    ai_chunk_timeout_s: float = setting(
        "AI_CHUNK_TIMEOUT_S", 30.0, number(0.001), "longest silence between reads (the first token too)", group=_AI
    )
    ai_max_retries: int = setting("AI_MAX_RETRIES", 3, integer(0), "retries before the first chunk", group=_AI)
    ai_retry_base_s: float = setting(
        "AI_RETRY_BASE_S", 0.5, number(0.0), "retry backoff base (full jitter, doubling)", group=_AI
    )
    ai_system_prompt: str = setting(
        "AI_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT, TEXT, "system prompt", group=_AI,
        shown_default="built-in (`DEFAULT_SYSTEM_PROMPT`)",
    )
    ai_context_messages: int = setting(
        "AI_CONTEXT_MESSAGES", 20, integer(1), "messages in the AI's context", group=_AI
    )
    ai_context_chars: int = setting("AI_CONTEXT_CHARS", 8000, integer(100), "characters in the AI's context", group=_AI)
    ai_failures_before_handoff: int = setting(
        "AI_FAILURES_BEFORE_HANDOFF", 1, integer(1), "consecutive failed AI turns before an `ai_failure` handoff",
        group=_AI,
    )
    handoff_phrases: tuple[str, ...] = setting(
        "HANDOFF_PHRASES", DEFAULT_HANDOFF_PHRASES, PHRASES, "phrases that hand a conversation to a human",
        group=_AI, blank_is_value=True,
    )

    ws_max_frame_bytes: int = setting("WS_MAX_FRAME_BYTES", 64 * 1024, integer(1024), "largest frame", group=_WS)
    ws_rate_limit_count: int = setting("WS_RATE_LIMIT_COUNT", 30, integer(1), "commands per window", group=_WS)
    ws_rate_limit_window_s: float = setting(
        "WS_RATE_LIMIT_WINDOW_S", 10.0, number(0.001), "rate limit window", group=_WS
    )
    ws_auth_timeout_s: float = setting("WS_AUTH_TIMEOUT_S", 10.0, number(0.001), "auth deadline", group=_WS)
    ws_send_queue_max: int = setting(
        "WS_SEND_QUEUE_MAX", 256, integer(1), "frames queued per socket before the 1013 close", group=_WS
    )
    ws_heartbeat_s: float = setting(
        "WS_HEARTBEAT_S", 30.0, number(1.0), "server ping interval; the pong deadline is half of it", group=_WS
    )

    routing: str = setting(
        "ROUTING", "auto", choice("auto", "manual"), "`auto` routes waiting conversations to agents; `manual`: "
        "agents claim them from the queue", group=_ROUTING,
    )
    agent_max_chats: int = setting("AGENT_MAX_CHATS", 5, integer(1), "an agent's default capacity", group=_ROUTING)
    presence_ttl_s: float = setting(
        "PRESENCE_TTL_S", 30.0, number(1.0), "presence lease; the heartbeat runs every TTL/3", group=_ROUTING
    )
    presence_grace_s: float = setting(
        "PRESENCE_GRACE_S", 60.0, number(0.0),
        "grace before a gone agent's conversations are requeued; the sweeper runs every grace/4", group=_ROUTING,
    )
    handoff_wait_timeout_s: float = setting(
        "HANDOFF_WAIT_TIMEOUT_S", 0.0, number(0.0), "handoff wait before going back to `ai`; 0: wait forever",
        group=_ROUTING,
    )
    db_pool_size: int = setting("DB_POOL_SIZE", 10, integer(1), "SQL connection pool size", group=_STORAGE)
    bus_channel: str = setting(
        "BUS_CHANNEL", EVENTS_CHANNEL, TEXT,
        "pub/sub channel of the cross-instance events; pub/sub is server-wide, so every instance of one "
        "deployment must share it (and no other deployment on that Redis)", group=_STORAGE,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raise SettingsError naming the first bad one."""
        values, given = read_table(settings_table(), os.environ if env is None else env)
        _join(values, given)
        return cls(**values)


def settings_table() -> list[Row]:
    """Every setting read from the environment, in declaration order."""
    return table_of(Settings)


def _join(values: dict[str, Any], given: set[str]) -> None:
    """The rules between settings: embedded mode and its defaults, and what each AI provider needs."""
    embedded = not given & {"database", "redis"}
    values["embedded"] = embedded
    if "database" not in given:
        values["database"] = DatabaseConfig(kind="sqlite", path=str(values["data_dir"] / "chat.db"))
    if "jwt_secret_key" not in given:
        if not embedded:
            raise SettingsError("JWT_SECRET_KEY", "required when DATABASE_URL or REDIS_URL is set")
        values["jwt_secret_key"] = _embedded_secret(values["data_dir"])
    if "ai_provider" not in given:
        values["ai_provider"] = "dashscope" if "dashscope_api_key" in given else "echo"
    if values["ai_provider"] == "dashscope" and "dashscope_api_key" not in given:
        raise SettingsError("DASHSCOPE_API_KEY", "required when AI_PROVIDER=dashscope")
    if values["ai_provider"] == "openai" and "ai_base_url" not in given:
        raise SettingsError("AI_BASE_URL", "required when AI_PROVIDER=openai")


def _embedded_secret(data_dir: Path) -> str:
    """A per-install random secret kept in the data directory, so dev tokens survive restarts."""
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
