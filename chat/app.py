"""The application factory: objects built in dependency order, each handed what it uses; the
collaborators subscribed to the operations' events here; one cleanup_ctx per resource."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from chat import apidocs, client_address, keys
from chat.ai import Provider, build_provider
from chat.ai_stream import AIStreams, LiveTurns
from chat.ai_turn import AIRunner
from chat.api import health, http_metrics, routes
from chat.bus import AccountChanged, Bus, BusMessage, Interest, PresenceChanged, ToAgents, ToConversation, ToUser
from chat.bus.publisher import Publisher
from chat.conversations import Operations, build_operations
from chat.cors import setup_cors
from chat.desk import Desk
from chat.erasure import RETENTION_CHECK_S, Eraser
from chat.errors import cancelled_meanwhile
from chat.events import ConversationMoved, Events, SessionClosed, SessionOpened
from chat.hub import Hub
from chat.login import Login
from chat.logs import MaskedAccessLogger
from chat.presence import Presence, run_every
from chat.quotas import ConversationQuota
from chat.redis_client import create_redis
from chat.revocation import AccountGuard, Revocation, Standings
from chat.routing import Router
from chat.settings import Settings
from chat.store import Store
from chat.store.db import connect_waiting
from chat.timers import Timers
from chat.web import routes as web_routes
from chat.webhooks import Deliverer
from chat.ws import transport
from chat.ws.commands import agent as agent_commands
from chat.ws.commands import conversation as conversation_commands
from chat.ws.registry import Registry
from chat.ws.session import Services
from states.repository import ConversationRepository
from states.timers import TimerIndex

log = logging.getLogger(__name__)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = create_redis(app[keys.SETTINGS], client_name=f"chat-api-{app[keys.INSTANCE_ID]}")
    app[keys.REDIS] = client
    yield
    await client.aclose()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    where = settings.database.describe()  # never the password

    def waiting(attempt: int, reason: str) -> None:
        log.warning("waiting for the database at %s after attempt %d: %s", where, attempt, reason)

    db = await connect_waiting(settings.database, pool_size=settings.db_pool_size,
                               timeout_s=settings.db_connect_timeout_s, on_wait=waiting)
    store = Store(db)
    try:
        await store.migrations.upgrade()
    except BaseException:  # a refused upgrade (foreign tables) must not leave SQLite's thread running
        await db.close()
        raise
    app[keys.STORE] = store
    yield
    await db.close()


ARM_RETRY_FIRST_S, ARM_RETRY_MAX_S = 1.0, 60.0  # retries of a failed arming of the missing state timers


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    """The HTTP client of the AI providers and the provider the settings name."""
    # one pooled connection per streaming reply: room for many concurrent AI turns; request bodies (the
    # context, every turn) encoded by orjson: 3 µs against the standard library's 20 for 20 messages
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, limit_per_host=200),
                                    json_serialize=_json_text)
    app[keys.HTTP_SESSION] = session
    if keys.AI_PROVIDER not in app:
        app[keys.AI_PROVIDER] = build_provider(app[keys.SETTINGS], session)
    yield
    await session.close()


def _bus_receiver(hub: Hub, presence: Presence, accounts: AccountGuard,
                  live: LiveTurns) -> Callable[[BusMessage], object]:
    """Messages from the bus, dispatched by type to the hub (the AI turns streaming here noting each
    `ai.interrupted` first), to presence's roster and to the accounts' guard."""
    receivers: dict[type, Callable[[Any], object]] = {
        ToConversation: live.watching(hub.to_conversation),
        ToUser: hub.to_user,
        ToAgents: hub.to_agents,
        PresenceChanged: presence.roster.apply,
        AccountChanged: accounts.apply,
    }
    return lambda message: receivers[type(message)](message)


def _subscribe(events: Events, ops: Operations, publisher: Publisher, router: Router, *, runner: AIRunner,
               streams: AIStreams, timers: Timers) -> None:
    """Who hears what, in the order they act: a move first stops the AI turn and ends its stream, then
    loads are kept, sockets told, the customer's notice stored, the state's timers armed, and routing
    runs last."""
    runner.subscribe_to(events)
    streams.subscribe_to(events)
    events.subscribe(ConversationMoved, ops.presence.on_moved)
    publisher.subscribe_to(events)
    events.subscribe(ConversationMoved, ops.messages.on_moved)
    timers.subscribe_to(events)
    router.subscribe_to(events)
    events.subscribe(SessionOpened, ops.staff.on_session_opened)
    events.subscribe(SessionOpened, ops.presence.on_session_opened)
    events.subscribe(SessionClosed, ops.presence.on_session_closed)


async def _core_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the service in dependency order; start the bus listener; stop it last."""
    settings, redis, store = app[keys.SETTINGS], app[keys.REDIS], app[keys.STORE]
    events = Events()
    repository = ConversationRepository(redis, store.conversations, session_ttl_s=settings.session_ttl_s)
    presence = Presence(redis, store, events, settings)
    quota = ConversationQuota(redis, settings.conversations_per_user_per_min)
    ops = build_operations(repository, store, events, presence, settings, quota=quota)
    interest = Interest(settings.bus_channel)
    hub = Hub(presence.roster, interest)
    accounts = AccountGuard(Standings(store.staff, settings.active_check_s), hub, store.staff)
    live = LiveTurns()
    bus = Bus(redis, _bus_receiver(hub, presence, accounts, live), interest)
    router = Router(ops.assignment, ops.conversations, store, presence, settings)
    streams = AIStreams(redis, bus, interest, live)
    runner = AIRunner(ops.conversations, ops.messages, store=store, redis=redis, streams=streams,
                      provider=app[keys.AI_PROVIDER], settings=settings)
    publisher = Publisher(bus, ops.conversations, csat_enabled=settings.csat_enabled)
    timers = Timers(TimerIndex(redis), ops.conversations, ops.messages, store=store, events=events,
                    settings=settings)
    _subscribe(events, ops, publisher, router, runner=runner, streams=streams, timers=timers)
    app[keys.DESK] = Desk(store, presence.roster, hub)
    app[keys.EVENTS], app[keys.CONVERSATIONS], app[keys.OPERATIONS] = events, repository, ops
    app[keys.HUB], app[keys.BUS], app[keys.PRESENCE], app[keys.ROUTER], app[keys.AI_RUNNER] = (
        hub, bus, presence, router, runner)
    app[keys.ACCOUNTS], app[keys.REVOCATION] = accounts, Revocation(bus, accounts)
    app[keys.LOGIN] = Login(store, redis, settings)
    app[keys.TIMERS] = timers
    app[keys.ERASER] = Eraser(store, redis, interest, retention_days=settings.retention_days)
    app[keys.WS_SERVICES] = Services(settings, ops, hub, app[keys.WS_REGISTRY], events, accounts, streams)
    await bus.start()
    yield
    await runner.close()
    await bus.stop()


