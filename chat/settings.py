"""Configuration: one frozen dataclass read from the environment (PROTOCOL section 7)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import SplitResult, unquote, urlsplit

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


class SettingsError(Exception):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the SQL store lives: MySQL/MariaDB over the network or an SQLite file."""

    kind: str  # "mysql" or "sqlite"
    host: str = ""
    port: int = 3306
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    path: str = ""

    def describe(self) -> str:
        """A log-safe description (never the password)."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class RedisConfig:
    """A Redis server, or None in Settings for the embedded in-process one."""

    url: str = field(repr=False)
    host: str = "localhost"
    port: int = 6379
    db: int = 0

    def describe(self) -> str:
        """A log-safe description (never the password)."""
        return f"redis://{self.host}:{self.port}/{self.db}"


MYSQL_SCHEMES = ("mysql", "mysql+aiomysql", "mysql+asyncmy", "mariadb")


def parse_database_url(url: str, variable: str = "DATABASE_URL") -> DatabaseConfig:
    """Parse mysql://, mysql+aiomysql://, mysql+asyncmy:// or sqlite:///path."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SettingsError(variable, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db
        rest = url.strip()[len("sqlite:"):]
        if not rest.startswith("///"):
            raise SettingsError(variable, "sqlite URL must look like sqlite:///path/to/chat.db")
        path = unquote(rest[3:])
        if not path:
            raise SettingsError(variable, "sqlite URL needs a path, e.g. sqlite:///data/chat.db")
        return DatabaseConfig(kind="sqlite", path=path)
    if scheme not in MYSQL_SCHEMES:
        raise SettingsError(
            variable,
            f"unsupported scheme {parts.scheme!r}; use mysql://, mysql+aiomysql://, "
            "mysql+asyncmy:// or sqlite:///path",
        )
    database = parts.path.lstrip("/")
    if not parts.hostname:
        raise SettingsError(variable, "missing host, e.g. mysql://user:pass@host:3306/db")
    if not database or "/" in database:
        raise SettingsError(variable, "missing database name, e.g. mysql://user:pass@host:3306/db")
    return DatabaseConfig(
        kind="mysql",
        host=parts.hostname,
        port=port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=unquote(database),
    )


