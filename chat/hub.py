"""This instance's sockets and what they are subscribed to; delivers bus messages to them.

Roles are checked here, when an event is forwarded, not only when a command arrives: a
customer socket only ever receives events of its own conversations, and never an
agent-only one (private notes, queue changes). Only authenticated sessions join the hub.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Protocol

import orjson

from chat.auth import Identity
from chat.bus.interest import Interest
from chat.bus.messages import Frame, ToAgents, ToConversation, ToUser


class Peer(Protocol):
    """What the hub needs of an authenticated session."""

    @property
    def id(self) -> str:
        """The socket's id."""

    @property
    def identity(self) -> Identity:
        """Who authenticated on it."""

    def send_text(self, text: str) -> None:
        """Queue a frame; never blocks."""

    def close_soon(self, code: int, reason: str) -> None:
        """Close the socket (from synchronous code) with a close code."""


class OnlineAgents(Protocol):
    """Who is online, owned by presence."""

    def teams_of(self, agent_id: str) -> frozenset[str] | None:
        """The teams of an online agent; None when it is not online."""


class Index:
    """Key -> the ids under it, kept small: a lone id is stored as itself, a set only from two on
    (most users have one socket, most conversations one subscriber here, most sockets one
    conversation; an idle socket must cost little)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, str | set[str]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def members(self, key: str) -> Collection[str]:
        """The ids under the key."""
        ids = self._entries.get(key, ())
        return (ids,) if isinstance(ids, str) else ids

    def add(self, key: str, member: str) -> bool:
        """File the id under the key; True when it is the key's first."""
        ids = self._entries.get(key)
        if ids is None:
            self._entries[key] = member
            return True
        if isinstance(ids, str):
            if ids != member:
                self._entries[key] = {ids, member}
        else:
            ids.add(member)
        return False

    def discard(self, key: str, member: str) -> bool:
        """Take the id from under the key; True when it was the key's last."""
        ids = self._entries.get(key)
        if ids is None:
            return False
        if isinstance(ids, str):
            if ids != member:
                return False
            del self._entries[key]
            return True
        ids.discard(member)
        if len(ids) == 1:
            self._entries[key] = next(iter(ids))
        return False

    def pop(self, key: str) -> Collection[str]:
        """The ids under the key, removed."""
        ids = self._entries.pop(key, ())
        return (ids,) if isinstance(ids, str) else ids


