"""How one setting is read: its error, the URL parsers, value parsers that state their own check,
and `setting()`, which makes a dataclass field one row of the settings table (chat/settings.py)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
N = TypeVar("N", int, float)

SPEC_KEY = "setting"  # where a field's Spec lives in its metadata
MYSQL_SCHEMES = ("mysql", "mysql+aiomysql", "mysql+asyncmy", "mariadb")
MYSQL_DRIVER = "asyncmy"  # the driver of mysql:// and mariadb:// (chat/store/mysql.py; measured in docs/performance.md)


class SettingsError(Exception):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


TLS_VERIFY = ("full", "ca", "none")  # ssl_verify: certificate and host name / certificate only / nothing
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
TLS_OPTIONS = ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_verify")


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the MySQL/MariaDB server, from DATABASE_URL's query (paths of PEM files; never logged)."""

    ca: str = ""  # the CA bundle that signed the server's certificate; empty: the system's
    cert: str = ""  # the client certificate (with its key, or see `key`), for servers that ask for one
    key: str = ""
    verify: str = "full"  # one of TLS_VERIFY


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the SQL store lives: MySQL/MariaDB over the network or an SQLite file."""

    kind: str  # "mysql" or "sqlite"
    driver: str = ""  # MySQL: "asyncmy" or "aiomysql" (mysql+<driver>://, else MYSQL_DRIVER); SQLite: ""
    host: str = ""
    port: int = 3306
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    path: str = ""
    table_prefix: str = ""  # DB_TABLE_PREFIX, put before every table name of the service
    tls: TlsConfig | None = field(default=None, repr=False)  # None: plain TCP

    def describe(self) -> str:
        """A log-safe description (never the password, nor the TLS files)."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}" + ("?ssl=true" if self.tls else "")


@dataclass(frozen=True)
class RedisConfig:
    """A Redis server, or None in Settings for the embedded in-process one."""

    url: str = field(repr=False)
    host: str = "localhost"
    port: int = 6379
    db: int = 0
    scheme: str = "redis"  # rediss: TLS (redis-py reads its ssl_* query parameters from the URL)

    def describe(self) -> str:
        """A log-safe description (never the password)."""
        return f"{self.scheme}://{self.host}:{self.port}/{self.db}"


def _split(url: str, variable: str) -> tuple[SplitResult, int | None]:
    try:
        parts = urlsplit(url.strip())
        return parts, parts.port
    except ValueError as exc:
        raise SettingsError(variable, f"not a valid URL ({exc})") from None


def _flag(variable: str, name: str, text: str, choices: tuple[str, ...] = ()) -> str:
    value = text.strip().lower()
    if value in _TRUE:
        return "true"
    if value in _FALSE:
        return "false"
    if value in choices:
        return value
    raise SettingsError(variable, f"{name} must be true or false{''.join(f' or {c}' for c in choices)}, got {text!r}")


def parse_tls(query: str, variable: str = "DATABASE_URL") -> TlsConfig | None:
    """The TLS options of a MySQL URL's query (TLS_OPTIONS; other parameters are ignored, as before):
    `ssl=true` turns TLS on, so does any other `ssl_*`; `ssl_verify` is `true`/`full` (certificate and
    host name, the default), `ca` (certificate only) or `false`/`none` (encryption only)."""
    given = {name.lower(): value for name, value in parse_qsl(query, keep_blank_values=True)
             if name.lower().startswith("ssl")}
    unknown = sorted(given.keys() - set(TLS_OPTIONS))
    if unknown:
        raise SettingsError(variable, f"unknown TLS option(s) {', '.join(unknown)}; use {', '.join(TLS_OPTIONS)}")
    if not given:
        return None
    on = _flag(variable, "ssl", given.get("ssl", "true"))
    options = given.keys() - {"ssl"}
    if on == "false":
        if options:
            raise SettingsError(variable, f"ssl=false contradicts {', '.join(sorted(options))}")
        return None
    verify = _flag(variable, "ssl_verify", given.get("ssl_verify", "true"), ("full", "ca", "none"))
    verify = {"true": "full", "false": "none"}.get(verify, verify)
    if given.get("ssl_key") and not given.get("ssl_cert"):
        raise SettingsError(variable, "ssl_key needs ssl_cert")
    return TlsConfig(ca=given.get("ssl_ca", ""), cert=given.get("ssl_cert", ""), key=given.get("ssl_key", ""),
                     verify=verify)


