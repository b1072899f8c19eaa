"""Configuration: one frozen dataclass read from the environment (PROTOCOL section 7).

The dataclass is the settings table: each field is declared once with `setting(...)` (its
variable, default, parser with its check, one-line doc and docs group). `Settings.from_env`
reads that table, and the README's table and docs/settings.md are generated from it
(`python -m chat.settings_docs --write`; a test fails when they are stale).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from chat.client_address import TRUSTED, Networks
from chat.settings_hours import HOLIDAY_DATES, HOURS, ZONE
from chat.settings_parse import (
    CHANNEL_PREFIX,
    DATABASE,
    ORIGINS,
    PATH,
    PHRASES,
    PORT_NUMBER,
    REDIS,
    SECRET_LIST,
    SWITCH,
    TABLE_PREFIX,
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
from chat.settings_rules import EmbeddedRefused, InstanceData, NoInstanceData, join_settings
from states.business_hours import WeeklyHours
from states.redis_keys import EVENTS_CHANNEL

__all__ = [
    "DEFAULT_DASHSCOPE_BASE_URL",
    "DEFAULT_HANDOFF_PHRASES",
    "DEFAULT_SYSTEM_PROMPT",
    "DatabaseConfig",
    "EmbeddedRefused",
    "InstanceData",
    "NoInstanceData",
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
_ACCOUNTS, _TIMERS, _INTEGRATIONS = Group.ACCOUNTS, Group.TIMERS, Group.INTEGRATIONS


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment; units in the names."""

    host: str = setting(_SERVICE, "HOST", "0.0.0.0", TEXT, "listen address (`serve --host` overrides it)",
                        shown_default="`0.0.0.0`; `127.0.0.1` in the embedded mode (its banner shows passwords)")
    port: int = setting(_SERVICE, "PORT", 8000, PORT_NUMBER, "listen port (`serve --port` overrides it)")
    data_dir: Path = setting(
        _SERVICE, "CHAT_DATA_DIR", Path("data"), PATH, "where the embedded mode keeps its SQLite file and JWT secret"
    )
    database: DatabaseConfig = setting(
        _STORAGE, "DATABASE_URL", DatabaseConfig(kind="sqlite", path="data/chat.db"), DATABASE,
        "`mysql://`, `mysql+aiomysql://`, `mysql+asyncmy://` or `mariadb://user:pass@host[:port]/db` "
        "(percent-encode user and password; the asyncmy driver, or aiomysql with `mysql+aiomysql://`), or "
        "`sqlite:///relative.db` / `sqlite:////absolute.db`; TLS: "
        "`?ssl=true`, `ssl_ca=PEM`, `ssl_cert=PEM`, `ssl_key=PEM`, `ssl_verify=full|ca|none`",
        shown_default="embedded SQLite file `$CHAT_DATA_DIR/chat.db`",
    )
    redis: RedisConfig | None = setting(  # None: embedded in-process Redis
        _STORAGE, "REDIS_URL", None, REDIS,
        "`redis://[:pass@]host[:port][/db]`, `rediss://…` (TLS; `?ssl_ca_certs=PEM` names the CA) or `unix://…`",
        shown_default="embedded in-process Redis (single instance only)",
    )
    redis_cluster: bool = setting(
        _STORAGE, "REDIS_CLUSTER", False, SWITCH,
        "`true`: `REDIS_URL` names one node of a Redis Cluster (the client learns the others and the slots "
        "from it); the keys each script or transaction uses share a hash tag (docs/architecture.md)",
        shown_default="`false`: one server", note="needs `REDIS_URL` with `redis://` or `rediss://` and database 0",
    )
    jwt_secret_key: str = setting(
        _SERVICE, "JWT_SECRET_KEY", "dev-secret-change-me-0123456789abcdef", TEXT, "HS256 secret of the tokens",
        shown_default="embedded mode: a random one kept in `$CHAT_DATA_DIR/jwt-secret`",
        note="**required**, at least 32 bytes, when `DATABASE_URL` or `REDIS_URL` is set", secret=True,
    )
    jwt_previous_secret_keys: tuple[str, ...] = setting(
        _SERVICE, "JWT_PREVIOUS_SECRET_KEYS", (), SECRET_LIST,
        "secrets that signed tokens before the current `JWT_SECRET_KEY`: still accepted for verification, "
        "never used to sign, so the secret can be rotated without logging anyone out (docs/protocol.md "
        "section 2.3)",
        shown_default="none", note="each at least 32 bytes when `DATABASE_URL` or `REDIS_URL` is set", secret=True,
    )
    active_check_s: float = setting(
        _SERVICE, "ACTIVE_CHECK_S", 2.0, number(0.1),
        "how stale the REST check that a token's account is still active, with the token's role, may be, and how "
        "often each instance looks for accounts deactivated (sockets closed with 4403), given another role or a new "
        "password (4401) among its open staff sockets (closed at once through the bus, by that look should it be lost)",
    )
    embedded: bool = True  # not a variable: neither DATABASE_URL nor REDIS_URL is set
    log_level: str = setting(_SERVICE, "LOG_LEVEL", "INFO", choice(*LOG_LEVELS, upper=True), "log level")
    log_format: str = setting(
        _SERVICE, "LOG_FORMAT", "auto", choice("auto", "text", "json"),
        "log lines: `text`, or `json` (one object per line with `instance`, `request_id`, `user_id`, "
        "`conversation_id` where they apply); tokens and secrets are masked in both",
        shown_default="`auto`: `text` when stderr is a terminal, else `json`",
    )
    cors_origins: tuple[str, ...] = setting(
        _SERVICE, "CORS_ORIGINS", (), ORIGINS,
        "web origins allowed to call the service from a browser (CORS: the REST API, `/widget.js`, every route but "
        "the WebSocket upgrade); without credentials (cookies): the console is served from the service's own origin",
        shown_default="none: no cross-origin access",
    )
    anonymous_visitors: bool = setting(
        _SERVICE, "ANONYMOUS_VISITORS", False, SWITCH,
        "`POST /api/v1/visitors` (no token) gives anyone a customer token for a new visitor id, so the widget can "
        "be tried with no website backend; off, it answers 404",
        shown_default="`true` in the embedded mode, else `false`",
    )
    visitor_token_ttl_s: int = setting(
        _SERVICE, "VISITOR_TOKEN_TTL_S", 24 * 3600, integer(60), "lifetime of a visitor's token (seconds)",
    )
    visitors_per_address: int = setting(
        _SERVICE, "VISITORS_PER_ADDRESS", 20, integer(1),
        "visitor tokens one client address may get within `VISITOR_WINDOW_S`, across instances (over it: 429 "
        "with `Retry-After`); the client address is the TCP peer's, or behind `TRUSTED_PROXIES` the one they forwarded",
    )
    visitor_window_s: int = setting(
        _SERVICE, "VISITOR_WINDOW_S", 600, integer(1), "the sliding window of `VISITORS_PER_ADDRESS` (seconds)",
    )
    trusted_proxies: Networks = setting(
        _SERVICE, "TRUSTED_PROXIES", (), TRUSTED,
        "the reverse proxies or load balancers in front of the service: for a request from one of them the "
        "client address (failed logins and visitor tokens are counted by it, the access log shows it) is the "
        "right-most `X-Forwarded-For` entry that is no trusted proxy, and `X-Forwarded-Proto: https` makes the "
        "refresh cookie `Secure`; any other peer is the client itself",
        shown_default="none: the TCP peer is the client",
    )
    conversations_per_user_per_min: int = setting(
        _SERVICE, "CONVERSATIONS_PER_USER_PER_MIN", 10, integer(1),
        "conversations one user may start per minute, WebSocket and REST together, across instances "
        "(over it: `rate_limited`, REST 429)",
    )

    access_token_ttl_s: int = setting(
        _ACCOUNTS, "ACCESS_TOKEN_TTL_S", 900, integer(1),
        "lifetime of the access tokens `POST /api/v1/auth/login` and `/refresh` issue (seconds); a deactivation or a "
        "new password ends the account's earlier ones sooner",
    )
    refresh_token_ttl_s: int = setting(
        _ACCOUNTS, "REFRESH_TOKEN_TTL_S", 14 * 24 * 3600, integer(60),
        "lifetime of a refresh token (seconds); each is good once, its successor gets a full lifetime again",
    )
    login_failures_per_account: int = setting(
        _ACCOUNTS, "LOGIN_FAILURES_PER_ACCOUNT", 10, integer(1),
        "failed logins one user id may have within `LOGIN_FAILURE_WINDOW_S`, across instances; the next "
        "attempt gets 429 with `Retry-After`",
    )
    login_failures_per_address: int = setting(
        _ACCOUNTS, "LOGIN_FAILURES_PER_ADDRESS", 50, integer(1),
        "failed logins one client address (`TRUSTED_PROXIES`) may have within `LOGIN_FAILURE_WINDOW_S`, across "
        "instances and user ids; the next attempt gets 429 with `Retry-After`",
    )
    login_failure_window_s: int = setting(
        _ACCOUNTS, "LOGIN_FAILURE_WINDOW_S", 900, integer(1), "the sliding window of the failed-login limits",
    )

    ai_provider: str = setting(
        _AI, "AI_PROVIDER", "echo", choice(*AI_PROVIDERS), "the AI provider (`echo` is offline)",
        shown_default="`dashscope` when `DASHSCOPE_API_KEY` is set; else `echo` in the embedded mode, and none outside "
                      "it (`serve` exits 2 until one is configured)",
        note="`dashscope` requires `DASHSCOPE_API_KEY`; `openai` requires `AI_BASE_URL`",
    )
    ai_model: str = setting(_AI, "AI_MODEL", "qwen-turbo", TEXT, "model name")
    dashscope_api_key: str = setting(
        _AI, "DASHSCOPE_API_KEY", "", TEXT, "DashScope key; setting it selects the DashScope provider", secret=True
    )
    dashscope_base_url: str = setting(
        _AI, "DASHSCOPE_BASE_URL", DEFAULT_DASHSCOPE_BASE_URL, URL_ROOT, "DashScope API root"
    )
    ai_base_url: str = setting(
        _AI, "AI_BASE_URL", "", URL_ROOT, "OpenAI-compatible root (the part before `/chat/completions`)"
    )
    ai_api_key: str = setting(
        _AI, "AI_API_KEY", "", TEXT, "OpenAI-compatible key; when empty no `Authorization` header is sent", secret=True
    )
    ai_connect_timeout_s: float = setting(
        _AI, "AI_CONNECT_TIMEOUT_S", 5.0, number(0.001), "connect timeout, including the wait for a pooled connection"
    )
    ai_chunk_timeout_s: float = setting(
        _AI, "AI_CHUNK_TIMEOUT_S", 30.0, number(0.001),
        "longest wait for the reply's next event, the first too (SSE keep-alive comments do not count)",
    )
    ai_max_retries: int = setting(_AI, "AI_MAX_RETRIES", 3, integer(0), "retries before the first chunk")
    ai_retry_base_s: float = setting(
        _AI, "AI_RETRY_BASE_S", 0.5, number(0.0), "retry backoff base (full jitter, doubling)"
    )
    ai_system_prompt: str = setting(
        _AI, "AI_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT, TEXT, "system prompt",
        shown_default="built-in (`DEFAULT_SYSTEM_PROMPT`)",
    )
    ai_context_messages: int = setting(_AI, "AI_CONTEXT_MESSAGES", 20, integer(1), "messages in the AI's context")
    ai_context_chars: int = setting(_AI, "AI_CONTEXT_CHARS", 8000, integer(100), "characters in the AI's context")
    ai_failures_before_handoff: int = setting(
        _AI, "AI_FAILURES_BEFORE_HANDOFF", 1, integer(1), "consecutive failed AI turns before an `ai_failure` handoff"
    )
    ai_turn_lock_s: float = setting(
        _AI, "AI_TURN_LOCK_S", 15.0, number(1.0),
        "TTL of an AI turn's lock, renewed every third of it while the turn runs: a crashed instance's lock "
        "runs out this soon",
    )
    ai_sweep_interval_s: float = setting(
        _AI, "AI_SWEEP_INTERVAL_S", 10.0, number(0.0),
        "how often every instance answers the customer messages in `ai` that a crash or a shutdown left "
        "unanswered (also once at start); 0: never",
    )
    handoff_phrases: tuple[str, ...] = setting(
        _AI, "HANDOFF_PHRASES", DEFAULT_HANDOFF_PHRASES, PHRASES, "phrases that hand a conversation to a human",
        blank_is_value=True,
    )

    ws_max_frame_bytes: int = setting(_WS, "WS_MAX_FRAME_BYTES", 64 * 1024, integer(1024), "largest frame")
    ws_rate_limit_count: int = setting(_WS, "WS_RATE_LIMIT_COUNT", 30, integer(1), "commands per window")
    ws_rate_limit_window_s: float = setting(_WS, "WS_RATE_LIMIT_WINDOW_S", 10.0, number(0.001), "rate limit window")
    ws_auth_timeout_s: float = setting(_WS, "WS_AUTH_TIMEOUT_S", 10.0, number(0.001), "auth deadline")
    ws_send_queue_max: int = setting(
        _WS, "WS_SEND_QUEUE_MAX", 256, integer(1), "frames queued per socket before the 1013 close"
    )
    ws_heartbeat_s: float = setting(
        _WS, "WS_HEARTBEAT_S", 30.0, number(1.0), "server ping interval; the pong deadline is half of it"
    )
    ws_max_sockets_per_user: int = setting(
        _WS, "WS_MAX_SOCKETS_PER_USER", 10, integer(1),
        "sockets one user may hold open on one instance; the next is closed with 4429 after authentication",
    )

    csat_enabled: bool = setting(
        _ROUTING, "CSAT_ENABLED", True, SWITCH,
        "after every close the customer gets `csat.requested` and may rate that close once (`csat.submit`); "
        "`false`: no request, and `csat.submit` is `forbidden`",
        shown_default="`true`",
    )
    routing: str = setting(
        _ROUTING, "ROUTING", "auto", choice("auto", "manual"),
        "`auto`: waiting conversations go to agents; `manual`: agents claim them from the queue",
    )
    agent_max_chats: int = setting(_ROUTING, "AGENT_MAX_CHATS", 5, integer(1), "an agent's default capacity")
    presence_ttl_s: float = setting(
        _ROUTING, "PRESENCE_TTL_S", 30.0, number(1.0), "presence lease; the heartbeat runs every TTL/3"
    )
    presence_grace_s: float = setting(
        _ROUTING, "PRESENCE_GRACE_S", 60.0, number(0.0),
        "grace before a gone agent's conversations are requeued; the sweeper runs every grace/4",
    )
    handoff_wait_timeout_s: float = setting(_TIMERS, "HANDOFF_WAIT_TIMEOUT_S", 0.0, number(0.0), "business time in "
                                            "`handoff` before `release` reason `no_agent`; 0: wait forever")
    ai_idle_nudge_s: float = setting(_TIMERS, "AI_IDLE_NUDGE_S", 600.0, number(0.0), "customer silence in `ai` "
                                     "before a system message asks if anything else is needed; 0: never")
    ai_idle_close_s: float = setting(_TIMERS, "AI_IDLE_CLOSE_S", 1800.0, number(0.0), "customer silence in `ai` "
                                     "before the conversation is closed (reason `inactivity`); 0: never")
    sla_first_response_s: float = setting(_TIMERS, "SLA_FIRST_RESPONSE_S", 120.0, number(0.0), "business time for "
                                          "the assignee's first reply, else a `sla_breached` entry; 0: no SLA")
    human_idle_close_s: float = setting(_TIMERS, "HUMAN_IDLE_CLOSE_S", 3600.0, number(0.0), "customer silence in "
                                        "`human` before the conversation is closed (reason `inactivity`); 0: never")
    business_hours: WeeklyHours | None = setting(_TIMERS, "BUSINESS_HOURS", None, HOURS, "when agents are expected, "
                                                 "e.g. `Mon-Fri 09:00-18:00; Sat 10:00-16:00` (in `BUSINESS_TZ`)",
                                                 shown_default="unset: always open")
    business_tz: str = setting(_TIMERS, "BUSINESS_TZ", "Asia/Shanghai", ZONE, "the time zone of `BUSINESS_HOURS`")
    holidays: tuple[date, ...] = setting(_TIMERS, "HOLIDAYS", (), HOLIDAY_DATES, "dates closed all day (in "
                                         "`BUSINESS_TZ`), e.g. `2026-10-01,2026-10-02`", shown_default="none")
    db_pool_size: int = setting(_STORAGE, "DB_POOL_SIZE", 10, integer(1), "SQL connection pool size")
    db_table_prefix: str = setting(
        _STORAGE, "DB_TABLE_PREFIX", "", TABLE_PREFIX,
        "put before every table name of the service (`chat_` -> `chat_conversations`...), so its tables "
        "live beside another system's tables of the same names (docs/cutover.md)",
    )
    db_connect_timeout_s: float = setting(
        _STORAGE, "DB_CONNECT_TIMEOUT_S", 30.0, number(0.0),
        "how long `serve` waits for an unreachable database at start (one line per failed attempt, saying why), "
        "then exits 2; at once on a refusal waiting will not change (access denied, an unknown database)",
    )
    session_ttl_s: int = setting(
        _STORAGE, "SESSION_TTL_S", 7 * 24 * 3600, integer(0),
        "how long the Redis live record of a closed conversation is kept (it is rebuilt from SQL when "
        "needed); a reopened conversation's record has no TTL again; 0: kept forever",
    )
    bus_channel: str = setting(
        _STORAGE, "BUS_CHANNEL", EVENTS_CHANNEL, CHANNEL_PREFIX,
        "prefix of the cross-instance bus's sharded pub/sub channels (one per conversation, per user, the "
        "agents' and presence); pub/sub is server-wide, so every instance of one deployment must share it "
        "(and no other deployment on that Redis)",
    )
    webhook_retry_base_s: float = setting(_INTEGRATIONS, "WEBHOOK_RETRY_BASE_S", 5.0, number(0.001), (
        "first retry of a failed webhook delivery after this, doubling (with jitter) for up to 24 h, then `failed`"))
    webhook_allow_private: bool = setting(_INTEGRATIONS, "WEBHOOK_ALLOW_PRIVATE", False, SWITCH, (
        "`true`: webhooks may target private, loopback and link-local addresses (refused by default, at "
        "subscription and after every DNS resolution: server-side request forgery)"), shown_default="`false`")
    webhook_delivery: bool = setting(_INTEGRATIONS, "WEBHOOK_DELIVERY", True, SWITCH, (
        "`false`: this instance writes webhook events to the outbox but leaves their delivery to the others"),
        shown_default="`true`")
    webhook_poll_s: float = setting(_INTEGRATIONS, "WEBHOOK_POLL_S", 1.0, number(0.01), (
        "how often an idle instance looks for due webhook deliveries and re-reads the subscriptions"))
    retention_days: int = setting(_INTEGRATIONS, "RETENTION_DAYS", 0, integer(0), (
        "the words of conversations closed longer ago are purged, hourly (counts, states and log stay); 0: never"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, instance: InstanceData = None) -> Settings:
        """Read and check every variable; raise SettingsError naming the first bad one. `instance`: what a
        command reads of an embedded instance's data ("data": its database; "secret": its JWT secret, unless
        JWT_SECRET_KEY is given; "refused": none, the command does not run in the embedded mode); in the embedded
        mode, where CHAT_DATA_DIR holds no instance's database, NoInstanceData is raised (EmbeddedRefused for
        "refused", wherever) and nothing is made there."""
        values, given = read_table(settings_table(), os.environ if env is None else env)
        join_settings(values, given, instance)
        return cls(**values)

    def check_serve(self, env: Mapping[str, str]) -> None:
        """Refuse to serve customers with the offline echo provider by default (PROTOCOL 7): outside
        the embedded mode it must be asked for with AI_PROVIDER=echo in `env` (what the settings were
        read from). SettingsError otherwise."""
        explicit = bool(env.get("AI_PROVIDER", "").strip())
        if not self.embedded and self.ai_provider == "echo" and not explicit:
            raise SettingsError(
                "AI_PROVIDER", "no AI provider configured, and the offline echo provider is not an AI: set "
                "DASHSCOPE_API_KEY (or AI_PROVIDER=openai and AI_BASE_URL), or AI_PROVIDER=echo to run it on purpose")

    @property
    def jwt_verification_keys(self) -> tuple[str, ...]:
        """The keys a token may be signed with: `JWT_SECRET_KEY` (the one that signs) first, then the previous ones."""
        return (self.jwt_secret_key, *self.jwt_previous_secret_keys)

    def describe(self) -> str:
        """One log-safe line: provider, model, database and Redis (never a password or a key)."""
        redis = self.redis.describe() if self.redis else "embedded in-process Redis"
        redis += " (a cluster node)" if self.redis_cluster else ""
        return (f"AI provider {self.ai_provider} (model {self.ai_model}), database {self.database.describe()}, "
                f"Redis {redis}")


def settings_table() -> list[Row]:
    """Every setting read from the environment, in declaration order."""
    return table_of(Settings)