async def _stop_ai_turns(app: web.Application) -> None:
    """Shutdown, before the sockets are closed (1001): the AI turns running here end, and their subscribers
    get `ai.interrupted` (`shutdown`) while their sockets are still open. A message that arrives meanwhile
    is stored unanswered (the sweep of another instance, or of this one when it is back, answers it)."""
    if keys.AI_RUNNER in app:  # absent when the start failed
        await app[keys.AI_RUNNER].close()


async def _agents_ctx(app: web.Application) -> AsyncIterator[None]:
    """Presence and routing loops (heartbeat, sweeper), the look for accounts deactivated, given a new password
    or another role, the state timers' loop, the AI sweep and the retention purge (at start, then periodically)."""
    settings, presence, router, runner = app[keys.SETTINGS], app[keys.PRESENCE], app[keys.ROUTER], app[keys.AI_RUNNER]
    try:
        presence.roster.load(await presence.online_teams())
    except Exception as exc:  # Redis down at start: /health says so; presence fills in as agents act
        log.warning("could not load online agents: %s", type(exc).__name__)
    loops = [
        asyncio.create_task(run_every(settings.presence_ttl_s / 3, presence.heartbeat, "presence heartbeat")),
        asyncio.create_task(run_every(max(settings.presence_grace_s / 4, 0.05), router.sweep, "presence sweeper")),
        asyncio.create_task(run_every(settings.active_check_s, app[keys.ACCOUNTS].sweep, "changed accounts")),
        asyncio.create_task(app[keys.TIMERS].run(), name="timers"),
        asyncio.create_task(_arm_missing_timers(app[keys.TIMERS], app[keys.BUS]), name="timers-missing"),
    ]
    if settings.ai_sweep_interval_s > 0:
        sweep = run_every(settings.ai_sweep_interval_s, runner.sweep, "AI sweep", at_start=True)
        loops.append(asyncio.create_task(sweep))
    if settings.retention_days > 0:
        purge = run_every(RETENTION_CHECK_S, app[keys.ERASER].purge, "retention purge", at_start=True)
        loops.append(asyncio.create_task(purge))
    router.kick()  # conversations may have waited while no instance ran
    yield
    app[keys.TIMERS].close()
    for task in loops:
        task.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    await router.close()


