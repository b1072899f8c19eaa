"""Protocol conformance of GET /ws: auth phase, envelope, error codes, close codes."""

import asyncio
from types import SimpleNamespace

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError

from tests.wsclient import WS


async def test_ping_before_and_after_auth(harness):
    ws = await harness.connect()
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}
    await ws.send({"type": "ping", "id": 5})
    assert await ws.recv() == {"id": 5, "type": "pong"}
    reply = await ws.request("auth", token=harness.token("cust-1"))
    assert reply["type"] == "result" and reply["data"]["user_id"] == "cust-1"
    assert reply["data"]["role"] == "customer" and type(reply["data"]["exp"]) is int
    await ws.send({"type": "ping", "id": 6})
    assert await ws.recv() == {"id": 6, "type": "pong"}


async def test_commands_before_auth_are_unauthenticated(harness):
    ws = await harness.connect()
    reply = await ws.request("conversation.start")
    assert reply["type"] == "error" and reply["code"] == "unauthenticated"
    assert "message" in reply
    await ws.send({"type": "ping"})  # still open
    assert await ws.recv() == {"type": "pong"}


async def test_bad_token_frame_errors_then_closes_4401(harness):
    ws = await harness.connect()
    reply = await ws.request("auth", token="not-a-jwt")
    assert reply["type"] == "error" and reply["code"] == "unauthenticated"
    assert await ws.closed() == 4401


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_tokens_without_exp_or_wrong_alg_or_role_are_refused(harness):
    import jwt

    secret = harness.settings.jwt_secret_key
    bad = [
        jwt.encode({"sub": "u", "role": "customer"}, secret, algorithm="HS256"),  # no exp
        jwt.encode({"sub": "u", "role": "customer", "exp": 9999999999}, secret + "x", algorithm="HS256"),
        jwt.encode({"sub": "u", "role": "superuser", "exp": 9999999999}, secret, algorithm="HS256"),
        jwt.encode({"sub": "u", "role": "customer", "exp": 9999999999}, secret, algorithm="HS512"),
        jwt.encode({"sub": "u", "role": "customer", "exp": 1}, secret, algorithm="HS256"),  # expired
    ]
    for token in bad:
        with pytest.raises(WSServerHandshakeError) as err:
            await harness.client.ws_connect(f"/ws?token={token}")
        assert err.value.status == 401


