"""The URLs the old .env's parts compose into (DATABASE_URL, REDIS_URL), checked and percent-encoded."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

DB_DEFAULTS = {
    "DB_HOST": "localhost",
    "DB_PORT": "3306",
    "DB_USER": "root",
    "DB_PASSWORD": "",
    "DB_NAME": "chat_api",
}
REDIS_DEFAULTS = {
    "REDIS_HOST": "localhost",
    "REDIS_PORT": "6379",
    "REDIS_PASSWORD": "",
    "REDIS_DB": "0",
}
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")


def value_or_default(env: Mapping[str, str], name: str, defaults: Mapping[str, str]) -> str:
    """The old services read ``process.env.X || default``: an empty value means the default."""
    return env.get(name) or defaults[name]


def valid_port(text: str) -> bool:
    text = text.strip()
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def _host(name: str, host: str) -> str:
    host = host.strip()
    if ":" in host and _IPV6.fullmatch(host.strip("[]")):
        return f"[{host.strip('[]')}]"
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{name} is not a host name or address: {host!r}")
    return host


def _checked_port(name: str, port: str) -> str:
    if not valid_port(port):
        raise ValueError(f"{name} is not a port number: {port!r}")
    return port.strip()


def database_url(env: Mapping[str, str]) -> str:
    """``mysql://user:pass@host:port/db``, user, password and database percent-encoded."""
    host = _host("DB_HOST", value_or_default(env, "DB_HOST", DB_DEFAULTS))
    port = _checked_port("DB_PORT", value_or_default(env, "DB_PORT", DB_DEFAULTS))
    user = quote(value_or_default(env, "DB_USER", DB_DEFAULTS), safe="")
    password = quote(env.get("DB_PASSWORD", ""), safe="")
    database = quote(value_or_default(env, "DB_NAME", DB_DEFAULTS), safe="")
    return f"mysql://{user}:{password}@{host}:{port}/{database}"


def redis_url(env: Mapping[str, str], target_db: int) -> str:
    """``redis://[:pass@]host:port/target_db``, the password percent-encoded.

    The old REDIS_DB is only checked: it is the migration's source, not the service's database.
    """
    host = _host("REDIS_HOST", value_or_default(env, "REDIS_HOST", REDIS_DEFAULTS))
    port = _checked_port("REDIS_PORT", value_or_default(env, "REDIS_PORT", REDIS_DEFAULTS))
    db = value_or_default(env, "REDIS_DB", REDIS_DEFAULTS).strip()
    if not (db.isascii() and db.isdigit()):
        raise ValueError(f"REDIS_DB is not a database number: {db!r}")
    password = env.get("REDIS_PASSWORD", "")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{target_db}"


def with_redis_db(url: str, db: int) -> str:
    """``url`` naming database ``db``: the path of a redis:// or rediss:// URL, the ``db`` parameter of a
    unix:// one; the rest (a percent-encoded password) exactly as it was."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "db"]
    path = parts.path
    if parts.scheme == "unix":
        query.append(("db", str(db)))
    else:
        path = f"/{db}"
    text = urlencode(query, safe="*")
    # by hand: urlunsplit drops the `//` of a unix:///path URL (no host)
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{text}" if text else "") + (
        f"#{parts.fragment}" if parts.fragment else "")


def redis_db_of(url: str) -> int:
    """The database a Redis URL names (as redis-py reads it: ``?db=``, else the path, else 0)."""
    parts = urlsplit(url)
    given = dict(parse_qsl(parts.query)).get("db") or parts.path.strip("/") or "0"
    return int(given) if given.isascii() and given.isdigit() else 0
