"""Webhook delivery (PROTOCOL 6.1): the loop that claims due outbox rows and POSTs them, signed.

Any instance runs it; the claim (chat.store.webhooks) keeps two instances off the same row and
each (subscription, conversation) line in order. A 2xx settles a row as delivered; anything else,
a timeout or a refused address is retried after WEBHOOK_RETRY_BASE_S, doubling, with jitter, until
24 h have passed since it was queued, then it is `failed` (listed, redeliverable).

Targets are checked against server-side request forgery twice: the URL when it is subscribed, and
every address the name resolves to when a request is made (the connector's resolver refuses a
private answer, so a name that rebinds to 127.0.0.1 after the check is still refused, and the
address checked is the one connected to). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from chat import metrics
from chat.store.webhooks import DELIVERED, EXCERPT_BYTES, FAILED, PENDING, Claimed, Webhooks
from states.clock import now_ms

log = logging.getLogger(__name__)

_OUTCOME_LABELS = {DELIVERED: "delivered", PENDING: "retry", FAILED: "failed"}  # of an attempt

TIMEOUT_S = 10.0
RETRY_WINDOW_MS = 24 * 3600 * 1000
LEASE_MS = 60_000  # longer than a request can take: a live holder always settles first
BATCH = 50
KEEP_MS = 30 * 24 * 3600 * 1000  # delivered and failed deliveries are listed (and redeliverable) this long
PRUNE_EVERY_MS = 3600 * 1000
JITTER = 0.25  # a retry waits its delay plus up to a quarter more, so failed receivers are not hit in step

Clock = Callable[[], int]  # epoch milliseconds


class RefusedTarget(Exception):
    """A webhook URL that may not be called (scheme, or a private address)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Chat-Signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def private_address(address: str) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified (an IPv4-mapped IPv6 address
    is judged as its IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def check_url(url: str, *, allow_private: bool) -> None:
    """RefusedTarget unless `url` is http(s) with a host whose every address is public (or
    allow_private); a name that does not resolve is refused too. The reasons never quote the URL (it
    may carry credentials, and a refusal can reach a log)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for its check: a port out of range or not a number
    except ValueError:  # an unclosed [ of an IPv6 host, a netloc that NFKC changes, a bad port
        raise RefusedTarget("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedTarget("only http and https URLs with a host")
    if parts.username or parts.password:
        raise RefusedTarget("no credentials in the URL: the signature authenticates the service")
    if allow_private:
        return
    literal = _literal(parts.hostname)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, None, type=socket.SOCK_STREAM)
        except OSError:
            raise RefusedTarget(f"{parts.hostname} does not resolve") from None
        except UnicodeError:  # IDNA refuses the name (an empty label, a character it cannot encode)
            raise RefusedTarget("the host is not a valid domain name") from None
        addresses = [str(info[4][0]) for info in infos]
    if not addresses or any(private_address(a) for a in addresses):
        raise RefusedTarget(f"{parts.hostname} is a private, loopback or link-local address")


class PrivateAnswer(OSError):
    """A webhook host resolved to a private address at request time (aiohttp wraps it as a DNS error)."""


class PublicResolver(AbstractResolver):
    """DNS resolution for webhook requests that refuses private answers (the addresses connected to
    are the ones checked)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        """The host's addresses; PrivateAnswer when any is private."""
        results = await self._resolver.resolve(host, port, family)
        if any(private_address(r["host"]) for r in results):
            raise PrivateAnswer(f"{host} resolves to a private, loopback or link-local address")
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._resolver.close()


def backoff_ms(attempts: int, base_s: float, rng: Callable[[], float]) -> int:
    """The wait after the `attempts`-th failed attempt: base doubling, plus up to JITTER of it."""
    delay_s = base_s * 2 ** max(attempts - 1, 0)
    return int(delay_s * (1 + JITTER * rng()) * 1000)


class Deliverer:
    """Claims and sends due deliveries; `drain()` runs until nothing is due (tests), `run()` forever."""

    def __init__(  # noqa: PLR0913 - what the loop uses, each injectable for tests
        self,
        webhooks: Webhooks,
        *,
        owner: str,
        retry_base_s: float,
        allow_private: bool,
        poll_s: float = 1.0,
        timeout_s: float = TIMEOUT_S,
        clock: Clock | None = None,
        rng: Callable[[], float] = random.random,
    ):
        self.webhooks = webhooks
        self.owner = owner
        self.retry_base_s = retry_base_s
        self.allow_private = allow_private
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.clock: Clock = clock or now_ms
        self.rng = rng
        self.batch = BATCH
        self.sent = 0
        self._pruned_ms = 0
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = DefaultResolver() if self.allow_private else PublicResolver()
            # the system's proxy settings are not used: the address checked must be the one connected to
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver, limit=100),
                                                  trust_env=False)
        return self._session

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def follow_subscriptions(self) -> None:
        """Re-read the subscriptions every poll_s, so another instance's change is seen: on every instance,
        delivering or not (each writes the events its subscriptions want), and however long a delivery
        pass takes."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.webhooks.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database away for a moment: the cache stays, try again
                log.warning("could not re-read the webhook subscriptions: %s", type(exc).__name__)

    async def run(self) -> None:
        """Deliver forever: as long as rows are due back to back, else every poll_s."""
        while True:
            try:
                while await self.deliver_due():
                    pass
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database away for a moment: try again next poll
                log.warning("webhook delivery pass failed: %s", type(exc).__name__)
            await asyncio.sleep(self.poll_s)

    async def prune(self) -> int:
        """Hourly: forget deliveries settled more than 30 days ago; how many went."""
        now = self.clock()
        if now - self._pruned_ms < PRUNE_EVERY_MS:
            return 0
        self._pruned_ms = now
        total = 0
        while gone := await self.webhooks.prune(now - KEEP_MS):
            total += gone
        if total:
            log.info("webhook deliveries settled over 30 days ago removed: %d", total)
        return total

    async def drain(self) -> int:
        """Deliver until nothing is due at the clock's time; how many attempts were made."""
        await self.webhooks.refresh()
        attempts = 0
        while made := await self.deliver_due():
            attempts += made
        return attempts

    async def deliver_due(self) -> int:
        """Claim one batch of due heads and attempt each; how many were attempted."""
        claimed = await self.webhooks.claim(self.owner, self.clock(), LEASE_MS, self.batch)
        await asyncio.gather(*(self._attempt(c) for c in claimed))
        return len(claimed)

    async def _attempt(self, claimed: Claimed) -> None:
        status, excerpt, error = await self._send(claimed)
        now = self.clock()
        ok = status is not None and 200 <= status < 300
        attempts = claimed.attempts + 1
        if ok:
            outcome, next_ms = DELIVERED, None
        else:
            next_ms = now + backoff_ms(attempts, self.retry_base_s, self.rng)
            outcome = FAILED if next_ms - claimed.window_ms > RETRY_WINDOW_MS else PENDING
            log.info("webhook delivery %s to %s failed (attempt %d, %s)%s", claimed.id, claimed.webhook_id,
                     attempts, error or f"HTTP {status}", "; giving up" if outcome == FAILED else "")
        self.sent += 1
        metrics.WEBHOOK_DELIVERIES.labels(_OUTCOME_LABELS[outcome]).inc()
        if ok:
            metrics.WEBHOOK_LAG.observe(max(now - claimed.window_ms, 0) / 1000)
        await self.webhooks.settle(claimed, status=outcome, at_ms=now, next_ms=next_ms, response_status=status,
                                   excerpt=excerpt, error=error)

    async def _send(self, claimed: Claimed) -> tuple[int | None, str | None, str | None]:
        """(HTTP status, response excerpt, error) of one POST."""
        try:
            await check_url(claimed.url, allow_private=True)  # scheme and host (addresses: the resolver)
            parts = urlsplit(claimed.url)
            literal = _literal(parts.hostname or "")
            if literal is not None and not self.allow_private and private_address(literal):
                raise RefusedTarget("a private, loopback or link-local address")
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "chat-api-webhooks",
                "X-Chat-Event-Id": claimed.event_id,
                "X-Chat-Signature": sign(claimed.secret, self.clock() // 1000, claimed.body),
            }
            async with self._http().post(claimed.url, data=claimed.body, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as response:
                excerpt = await response.content.read(EXCERPT_BYTES)
                return response.status, excerpt.decode("utf-8", "replace"), None
        except RefusedTarget as exc:
            return None, None, f"refused: {exc}"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PrivateAnswer):
                return None, None, f"refused: {exc.os_error}"
            return None, None, f"{type(exc).__name__}: {exc}"[:255]
        except TimeoutError:
            return None, None, f"timed out after {self.timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return None, None, f"{type(exc).__name__}: {exc}"[:255]

