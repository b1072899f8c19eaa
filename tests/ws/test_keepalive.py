"""The keepalive: one task pings quiet sockets and drops the ones that do not answer (1006 on the
peer's side), and arms a session's token expiry only once it is near (no timer per idle socket)."""

import asyncio
import dataclasses

from aiohttp import WSMsgType

from chat import keys
from chat.auth import issue_token, verify_token
from chat.settings import Settings
from chat.ws.connection import Connection, Outbox
from chat.ws.keepalive import Keepalive
from chat.ws.registry import Registry
from chat.ws.session import Services, Session
from tests.ws.fakes import FakeSocket

WAIT_S = 10.0  # a guard against a hang, never a wait for time to pass


async def test_a_peer_that_does_not_answer_pings_is_dropped(harness_factory):
    harness = await harness_factory(ws_heartbeat_s=1.0)
    ws = await harness.client.ws_connect(f"/ws?token={harness.token('cust-1')}", autoping=False)
    pinged = 0
    while True:
        msg = await ws.receive(timeout=WAIT_S)
        if msg.type != WSMsgType.PING:
            break
        pinged += 1  # and not answered
    assert pinged >= 1 and msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR, WSMsgType.CLOSE)
    while harness.app[keys.HUB].sockets_of("cust-1"):  # the server side cleans up after it
        await asyncio.sleep(0)


async def test_a_peer_that_answers_pings_stays_and_its_own_ping_is_answered(harness_factory):
    harness = await harness_factory(ws_heartbeat_s=1.0)
    ws = await harness.client.ws_connect(f"/ws?token={harness.token('cust-1')}", autoping=False)
    for _ in range(3):  # three rounds of ping and pong
        msg = await ws.receive(timeout=WAIT_S)
        assert msg.type == WSMsgType.PING
        await ws.pong(msg.data)
    await ws.ping(b"are you there")
    msg = await ws.receive(timeout=WAIT_S)
    assert (msg.type, msg.data) == (WSMsgType.PONG, b"are you there")
    await ws.send_json({"type": "ping", "id": 1})
    assert (await ws.receive_json(timeout=WAIT_S)) == {"id": 1, "type": "pong"}
    await ws.close()


async def test_a_session_holds_no_expiry_timer_until_a_round_finds_its_exp_near():
    settings = dataclasses.replace(Settings(), ws_heartbeat_s=0.01)
    token = issue_token(settings.jwt_secret_key, "cust-1", "customer", ttl_s=600)
    identity = verify_token(settings.jwt_secret_key, token)
    socket = FakeSocket()
    conn = Connection(socket, settings, Outbox())  # type: ignore[arg-type]
    services = Services(settings, None, None, Registry(), None, None, None, clock=lambda: identity.exp - 0.05)  # type: ignore[arg-type]
    session = Session(conn, identity, services)
    assert session._expiry is None  # 50 ms away, more than a heartbeat: left to the rounds
    keepalive = Keepalive(settings.ws_heartbeat_s, {conn})
    loop = asyncio.get_running_loop()
    await keepalive.round(loop.time())
    assert session._expiry is None and socket.pings == 0  # it was heard from just now
    await keepalive.round(session.expires_at - 0.005)  # the round before its exp
    assert session._expiry is not None
    assert await asyncio.wait_for(socket.closed.wait(), WAIT_S)
    assert socket.close_code == 4401


class _Behind(asyncio.WriteTransport):
    """A transport with more waiting than its low-water mark: the peer is behind."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def get_write_buffer_size(self) -> int:
        return 10_000

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 1000, 4000

    def close(self) -> None:
        self.closed = True


class _StuckPings(FakeSocket):
    def __init__(self) -> None:
        super().__init__()
        self.reads = asyncio.Event()

    async def ping(self, message: bytes = b"") -> None:
        self.pings += 1
        await self.reads.wait()  # aiohttp's flow control: it waits until the peer reads


async def test_a_quiet_peer_that_is_behind_is_pinged_without_stalling_the_round_and_dropped_if_silent():
    settings = dataclasses.replace(Settings(), ws_heartbeat_s=1.0)
    socket, transport = _StuckPings(), _Behind()
    conn = Connection(socket, settings, Outbox(), transport)  # type: ignore[arg-type]
    keepalive = Keepalive(settings.ws_heartbeat_s, {conn})
    quiet_since = conn.received_at
    await keepalive.round(quiet_since + 1.0)  # returns although this ping cannot be written yet
    await asyncio.sleep(0)  # the ping's own task starts
    assert socket.pings == 1 and not transport.closed
    await keepalive.round(quiet_since + 1.5)  # nothing came back
    assert transport.closed and conn.closing
    socket.reads.set()


async def test_any_frame_from_the_peer_answers_for_it():
    settings = dataclasses.replace(Settings(), ws_heartbeat_s=1.0)
    socket = FakeSocket()
    conn = Connection(socket, settings, Outbox())  # type: ignore[arg-type]
    keepalive = Keepalive(settings.ws_heartbeat_s, {conn})
    start = conn.received_at
    await keepalive.round(start + 1.0)
    assert socket.pings == 1
    conn.received_at = start + 1.2  # a frame arrived (the read loop sets this)
    await keepalive.round(start + 1.5)
    assert not conn.closing and socket.pings == 1  # not quiet for a heartbeat yet: no new ping
