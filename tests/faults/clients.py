"""Real WebSocket clients that survive faults: they reconnect, resume by seq and resend.

A `Peer` owns one socket at a time: a reader task resolves each command's future by `id` and
hands pushed events to the role's handler. When the socket dies, every pending command fails
with `Disconnected` and `call` reconnects (rotating over the instances' URLs, with a short
capped backoff as a real client would) and sends the command again. `unavailable`/`internal`
replies are retried the same way; other errors are returned to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CALL_TIMEOUT_S = 15.0
RETRYABLE = ("unavailable", "internal")
CALL_ATTEMPTS = 40


class Disconnected(Exception):
    """The socket closed before the reply came."""


class Peer:
    """One user's socket with reconnect; subclasses handle events and the reconnect hook."""

    _ids = itertools.count(1)

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], token: str):
        self.http, self.urls, self.token = http, urls, token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.stay_connected = False
        self._closing = False
        self._revival: asyncio.Task[None] | None = None
        self.connects = 0
        self.retried = 0  # `unavailable`/`internal` replies retried
        self._url_index = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self.changed = asyncio.Event()

    async def connect(self) -> None:
        """Open a socket (rotating over the URLs on failure) and run the reconnect hook."""
        async with self._connecting:
            if self.ws is not None and not self.ws.closed:
                return
            backoff = 0.05
            while True:
                url = self.urls[self._url_index % len(self.urls)]
                try:
                    self.ws = await self.http.ws_connect(f"{url}/ws?token={self.token}", heartbeat=None,
                                                         timeout=aiohttp.ClientWSTimeout(ws_close=2))
                    break
                except (TimeoutError, aiohttp.ClientError, OSError):
                    self._url_index += 1
                    # a client's reconnect backoff (jittered, capped), not a wait for a condition in the test
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, 1.0)
            self._reader = asyncio.create_task(self._read(self.ws))
            self.connects += 1
        await self.on_connected()

    async def on_connected(self) -> None:
        """Hook: what the client does after every (re)connect."""

    def on_event(self, frame: dict[str, Any]) -> None:
        """Hook: a pushed event."""

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = msg.json()
                future = self._pending.pop(frame.get("id"), None) if "id" in frame else None
                if future is not None and not future.done():
                    future.set_result(frame)
                else:
                    self.on_event(frame)
                    self.changed.set()
        except (aiohttp.ClientError, OSError, ValueError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(Disconnected())
            self._pending.clear()
            self.changed.set()
            if self.stay_connected and not self._closing:
                self._revival = asyncio.create_task(self._revive())

    async def _revive(self) -> None:
        """Reconnect at once after a drop (a console does; a customer widget reconnects on its next call)."""
        for _ in range(CALL_ATTEMPTS):
            try:
                await self.connect()
                return
            except Disconnected:
                await asyncio.sleep(0.1)  # the client's retry backoff

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """One attempt on the current socket; raises Disconnected."""
        ws = self.ws
        if ws is None or ws.closed:
            raise Disconnected()
        frame_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        try:
            await ws.send_json({"type": type_, "id": frame_id, **fields})
            return await asyncio.wait_for(future, CALL_TIMEOUT_S)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            # the peer is gone, though the reader may not have seen it yet: the next connect() opens a new
            # socket (with its backoff) instead of finding this one open and failing again at once
            with contextlib.suppress(Exception):
                await ws.close()
            raise Disconnected() from exc
        except TimeoutError as exc:
            await ws.close()  # a reply that never comes: treat the socket as dead
            raise Disconnected() from exc
        finally:
            self._pending.pop(frame_id, None)

    async def request_retrying(self, type_: str, **fields: Any) -> dict[str, Any]:
        """`request` again on `unavailable`/`internal` (same socket), as a client told to try again does."""
        reply: dict[str, Any] = {}
        for attempt in range(CALL_ATTEMPTS):
            reply = await self.request(type_, **fields)
            if reply.get("type") != "error" or reply.get("code") not in RETRYABLE:
                return reply
            self.retried += 1
            await asyncio.sleep(0.05 * min(attempt + 1, 10))  # the client's retry backoff
        return reply

    async def call(self, type_: str, **fields: Any) -> dict[str, Any]:
        """The command's reply, reconnecting and retrying through socket loss and `unavailable`."""
        reply: dict[str, Any] = {}
        for attempt in range(CALL_ATTEMPTS):
            try:
                await self.connect()
                reply = await self.request(type_, **fields)
            except Disconnected:
                self._url_index += 1 if attempt else 0
                continue
            if reply.get("type") == "error" and reply.get("code") in RETRYABLE:
                self.retried += 1
                await asyncio.sleep(0.05 * min(attempt + 1, 10))  # the client's retry backoff
                continue
            return reply
        return reply

    @property
    def reconnects(self) -> int:
        """Sockets opened after the first."""
        return max(0, self.connects - 1)

    async def reconnect(self) -> None:
        """Close the socket and open a new one (a console reload)."""
        await self.close()
        self._closing = False
        await self.connect()

    async def close(self) -> None:
        """Close the socket and stop the reader (no reconnect)."""
        self._closing = True
        if self._revival is not None:
            self._revival.cancel()
            await asyncio.gather(self._revival, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    @property
    def connected(self) -> bool:
        """Whether a socket is open now."""
        return self.ws is not None and not self.ws.closed


@dataclass
class Ledger:
    """What one customer sent and was told."""

    user: str
    conversation_id: str | None = None
    sent: set[str] = field(default_factory=set)
    acked: dict[str, int] = field(default_factory=dict)  # client_msg_id -> seq in the ack
    seen: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> M, every way it arrived
    conversation: dict[str, Any] = field(default_factory=dict)  # the newest C (by version)
    refused: list[str] = field(default_factory=list)


class Customer(Peer):
    """A customer with one conversation: starts it once, sends, resumes by seq on every reconnect."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], token: str, user: str):
        super().__init__(http, urls, token)
        self.ledger = Ledger(user)

    @property
    def resume_after(self) -> int:
        """The end of the contiguous run of seqs seen (messages before it need not come again)."""
        seq = 0
        visible = self.ledger.seen
        while seq + 1 in visible:  # the suite writes no private notes, so a customer sees every seq
            seq += 1
        return seq

    async def on_connected(self) -> None:
        if self.ledger.conversation_id is None:
            return
        reply = await self.request_retrying("conversation.resume", conversation_id=self.ledger.conversation_id,
                                            after_seq=self.resume_after)
        if reply.get("type") != "result":
            self.ledger.refused.append(f"resume after {self.resume_after}: {reply}")
            return
        self._take_conversation(reply["data"]["conversation"])
        for message in reply["data"]["messages"]:
            self.ledger.seen[message["seq"]] = message
        self.changed.set()

    def on_event(self, frame: dict[str, Any]) -> None:
        data = frame.get("data") or {}
        if frame.get("type") == "message.created" and data.get("conversation_id") == self.ledger.conversation_id:
            self.ledger.seen[data["message"]["seq"]] = data["message"]
        elif frame.get("type") == "conversation.updated":
            self._take_conversation(data["conversation"])

    def _take_conversation(self, conversation: dict[str, Any]) -> None:
        if conversation.get("version", -1) >= self.ledger.conversation.get("version", -1):
            self.ledger.conversation = conversation

    async def start(self, metadata: dict[str, Any] | None = None) -> bool:
        """conversation.start, retried like any call (a start whose reply was lost may leave a second,
        empty conversation: the books walk every conversation in SQL, so it must be movable too)."""
        reply = await self.call("conversation.start", metadata=metadata or {})
        if reply.get("type") != "result":
            self.ledger.refused.append(f"start: {reply}")
            return False
        self.ledger.conversation_id = reply["data"]["conversation"]["id"]
        self._take_conversation(reply["data"]["conversation"])
        return True

    async def send(self, client_msg_id: str, content: str) -> bool:
        """message.send until acknowledged (the same client_msg_id on every retry)."""
        assert self.ledger.conversation_id is not None
        self.ledger.sent.add(client_msg_id)
        reply = await self.call("message.send", conversation_id=self.ledger.conversation_id,
                                client_msg_id=client_msg_id, content=content)
        if reply.get("type") != "result":
            self.ledger.refused.append(f"send {client_msg_id}: {reply}")
            return False
        message = reply["data"]["message"]
        self.ledger.acked[client_msg_id] = message["seq"]
        self.ledger.seen[message["seq"]] = message
        return True

    async def handoff(self) -> None:
        """handoff.request (a conflict is fine: the state moved meanwhile)."""
        await self.call("handoff.request", conversation_id=self.ledger.conversation_id)

    def settled(self) -> bool:
        """Closed, or in `ai` with an AI reply after the newest customer message."""
        state = self.ledger.conversation.get("state")
        if state == "closed":
            return True
        if state != "ai":
            return False
        last_customer = max((s for s, m in self.ledger.seen.items() if m["sender_type"] == "customer"), default=0)
        last_ai = max((s for s, m in self.ledger.seen.items() if m["sender_type"] == "ai"), default=0)
        return last_ai > last_customer

    def view(self) -> str:
        """What this customer believes: the state and version, and the seqs it has seen."""
        c, seen = self.ledger.conversation, self.ledger.seen
        kinds = {s: m["sender_type"][0] for s, m in sorted(seen.items())}
        return f"{self.ledger.user} {c.get('state')} v{c.get('version')} seen {''.join(kinds.values())[-12:]}"

    async def settle(self, timeout_s: float) -> bool:
        """Wait (on the socket's events) until settled; reconnect if the socket dies meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.settled():
            left = deadline - loop.time()
            if left <= 0:
                return False
            if self.ws is None or self.ws.closed:
                await self.call("ping")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 2.0))
            except TimeoutError:
                await self.call("ping")  # a dead socket that never said so is found by the ping
        return True

    async def final_resume(self) -> None:
        """Resume from the contiguous prefix, as a client does after a reconnect."""
        await self.connect()
        await self.on_connected()


class Agent(Peer):
    """An agent console: online on every (re)connect; in drain mode it closes what it holds."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], token: str, user: str):
        super().__init__(http, urls, token)
        self.stay_connected = True
        self.user = user
        self.assigned: set[str] = set()
        self.draining = False
        self.closed: set[str] = set()
        self.close_failures: list[str] = []
        self._work: asyncio.Queue[str] = asyncio.Queue()

    async def on_connected(self) -> None:
        await self.request("presence.set", status="online")

    def on_event(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "conversation.assigned":
            cid = frame["data"]["conversation"]["id"]
            self.assigned.add(cid)
            if self.draining:
                self._work.put_nowait(cid)

    async def drain(self, held: list[str], stop: asyncio.Event) -> None:
        """Close every conversation held (and each one routed to it) until told to stop."""
        self.draining = True
        for cid in {*held, *self.assigned}:
            self._work.put_nowait(cid)
        while not stop.is_set():
            getter = asyncio.ensure_future(self._work.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                break
            cid = getter.result()
            if cid in self.closed:
                continue
            reply = await self.call("conversation.close", conversation_id=cid)
            if reply.get("type") == "result":
                self.closed.add(cid)
            else:
                self.close_failures.append(f"{cid}: {reply.get('code')}")
