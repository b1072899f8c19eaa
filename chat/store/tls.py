"""TLS to MySQL/MariaDB: the SSLContext of DATABASE_URL's `ssl*` options (chat.settings_parse.TlsConfig),
and whether a server offers TLS at all (aiomysql quietly stays on plain TCP when it does not)."""

from __future__ import annotations

import ssl

import aiomysql
from pymysql.constants import CLIENT  # type: ignore[import-untyped]

from chat.settings_parse import TlsConfig


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The context the options ask for; OSError (ssl.SSLError is one) or ValueError on a file it cannot use."""
    context = ssl.create_default_context(cafile=tls.ca or None)
    if tls.cert:
        context.load_cert_chain(tls.cert, tls.key or None)
    context.check_hostname = tls.verify == "full"
    if tls.verify == "none":
        context.verify_mode = ssl.CERT_NONE
    return context


async def offers_tls(pool: aiomysql.Pool) -> bool:
    """Whether the server the pool connected to offers TLS (then aiomysql used it)."""
    async with pool.acquire() as conn:
        return bool(conn.server_capabilities & CLIENT.SSL)
