"""The client's address: what failed logins and visitor tokens are counted by (PROTOCOL 2.1, 2.2), and
what the access log shows; and whether the client came over https (the refresh cookie's `Secure`).

By default it is the TCP peer's. Behind a reverse proxy or a load balancer the peer of every request is
the proxy, so every client would share one address: one guesser's failed logins would lock every agent
out, and the widget's visitors would share one allowance. `TRUSTED_PROXIES` names the proxies (addresses
or networks). When the peer is one of them, the client is the right-most address of `X-Forwarded-For`
that is not (without its port, IPv4-mapped IPv6 as IPv4: one client, one key): each proxy appends the
address it received the request from, so what a client wrote into the header itself stays left of what
the trusted proxies added and is never taken, as long as no client's own address lies in a trusted
network (such a client would be skipped as a proxy, and what it wrote taken). A peer that is not a
trusted proxy is the client, whatever it sends (nobody passes for someone else by writing the header).
A trusted proxy's `X-Forwarded-Proto: https` says the client came over https (TLS ends at the proxy).

Written here rather than taken from aiohttp-remotes: its `XForwardedStrict` answers 400 to a request
whose number of hops differs from the configured chain (a client that sends its own `X-Forwarded-For`
through the proxy, a health check from inside the network), and its `XForwardedFiltered` reads the
header from any peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from chat.settings_parse import Parser, SettingsError

Networks = tuple[IPv4Network | IPv6Network, ...]

CLIENT_ADDRESS = web.RequestKey("client_address", str)
FORWARDED_HTTPS = web.RequestKey("forwarded_https", bool)  # a trusted proxy took the request in over https
MAX_ADDRESS_CHARS = 64  # a forwarded entry that is no address is kept as text, this long at most


def _networks(variable: str, text: str) -> Networks:
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(variable, f"{item!r} is no IP address or network") from None
    return tuple(networks)


TRUSTED = Parser(_networks, "comma-separated IP addresses or networks, e.g. `10.0.0.0/8,192.168.1.10`")


def _address(text: str) -> IPv4Address | IPv6Address | None:
    """The IP address an `X-Forwarded-For` entry names (`1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, IPv6Address) else None
    return mapped or address  # a dual-stack socket's ::ffff:10.0.0.1 is 10.0.0.1


def _trusted(address: IPv4Address | IPv6Address | None, trusted: Networks) -> bool:
    return address is not None and any(address in network for network in trusted)


def address_behind(peer: str, forwarded: Iterable[str], trusted: Networks) -> str:
    """The client's address, given the TCP peer and the `X-Forwarded-For` headers (in their order)."""
    if not _trusted(_address(peer), trusted):
        return peer
    hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        client = str(address) if address is not None else hop[:MAX_ADDRESS_CHARS]  # no port: one key per client
        if not _trusted(address, trusted):
            break
    return client  # every hop a trusted proxy: the left-most


def client_address(request: web.BaseRequest) -> str:
    """The request's client address: the TCP peer, or who a trusted proxy forwarded it for."""
    return request.get(CLIENT_ADDRESS) or request.remote or ""


def over_https(request: web.BaseRequest) -> bool:
    """Did the client's request come over https: to the service itself, or to a trusted proxy that says so
    in `X-Forwarded-Proto` (its right-most value: the nearest proxy's word)?"""
    return request.secure or request.get(FORWARDED_HTTPS, False)


def register(app: web.Application, trusted: Networks) -> None:
    """With trusted proxies, a middleware (outermost) notes each request's client address; without, the
    peer is the client and nothing is added."""
    if not trusted:
        return

    @web.middleware
    async def forwarded_for(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[CLIENT_ADDRESS] = address_behind(request.remote or "", request.headers.getall(hdrs.X_FORWARDED_FOR, ()),
                                                 trusted)
        proto = request.headers.get(hdrs.X_FORWARDED_PROTO, "").rpartition(",")[2].strip().lower()
        if proto == "https" and _trusted(_address(request.remote or ""), trusted):
            request[FORWARDED_HTTPS] = True
        return await handler(request)

    app.middlewares.insert(0, forwarded_for)