class Hub:
    """Local fan-out: conversation subscribers, each user's sockets, the online agents; it tells the
    bus's interest which channels its sockets need (the first socket in, the last out). Only agents
    have a user channel: what goes to a user (ToUser: an assignment) is for agents only, and a
    customer's tabs hear its conversations through the conversations' channels."""

    def __init__(self, online: OnlineAgents, interest: Interest) -> None:
        self.online = online
        self.interest = interest
        self.peers: dict[str, Peer] = {}
        self._by_conversation = Index()  # conversation id -> sockets subscribed to it
        self._by_user = Index()  # user id -> its sockets
        self._agents: set[str] = set()
        self._subscriptions = Index()  # socket -> the conversations it subscribed to
        # socket -> conversation -> its frames held back until a command's reply is sent (a resume's:
        # what it read must reach the client before the events after it); empty nearly always
        self._held: dict[str, dict[str, list[Frame]]] = {}

    def add(self, peer: Peer) -> None:
        """An authenticated session joins."""
        self.peers[peer.id] = peer
        identity = peer.identity
        if self._by_user.add(identity.user_id, peer.id) and identity.is_agent:
            self.interest.want(self.interest.user(identity.user_id))
        if identity.is_agent:
            self._agents.add(peer.id)
            self.interest.want(self.interest.agents)

    def remove(self, peer: Peer) -> None:
        """A session is gone: drop it from every index."""
        if self.peers.pop(peer.id, None) is None:
            return
        identity = peer.identity
        if self._by_user.discard(identity.user_id, peer.id) and identity.is_agent:
            self.interest.drop(self.interest.user(identity.user_id))
        if peer.id in self._agents:
            self._agents.discard(peer.id)
            if not self._agents:
                self.interest.drop(self.interest.agents)
        for cid in self._subscriptions.pop(peer.id):
            self._unlink(peer.id, cid)
        self._held.pop(peer.id, None)

    def _unlink(self, peer_id: str, conversation_id: str) -> None:
        if self._by_conversation.discard(conversation_id, peer_id):
            self.interest.drop(self.interest.conversation(conversation_id))

    def subscribe(self, peer_id: str, conversation_id: str) -> None:
        """Send this conversation's events to the socket."""
        if peer_id not in self.peers:
            return
        if self._by_conversation.add(conversation_id, peer_id):
            self.interest.want(self.interest.conversation(conversation_id))
        self._subscriptions.add(peer_id, conversation_id)

    def subscribed(self, peer_id: str, conversation_id: str) -> bool:
        """Does the socket get this conversation's events?"""
        return peer_id in self._by_conversation.members(conversation_id)

    async def listening(self, conversation_id: str) -> None:
        """Return once this instance receives the conversation's events published from now on (after
        `subscribe`; see Bus.listening): a read of its history after this misses nothing."""
        await self.interest.listening(self.interest.conversation(conversation_id))

    def unsubscribe(self, peer_id: str, conversation_id: str) -> None:
        """Stop sending this conversation's events to the socket."""
        self._subscriptions.discard(peer_id, conversation_id)
        self._unlink(peer_id, conversation_id)

    def hold(self, peer_id: str, conversation_id: str) -> None:
        """Keep the conversation's frames for this socket back until `release`."""
        if peer_id in self.peers:
            self._held.setdefault(peer_id, {}).setdefault(conversation_id, [])

    def release(self, peer_id: str, conversation_id: str, keep: Callable[[Frame], bool]) -> None:
        """Send the frames held back for the socket, in order, those `keep` accepts; stop holding."""
        held = self._held.get(peer_id)
        frames = held.pop(conversation_id, None) if held is not None else None
        if held is not None and not held:
            del self._held[peer_id]
        peer = self.peers.get(peer_id)
        for frame in frames or ():
            if peer is not None and keep(frame):
                peer.send_text(orjson.dumps(frame).decode())

    def _holds(self, peer_id: str, message: ToConversation) -> bool:
        """Is the frame kept back for this socket (and kept)?"""
        held = self._held.get(peer_id)
        frames = held.get(message.conversation_id) if held is not None else None
        if frames is None:
            return False
        frames.append(message.frame)
        return True

    def sockets_of(self, user_id: str) -> list[Peer]:
        """Every local socket of a user."""
        return [self.peers[p] for p in self._by_user.members(user_id)]

    def staff_tokens(self) -> dict[str, set[tuple[str, float | None]]]:
        """The agents and admins with a socket here, each with the role and `iat` of its sockets' tokens."""
        tokens: dict[str, set[tuple[str, float | None]]] = {}
        for pid in self._agents:
            identity = self.peers[pid].identity
            tokens.setdefault(identity.user_id, set()).add((identity.role, identity.iat))
        return tokens

    def close_user(self, user_id: str, code: int, reason: str,
                   which: Callable[[Identity], bool] = lambda _: True) -> int:
        """Close the local sockets of a user (those whose identity `which` picks); return how many."""
        peers = [peer for peer in self.sockets_of(user_id) if which(peer.identity)]
        for peer in peers:
            peer.close_soon(code, reason)
        return len(peers)

    # --- delivery, one method per kind of bus message ------------------------------------

    def to_conversation(self, message: ToConversation) -> int:
        """Subscribers of the conversation and every local tab of its customer."""
        ids = set(self._by_conversation.members(message.conversation_id))
        ids.update(self._by_user.members(message.owner))
        targets = []
        for pid in ids:
            peer = self.peers[pid]
            if message.skip is not None and peer.identity.speaker == message.skip:
                continue  # the typist's own tabs
            agent = peer.identity.is_agent
            if (agent and not message.customer_only) or (
                    not agent and not message.agents_only and peer.identity.user_id == message.owner):
                if self._held and self._holds(pid, message):
                    continue  # sent after its command's reply
                targets.append(peer)  # a customer only ever sees its own conversations
        return _send(targets, message.frame)

    def to_user(self, message: ToUser) -> int:
        """Every socket of one agent (subscribing them first when asked): only agents listen to their
        user channel, and a customer's socket never gets a ToUser, not even one published here."""
        targets = [p for p in self.sockets_of(message.user_id) if p.identity.is_agent]
        if message.subscribe:
            for peer in targets:
                self.subscribe(peer.id, message.subscribe)
        return _send(targets, message.frame)

    def to_agents(self, message: ToAgents) -> int:
        """Online agents of the team (every online agent when no team); admins get all."""
        targets = []
        for pid in self._agents:
            peer = self.peers[pid]
            teams = self.online.teams_of(peer.identity.user_id)
            if teams is not None and (message.team_id is None or message.team_id in teams or peer.identity.is_admin):
                targets.append(peer)
        return _send(targets, message.frame)


def _send(targets: Iterable[Peer], frame: Frame | None) -> int:
    """Encode the frame once and queue it on every target; return how many got it."""
    peers = list(targets)
    if not peers or frame is None:
        return 0
    text = orjson.dumps(frame).decode()
    for peer in peers:
        peer.send_text(text)
    return len(peers)