def _sqlite_config(url: str, variable: str) -> DatabaseConfig:
    # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db
    rest = url.strip()[len("sqlite:") :]
    if not rest.startswith("///"):
        raise SettingsError(variable, "sqlite URL must look like sqlite:///path/to/chat.db")
    path = unquote(rest[3:])
    if not path:
        raise SettingsError(variable, "sqlite URL needs a path, e.g. sqlite:///data/chat.db")
    return DatabaseConfig(kind="sqlite", path=path)


def parse_database_url(url: str, variable: str = "DATABASE_URL") -> DatabaseConfig:
    """Parse mysql://, mysql+aiomysql://, mysql+asyncmy:// or sqlite:///path."""
    parts, port = _split(url, variable)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        return _sqlite_config(url, variable)
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
        driver=scheme.removeprefix("mysql+") if "+" in scheme else MYSQL_DRIVER,
        host=parts.hostname,
        port=port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=unquote(database),
        tls=parse_tls(parts.query, variable),
    )


def parse_redis_url(url: str, variable: str = "REDIS_URL") -> RedisConfig:
    """Check a redis:// (or rediss://, unix://) URL and keep it for redis-py."""
    parts, port = _split(url, variable)
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
    return RedisConfig(url=url.strip(), host=parts.hostname or "", port=port or 6379, db=db, scheme=parts.scheme)


@dataclass(frozen=True)
class Parser(Generic[T]):
    """Turns a variable's (non-blank) text into a value or a SettingsError; `check` says how, for the docs."""

    read: Callable[[str, str], T]  # (variable, text) -> value
    check: str = ""


def _bounded(convert: Callable[[str], N], minimum: N, what: str, check: str, maximum: N | None = None) -> Parser[N]:
    def read(variable: str, text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise SettingsError(variable, f"must be {what}, got {text!r}") from None
        if not math.isfinite(value):  # float("nan") and float("inf") parse, and nan passes any comparison
            raise SettingsError(variable, f"must be a finite number, got {text!r}")
        if value < minimum or (maximum is not None and value > maximum):
            upto = "" if maximum is None else f" and <= {maximum}"
            raise SettingsError(variable, f"must be >= {minimum}{upto}, got {value}")
        return value

    return Parser(read, check)


def integer(minimum: int = 0, maximum: int | None = None) -> Parser[int]:
    """A whole number no smaller than `minimum` (nor larger than `maximum`, when given)."""
    upto = "" if maximum is None else f", ≤ {maximum}"
    return _bounded(int, minimum, "an integer", f"integer ≥ {minimum}{upto}", maximum)


PORT_NUMBER = integer(0, 65535)  # PORT, and `serve --port`


def number(minimum: float = 0.0) -> Parser[float]:
    """A number (seconds, mostly) no smaller than `minimum`."""
    return _bounded(float, minimum, "a number", f"number ≥ {minimum:g}")


def choice(*choices: str, upper: bool = False) -> Parser[str]:
    """One of `choices`, case-insensitive; kept lower case (or upper, for log levels)."""

    def read(variable: str, text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise SettingsError(variable, f"must be one of {', '.join(choices)}, got {value!r}")
        return value.upper() if upper else value

    return Parser(read, "one of " + ", ".join(f"`{c}`" for c in choices))


def _channel_prefix(variable: str, text: str) -> str:
    if "{" in text or "}" in text:  # Redis Cluster would hash every channel (and AI stream key) by that part alone
        raise SettingsError(variable, f"must not contain {{ or }}, got {text!r}")
    return text


def _phrases(variable: str, text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split("|") if p.strip())


def _database(variable: str, text: str) -> DatabaseConfig:
    return parse_database_url(text, variable)


def _redis(variable: str, text: str) -> RedisConfig | None:
    return parse_redis_url(text, variable)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(variable: str, text: str) -> str:
    """One browser origin, as browsers send it in `Origin`: lower case, no default port."""
    if text == "*":
        raise SettingsError(variable, "`*` is not accepted: list the origins allowed, e.g. https://shop.example.com")
    problem = f"each origin is scheme://host[:port] (http or https, no path, no trailing /), got {text!r}"
    parts, port = _split(text, variable)
    scheme = parts.scheme.lower()
    if (scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path or parts.query or parts.fragment
            or "@" in parts.netloc or text.endswith(("?", "#"))):
        raise SettingsError(variable, problem)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else "")


def _url_root(variable: str, text: str) -> str:
    parts, _port = _split(text, variable)  # a bad port is refused here, not at the first AI turn
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise SettingsError(variable, "must be an http(s) URL with a host, e.g. https://dashscope.aliyuncs.com/api/v1")
    return text.strip().rstrip("/")


def _origins(variable: str, text: str) -> tuple[str, ...]:
    origins = (_origin(variable, item.strip()) for item in text.split(",") if item.strip())
    return tuple(dict.fromkeys(origins))


def _table_prefix(variable: str, text: str) -> str:
    prefix = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_]{1,24}", prefix):
        raise SettingsError(variable, f"letters, digits and _ only, at most 24 of them, got {prefix!r}")
    return prefix


