"""TLS to MySQL/MariaDB: the SSLContext of DATABASE_URL's `ssl*` options (chat.settings_parse.TlsConfig),
and whether a server offers TLS at all, read from its greeting before any driver connects (aiomysql
quietly stays on plain TCP when it does not, asyncmy fails the handshake with an obscure SSL error)."""

from __future__ import annotations

import asyncio
import ssl

from chat.settings_parse import TlsConfig

_CLIENT_SSL = 2048  # CLIENT.SSL, the capability bit of a server that offers TLS (the same in both drivers)


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The context the options ask for; OSError (ssl.SSLError is one) or ValueError on a file it cannot use."""
    context = ssl.create_default_context(cafile=tls.ca or None)
    if tls.cert:
        context.load_cert_chain(tls.cert, tls.key or None)
    context.check_hostname = tls.verify == "full"
    if tls.verify == "none":
        context.verify_mode = ssl.CERT_NONE
    return context


async def offers_tls(host: str, port: int, timeout_s: float = 10.0) -> bool:
    """Whether the server's greeting (its first packet, sent before anything is asked) has the SSL
    capability bit. OSError or TimeoutError when it cannot be reached; ValueError on a packet that is
    not a MySQL greeting (protocol 10)."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            header = await reader.readexactly(4)
            packet = await reader.readexactly(int.from_bytes(header[:3], "little"))
        finally:
            writer.close()
    if not packet or packet[0] != 10:  # 0xff: an error packet (too many connections, host blocked)
        raise ValueError(f"the server did not greet as MySQL does: {packet[:80]!r}")
    # protocol version, server version (NUL-terminated), thread id (4), salt (8), filler (1), capabilities (2)
    at = packet.index(b"\0", 1) + 1 + 4 + 8 + 1
    return bool(int.from_bytes(packet[at:at + 2], "little") & _CLIENT_SSL)