def parse_redis_url(url: str, variable: str = "REDIS_URL") -> RedisConfig:
    """Check a redis:// (or rediss://, unix://) URL and keep it for redis-py."""
    try:
        parts: SplitResult = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SettingsError(variable, f"not a valid URL ({exc})") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(variable, f"unsupported scheme {parts.scheme!r}; use redis://[:pass@]host:port/db")
    db = 0
    path = parts.path.lstrip("/")
    if parts.scheme != "unix" and path:
        if not path.isdigit():
            raise SettingsError(variable, f"database must be a number, got {path!r}")
        db = int(path)
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError(variable, "missing host, e.g. redis://localhost:6379/0")
    return RedisConfig(url=url.strip(), host=parts.hostname or "", port=port or 6379, db=db)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(name, f"must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(name, f"must be >= {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


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


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment; units in the names."""

    host: str = "0.0.0.0"
    port: int = 8000
    data_dir: Path = Path("data")
    database: DatabaseConfig = DatabaseConfig(kind="sqlite", path="data/chat.db")
    redis: RedisConfig | None = None  # None: embedded in-process Redis
    jwt_secret_key: str = field(default="dev-secret-change-me-0123456789abcdef", repr=False)
    embedded: bool = True
    log_level: str = "INFO"

    ai_provider: str = "echo"
    ai_model: str = "qwen-turbo"
    dashscope_api_key: str = field(default="", repr=False)
    dashscope_base_url: str = "https://dashscope.aliyuncs.com/api/v1"
    ai_base_url: str = ""
    ai_api_key: str = field(default="", repr=False)
    ai_connect_timeout_s: float = 5.0
    ai_chunk_timeout_s: float = 30.0
    ai_max_retries: int = 3
    ai_retry_base_s: float = 0.5
    ai_system_prompt: str = DEFAULT_SYSTEM_PROMPT
    ai_context_messages: int = 20
    ai_context_chars: int = 8000
    ai_failures_before_handoff: int = 1
    handoff_phrases: tuple[str, ...] = DEFAULT_HANDOFF_PHRASES

    ws_max_frame_bytes: int = 64 * 1024
    ws_rate_limit_count: int = 30
    ws_rate_limit_window_s: float = 10.0
    ws_auth_timeout_s: float = 10.0
    ws_send_queue_max: int = 256
    ws_heartbeat_s: float = 30.0

    routing: str = "auto"
    agent_max_chats: int = 5
    presence_ttl_s: float = 30.0
    presence_grace_s: float = 60.0
    handoff_wait_timeout_s: float = 0.0  # 0: keep waiting
    db_pool_size: int = 10
    bus_channel: str = "chat:events"  # pub/sub is server-wide: instances of one deployment share it

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read and check every variable; raise SettingsError naming the first bad one."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("CHAT_DATA_DIR") or "data")
        database_url = (env.get("DATABASE_URL") or "").strip()
        redis_url = (env.get("REDIS_URL") or "").strip()
        embedded = not database_url and not redis_url
        database = (
            parse_database_url(database_url)
            if database_url
            else DatabaseConfig(kind="sqlite", path=str(data_dir / "chat.db"))
        )
        redis = parse_redis_url(redis_url) if redis_url else None

        secret = env.get("JWT_SECRET_KEY") or ""
        if not secret:
            if not embedded:
                raise SettingsError("JWT_SECRET_KEY", "required when DATABASE_URL or REDIS_URL is set")
            secret = _embedded_secret(data_dir)

        dashscope_key = env.get("DASHSCOPE_API_KEY") or ""
        provider = _choice(
            env, "AI_PROVIDER", "dashscope" if dashscope_key else "echo", ("dashscope", "openai", "echo")
        )
        if provider == "dashscope" and not dashscope_key:
            raise SettingsError("DASHSCOPE_API_KEY", "required when AI_PROVIDER=dashscope")
        if provider == "openai" and not env.get("AI_BASE_URL"):
            raise SettingsError("AI_BASE_URL", "required when AI_PROVIDER=openai")

        phrases_raw = env.get("HANDOFF_PHRASES")
        phrases = (
            tuple(p.strip() for p in phrases_raw.split("|") if p.strip())
            if phrases_raw is not None
            else DEFAULT_HANDOFF_PHRASES
        )

        return cls(
            host=env.get("HOST") or "0.0.0.0",
            port=_int(env, "PORT", 8000, minimum=0),
            data_dir=data_dir,
            database=database,
            redis=redis,
            jwt_secret_key=secret,
            embedded=embedded,
            log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper(),
            ai_provider=provider,
            ai_model=env.get("AI_MODEL") or "qwen-turbo",
            dashscope_api_key=dashscope_key,
            dashscope_base_url=(env.get("DASHSCOPE_BASE_URL") or "https://dashscope.aliyuncs.com/api/v1").rstrip("/"),
            ai_base_url=(env.get("AI_BASE_URL") or "").rstrip("/"),
            ai_api_key=env.get("AI_API_KEY") or "",
            ai_connect_timeout_s=_float(env, "AI_CONNECT_TIMEOUT_S", 5.0, minimum=0.001),
            ai_chunk_timeout_s=_float(env, "AI_CHUNK_TIMEOUT_S", 30.0, minimum=0.001),
            ai_max_retries=_int(env, "AI_MAX_RETRIES", 3),
            ai_retry_base_s=_float(env, "AI_RETRY_BASE_S", 0.5),
            ai_system_prompt=env.get("AI_SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT,
            ai_context_messages=_int(env, "AI_CONTEXT_MESSAGES", 20, minimum=1),
            ai_context_chars=_int(env, "AI_CONTEXT_CHARS", 8000, minimum=100),
            ai_failures_before_handoff=_int(env, "AI_FAILURES_BEFORE_HANDOFF", 1, minimum=1),
            handoff_phrases=phrases,
            ws_max_frame_bytes=_int(env, "WS_MAX_FRAME_BYTES", 64 * 1024, minimum=1024),
            ws_rate_limit_count=_int(env, "WS_RATE_LIMIT_COUNT", 30, minimum=1),
            ws_rate_limit_window_s=_float(env, "WS_RATE_LIMIT_WINDOW_S", 10.0, minimum=0.001),
            ws_auth_timeout_s=_float(env, "WS_AUTH_TIMEOUT_S", 10.0, minimum=0.001),
            ws_send_queue_max=_int(env, "WS_SEND_QUEUE_MAX", 256, minimum=1),
            ws_heartbeat_s=_float(env, "WS_HEARTBEAT_S", 30.0, minimum=1.0),
            routing=_choice(env, "ROUTING", "auto", ("auto", "manual")),
            agent_max_chats=_int(env, "AGENT_MAX_CHATS", 5, minimum=1),
            presence_ttl_s=_float(env, "PRESENCE_TTL_S", 30.0, minimum=1.0),
            presence_grace_s=_float(env, "PRESENCE_GRACE_S", 60.0),
            handoff_wait_timeout_s=_float(env, "HANDOFF_WAIT_TIMEOUT_S", 0.0),
            db_pool_size=_int(env, "DB_POOL_SIZE", 10, minimum=1),
            bus_channel=env.get("BUS_CHANNEL") or "chat:events",
        )