TABLE_PREFIX = Parser(_table_prefix, "letters, digits and `_`, at most 24")


def _switch(variable: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise SettingsError(variable, f"must be true or false, got {text!r}")
    return value == "true"


SWITCH = Parser(_switch, "`true` or `false`")


def _secret_list(variable: str, text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


SECRET_LIST = Parser(_secret_list, "comma-separated; blanks around and between the commas are ignored")


TEXT: Parser[str] = Parser(lambda _variable, text: text)
CHANNEL_PREFIX = Parser(_channel_prefix, "no `{` or `}`")
URL_ROOT: Parser[str] = Parser(_url_root, "an http(s) URL with a host; a trailing `/` is stripped")
PATH: Parser[Path] = Parser(lambda _variable, text: Path(text))
PHRASES = Parser(_phrases, "`|`-separated, case-insensitive substrings; empty: no phrases (no keyword handoff)")
DATABASE = Parser(_database, "needs a host and a database name; port 3306 and user `root` by default")
REDIS = Parser(_redis, "the db must be a number")
ORIGINS = Parser(_origins, "comma-separated `scheme://host[:port]` (http or https, no path); `*` is refused")


class Group(StrEnum):
    """The sections of the settings docs, in order."""

    SERVICE = "Service"
    ACCOUNTS = "Accounts and login"
    STORAGE = "Storage"
    AI = "AI"
    WEBSOCKET = "WebSocket"
    ROUTING = "Routing and presence"
    TIMERS = "Timers and business hours"
    INTEGRATIONS = "Webhooks and data retention"


@dataclass(frozen=True)
class Spec(Generic[T]):
    """A setting's environment side: its variable, parser, doc and how its default reads."""

    env: str
    parser: Parser[T]
    doc: str
    group: Group
    shown_default: str | None = None  # the default as the docs show it, when not the value itself
    note: str = ""  # a rule the docs add to the parser's check (one that joins settings, say)
    blank_is_value: bool = False  # only an unset variable means the default (HANDOFF_PHRASES)

    @property
    def check(self) -> str:
        """The parser's check and the note, as the docs show them."""
        return "; ".join(part for part in (self.parser.check, self.note) if part)


def setting(
    group: Group,
    env: str,
    default: T,
    parser: Parser[T],
    doc: str,
    *,
    shown_default: str | None = None,
    note: str = "",
    secret: bool = False,
    blank_is_value: bool = False,
) -> T:
    """A dataclass field that is also a row of the settings table (a secret is left out of repr)."""
    spec = Spec(env, parser, doc, group, shown_default, note, blank_is_value)
    return field(default=default, repr=not secret, metadata={SPEC_KEY: spec})


@dataclass(frozen=True)
class Row:
    """One row of the settings table: the attribute, its default and its environment side."""

    attribute: str
    default: object
    spec: Spec[Any]


def table_of(cls: type[DataclassInstance]) -> list[Row]:
    """The rows of a dataclass whose fields were declared with `setting()`, in field order."""
    return [Row(f.name, f.default, f.metadata[SPEC_KEY]) for f in fields(cls) if SPEC_KEY in f.metadata]


def read_table(rows: list[Row], env: Mapping[str, str]) -> tuple[dict[str, Any], set[str]]:
    """Every row's value (its default when the variable is unset or blank) and the attributes set."""
    values: dict[str, Any] = {}
    given: set[str] = set()
    for row in rows:
        text = env.get(row.spec.env)
        if text is None or (not row.spec.blank_is_value and not text.strip()):
            values[row.attribute] = row.default
            continue
        values[row.attribute] = row.spec.parser.read(row.spec.env, text)
        given.add(row.attribute)
    return values, given