async def test_bad_url_token_is_http_401_without_upgrade(harness):
    resp = await harness.client.get("/ws?token=garbage", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                                   "Sec-WebSocket-Version": "13",
                                                                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    assert resp.headers["X-Request-ID"]  # the error middleware let the handshake through: the handler sets it


@pytest.mark.parametrize("headers", [{}, {"Connection": "Upgrade", "Upgrade": "websocket"}])  # plain, no key
async def test_a_get_on_ws_that_is_no_websocket_handshake_gets_the_error_shape(harness, headers):
    resp = await harness.client.get("/ws", headers={**headers, "X-Request-ID": "req-7"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid"
    assert resp.headers["X-Request-ID"] == "req-7"


def _awaited_chain(task: asyncio.Task) -> list[str]:
    names, coro = [], task.get_coro()
    while coro is not None:
        names.append(getattr(coro, "__qualname__", type(coro).__name__))
        coro = getattr(coro, "cr_await", None)
    return names


async def test_an_open_socket_keeps_nothing_of_the_rest_error_middleware(harness):
    ws = await harness.connect("cust-1")
    chains = [_awaited_chain(t) for t in asyncio.all_tasks()]
    served = [c for c in chains if "handle_ws" in c]
    assert len(served) == 1
    assert "_guarded" not in served[0]  # the middleware's frame (request id, log context) is not kept
    await ws.close()


async def test_auth_deadline_closes_4408(harness_factory):
    h = await harness_factory(ws_auth_timeout_s=0.3)
    ws = await h.connect()
    assert await ws.closed() == 4408


async def test_auth_for_another_user_or_role_on_an_open_socket_is_invalid(harness):
    ws = await harness.connect("cust-1")
    for token in (harness.token("cust-2"), harness.token("cust-1", role="agent")):
        reply = await ws.request("auth", token=token)
        assert reply["type"] == "error" and reply["code"] == "invalid"
    await ws.send({"type": "ping", "id": 1})  # the socket stays
    assert await ws.recv() == {"id": 1, "type": "pong"}


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json", "invalid"),
        ("[1, 2]", "invalid"),
        ('{"id": 3}', "invalid"),
        ('{"type": 7}', "invalid"),
        ('{"type": "no.such.command", "id": 4}', "invalid"),
        ('{"type": "message.send", "id": 5, "conversation_id": "x"}', "invalid"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(harness, raw, code):
    ws = await harness.connect("cust-1")
    await ws.ws.send_str(raw)
    reply = await ws.recv()
    assert reply["type"] == "error" and reply["code"] == code
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}


async def test_validation_errors_carry_details_and_the_id(harness):
    ws = await harness.connect("cust-1")
    reply = await ws.request("message.send", conversation_id="c", content="hi", surprise=1)
    assert reply["code"] == "invalid"
    assert set(reply["details"]) == {"client_msg_id", "surprise"}


async def test_binary_frame_closes_1003(harness):
    ws = await harness.connect("cust-1")
    await ws.ws.send_bytes(b"\x00\x01")
    assert await ws.closed() == 1003


async def test_frame_over_the_size_limit_closes_1009(harness_factory):
    h = await harness_factory(ws_max_frame_bytes=2048)
    ws = await h.connect("cust-1")
    await ws.send({"type": "ping", "pad": "x" * 4096})
    assert await ws.closed() == 1009


async def test_a_frame_of_exactly_the_size_limit_is_read_and_one_byte_more_closes_1009(harness_factory):
    h = await harness_factory(ws_max_frame_bytes=2048)
    ws = await h.connect("cust-1")
    head = '{"id": 1, "type": "ping", "pad": "'
    await ws.ws.send_str(head + "x" * (2048 - len(head) - 2) + '"}')  # 2048 bytes: not over the limit
    assert (await ws.recv())["type"] == "pong"
    await ws.ws.send_str(head + "x" * (2049 - len(head) - 2) + '"}')
    assert await ws.closed() == 1009


async def test_rate_limit_then_close_1008_on_flooding(harness_factory):
    h = await harness_factory(ws_rate_limit_count=5, ws_rate_limit_window_s=60)
    ws = await h.connect("cust-1")
    codes = [(await ws.request("typing", conversation_id="nope", on=True))["code"] for _ in range(5)]
    assert codes == ["not_found"] * 5
    limited = await ws.request("typing", conversation_id="nope", on=True)
    assert limited["code"] == "rate_limited"
    await ws.send({"type": "ping", "id": 99})  # ping is exempt
    assert await ws.recv() == {"id": 99, "type": "pong"}
    for _ in range(20):
        await ws.send({"type": "typing", "conversation_id": "nope", "on": True})
    assert await ws.closed() == 1008


async def test_shutdown_closes_sockets_with_1001(aiohttp_server, make_settings, provider):
    from aiohttp import ClientSession

    from chat.app import create_app
    from chat.auth import issue_token

    settings = make_settings()
    app = create_app(settings, ai_provider=provider)
    server = await aiohttp_server(app)
    async with ClientSession() as session:
        token = issue_token(settings.jwt_secret_key, "cust-1", "customer")
        raw = await session.ws_connect(server.make_url(f"/ws?token={token}"))
        ws = WS(raw)
        await ws.ok("conversation.start")
        closing = asyncio.create_task(server.close())
        assert await ws.closed() == 1001
        await closing


async def test_shutdown_interrupts_a_streaming_reply_before_closing_its_socket(aiohttp_server, make_settings):
    """protocol.md 3.7: a turn its instance stops sends `ai.interrupted` (`shutdown`): the turns end while their
    sockets are still open, then the sockets close with 1001. A message sent meanwhile starts no turn."""
    from aiohttp import ClientSession

    from chat import keys
    from chat.app import create_app
    from chat.auth import issue_token
    from tests.test_ai_stream import StepProvider

    settings, provider = make_settings(), StepProvider(["Once ", "upon ", "a time."])
    app = create_app(settings, ai_provider=provider)
    server = await aiohttp_server(app)
    async with ClientSession() as session:
        token = issue_token(settings.jwt_secret_key, "cust-1", "customer")
        ws = WS(await session.ws_connect(server.make_url(f"/ws?token={token}")))
        cid = (await ws.ok("conversation.start"))["conversation"]["id"]
        await ws.ok("message.send", conversation_id=cid, client_msg_id="q1", content="tell me")
        provider.allow()
        turn_id = (await ws.event("ai.delta"))["data"]["turn_id"]
        closing = asyncio.create_task(server.close())
        interrupted = await ws.event("ai.interrupted")
        assert interrupted["data"] == {"conversation_id": cid, "turn_id": turn_id, "reason": "shutdown"}
        assert await ws.closed() == 1001
        await closing
    runner = app[keys.AI_RUNNER]
    runner.schedule(cid)  # what a message arriving during the shutdown asks for
    assert runner.tracked() == 0 and provider.calls == 1


class _Buffer(asyncio.WriteTransport):
    """A transport whose write buffer the test sets: `size` bytes waiting, low-water mark 1000."""

    def __init__(self, size: int = 0, peer: "_Peer | None" = None) -> None:
        super().__init__()
        self.size = size
        self.peer = peer  # the frames written here go to its list, after those of aiohttp's writer
        self.written = bytearray()
        self.writes = 0

    def write(self, data) -> None:
        self.writes += 1
        self.written += data
        if self.peer is not None:
            self.peer.frames += self.frames()
            self.written.clear()

    def is_closing(self) -> bool:
        return False

    def frames(self) -> list[bytes]:
        """The payloads of the short text frames written (a 2-byte header each)."""
        out, data = [], bytes(self.written)
        while data:
            assert data[0] == 0x81 and data[1] < 126
            out.append(data[2 : 2 + data[1]])
            data = data[2 + data[1] :]
        return out

    def get_write_buffer_size(self) -> int:
        return self.size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 1000, 4000


class _Peer:
    """A server socket that records frames; `stuck` makes a send wait (aiohttp's flow control)."""

    closed = False

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.stuck = asyncio.Event()
        self.stuck.set()
        self.closed_with = None

    async def send_frame(self, data, opcode):
        assert opcode == WSMsgType.TEXT
        await self.stuck.wait()
        self.frames.append(data)

    async def close(self, code, message=b""):
        self.closed_with = code


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_frames_of_every_socket_are_written_by_one_outbox_task(make_settings):
    """No task per socket: what is queued in a turn is written in the next, in order."""
    from chat.ws.connection import Connection, Outbox

    outbox, peers = Outbox(), [_Peer(), _Peer()]
    buffers = [_Buffer(peer=p) for p in peers]
    conns = [Connection(p, make_settings(), outbox, b) for p, b in zip(peers, buffers, strict=True)]
    for i in range(3):
        for conn in conns:
            conn.send({"n": i})
    assert all(p.frames == [] for p in peers)  # queued, not written inline
    await _turns()
    assert all(p.frames == [b'{"n":0}', b'{"n":1}', b'{"n":2}'] for p in peers)
    assert [b.writes for b in buffers] == [1, 1]  # the three frames of a turn in one write to each socket


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
async def test_a_frame_written_with_others_is_the_frame_aiohttp_writes(size):
    from aiohttp.http import WebSocketWriter

    from chat.ws.connection import text_frame

    transport, payload = _Buffer(), bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    writer = WebSocketWriter(SimpleNamespace(_paused=False), transport, use_mask=False)
    await writer.send_frame(payload, WSMsgType.TEXT)
    assert text_frame(payload) == bytes(transport.written)


async def test_slow_client_is_disconnected_without_stalling_the_others(make_settings):
    """A peer that is behind gets frames through its own task; the others keep being written; past
    WS_SEND_QUEUE_MAX frames behind it is closed with 1013, and sending never blocks."""
    from chat.ws.connection import CLOSE_SLOW_CLIENT, Connection, Outbox

    outbox, slow, fast = Outbox(), _Peer(), _Peer()
    slow.stuck.clear()  # it does not read
    slow_conn = Connection(slow, make_settings(ws_send_queue_max=3), outbox, _Buffer(size=5000, peer=slow))
    fast_conn = Connection(fast, make_settings(ws_send_queue_max=3), outbox, _Buffer(peer=fast))
    slow_conn.send_text("frame 0")
    await _turns()
    for i in range(1, 10):
        slow_conn.send_text(f"frame {i}")  # returns at once every time
        fast_conn.send_text(f"frame {i}")
        await _turns()
    assert fast.frames == [f"frame {i}".encode() for i in range(1, 10)]
    assert slow.closed_with == CLOSE_SLOW_CLIENT
    assert slow.frames == []
    await slow_conn.stop()


async def test_a_peer_that_catches_up_gets_every_frame_in_order(make_settings):
    from chat.ws.connection import Connection, Outbox

    peer = _Peer()
    buffer = _Buffer(size=3999, peer=peer)
    conn = Connection(peer, make_settings(ws_send_queue_max=10), Outbox(), buffer)
    peer.stuck.clear()
    conn.send_text("a")  # 3,999 bytes unread: under the high-water mark, written at once
    await _turns()
    buffer.size = 4001  # over it: the peer is behind, and its own task waits for aiohttp's flow control
    conn.send_text("bb")
    await _turns()
    conn.send_text("c")
    await _turns()
    assert peer.frames == [b"a"]
    buffer.size = 0
    peer.stuck.set()  # the peer reads again
    await _turns(6)
    conn.send_text("d")
    await _turns()
    assert peer.frames == [b"a", b"bb", b"c", b"d"]
    assert peer.closed_with is None


async def test_close_writes_what_is_queued_first(make_settings):
    from chat.ws.connection import Connection, Outbox

    peer = _Peer()
    conn = Connection(peer, make_settings(), Outbox(), _Buffer())
    conn.send_text("last words")
    await conn.close(1000, "bye")
    assert (peer.frames, peer.closed_with) == ([b"last words"], 1000)


async def test_unknown_role_command_is_forbidden(harness):
    ws = await harness.connect("agent-1", role="agent")
    reply = await ws.request("conversation.start")
    assert reply["code"] == "forbidden"


async def test_open_sockets_metric(harness):
    ws = await harness.connect("cust-1")
    await ws.ok("conversation.start")
    text = await (await harness.client.get("/metrics")).text()
    assert "chat_ws_open_sockets" in text


async def test_binary_never_reaches_commands(harness):
    ws = await harness.connect("cust-1")
    await ws.ws.send_bytes(b'{"type": "conversation.start"}')
    msg = await ws.ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


async def test_a_dependency_failure_is_unavailable_and_a_bug_is_internal(harness, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    ws = await harness.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    repo = harness.repository

    async def redis_down(conversation_id, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(repo, "get", redis_down)
    reply = await ws.request("conversation.resume", conversation_id=cid)
    assert reply["code"] == "unavailable" and "Connection refused" not in reply["message"]

    async def bug(conversation_id, **kwargs):
        raise KeyError("secret internals")

    monkeypatch.setattr(repo, "get", bug)
    reply = await ws.request("conversation.resume", conversation_id=cid)
    assert reply["code"] == "internal" and "secret" not in reply["message"]
    await ws.send({"type": "ping", "id": 1})
    assert await ws.recv() == {"id": 1, "type": "pong"}  # the socket survives both


async def test_session_setup_failure_is_unavailable_then_closes(harness, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from chat import keys

    async def redis_down(identity):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(harness.app[keys.PRESENCE], "socket_opened", redis_down)
    ws = await harness.connect()
    reply = await ws.request("auth", token=harness.token("agent-1", "agent"))
    assert reply["type"] == "error" and reply["code"] == "unavailable"
    assert await ws.closed() == 1011
    assert harness.app[keys.HUB].sockets_of("agent-1") == []


async def test_a_socket_whose_write_fails_unexpectedly_is_dropped_and_the_others_are_written(make_settings):
    from chat.ws.connection import Connection, Outbox

    class Broken(_Buffer):
        def write(self, data):
            raise ValueError("a bug")

    outbox, broken, fine = Outbox(), _Peer(), _Peer()
    broken_buffer = Broken(peer=broken)
    broken_buffer.close = lambda: setattr(broken_buffer, "closed", True)
    first, second = Connection(broken, make_settings(), outbox, broken_buffer), Connection(fine, make_settings(),
                                                                                           outbox, _Buffer(peer=fine))
    first.send_text("to the broken one")
    second.send_text("to the fine one")
    await _turns()
    assert fine.frames == [b"to the fine one"]
    assert first.closing and broken_buffer.closed
    second.send_text("and on")
    await _turns()
    assert fine.frames == [b"to the fine one", b"and on"]


def test_under_uvloop_a_connection_sees_its_transport(make_settings):
    """`chat-api serve` runs on uvloop, whose transports are no asyncio.WriteTransport: the connection must
    still see its transport's buffer, or a peer that is behind is never noticed (nor closed with 1013) and
    frames are never written together."""
    import uvloop
    from aiohttp import ClientSession, web

    from chat.ws.connection import Connection, Outbox

    async def main():
        seen = {}

        async def handler(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            seen["transport"] = Connection(ws, make_settings(), Outbox(), request.transport).transport
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        async with ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/") as ws:
            await ws.receive()
        await runner.cleanup()
        return seen["transport"]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        transport = runner.run(main())
    assert transport is not None and type(transport).__module__.startswith("uvloop")
    assert transport.get_write_buffer_limits()[0] > 0