async def _arm_missing_timers(timers: Timers, bus: Bus) -> None:
    """Arm the state timers missing from the index at start, and again each time the bus is subscribed after a
    lost Redis connection (Redis restarted, failed over, or restored from an older snapshot: the timers armed
    since are gone). Each arming is tried until it succeeds: a Redis still loading its snapshot answers
    LOADING, the database may be away."""
    when = "at start"
    while True:
        delay_s = ARM_RETRY_FIRST_S
        while True:
            try:
                armed = await timers.arm_missing()
                break
            except Exception as exc:  # the conversations keep their place meanwhile
                if cancelled_meanwhile():  # a client library turned the shutdown's cancel into this
                    raise asyncio.CancelledError from None
                log.warning("could not arm the missing state timers %s (%s); trying again in %.0f s", when,
                            type(exc).__name__, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, ARM_RETRY_MAX_S)
        if cancelled_meanwhile():  # or dropped it (redis-py's wait_for on 3.11): the loop would wait for ever
            raise asyncio.CancelledError
        if armed:
            log.info("armed %d state timer(s) not in the index %s (lost with Redis, or older than an upgrade)",
                     armed, when)
        await bus.until_lost()
        await bus.subscribed.wait()
        when = "after Redis came back"


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The webhook outbox's delivery loop (any instance delivers; the claims keep them apart)."""
    settings, store = app[keys.SETTINGS], app[keys.STORE]
    deliverer = Deliverer(store.webhooks, owner=app[keys.INSTANCE_ID], retry_base_s=settings.webhook_retry_base_s,
                          allow_private=settings.webhook_allow_private, poll_s=settings.webhook_poll_s)
    app[keys.WEBHOOKS] = deliverer
    await store.webhooks.refresh()  # before the first change is written: who wants what
    loops = [asyncio.create_task(deliverer.follow_subscriptions())]
    if settings.webhook_delivery:
        loops.append(asyncio.create_task(deliverer.run()))
    yield
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    await deliverer.close()


def command_registry() -> Registry:
    """Every WebSocket command, one explicit register call per command family."""
    registry = Registry()
    conversation_commands.register(registry)
    agent_commands.register(registry)
    return registry


def create_app(settings: Settings, *, ai_provider: Provider | None = None) -> web.Application:
    """Build the service; tests build it with the same factory (and may pass a provider)."""
    # the access log masks `?token=` whichever runner serves the app (run_app, the test server)
    app = web.Application(client_max_size=1024 * 1024, handler_args={"access_log_class": MaskedAccessLogger})
    app[keys.SETTINGS] = settings
    app[keys.INSTANCE_ID] = uuid.uuid4().hex[:12]
    if ai_provider is not None:
        app[keys.AI_PROVIDER] = ai_provider
    app[keys.WS_REGISTRY] = command_registry()
    app.cleanup_ctx.extend([_redis_ctx, _store_ctx, _webhooks_ctx, _http_ctx, _core_ctx, _agents_ctx])
    health.register(app)
    routes.register(app)
    http_metrics.register(app)
    apidocs.register(app)
    app.on_shutdown.append(_stop_ai_turns)  # before transport's close_all: the turns' sockets are still open
    transport.register(app)
    web_routes.register(app)
    client_address.register(app, settings.trusted_proxies)
    setup_cors(app, settings.cors_origins)  # last: every route registered above gets it, the WebSocket upgrade not
    return app
