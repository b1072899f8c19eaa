"""This instance's sockets and what they are subscribed to; delivers bus messages to them.

Roles are checked here, when an event is forwarded, not only when a command arrives: a
customer socket only ever receives events of its own conversations, and never an
agent-only one (private notes, queue changes). Only authenticated sessions join the hub.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
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


class OnlineAgents(Protocol):
    """Who is online, owned by presence."""

    def teams_of(self, agent_id: str) -> frozenset[str] | None:
        """The teams of an online agent; None when it is not online."""


class Hub:
    """Local fan-out: conversation subscribers, each user's sockets, the online agents; it tells the
    bus's interest which channels its sockets need (the first socket in, the last out)."""

    def __init__(self, online: OnlineAgents, interest: Interest) -> None:
        self.online = online
        self.interest = interest
        self.peers: dict[str, Peer] = {}
        self._by_conversation: dict[str, set[str]] = {}  # conversation id -> sockets subscribed to it
        self._by_user: dict[str, set[str]] = {}
        self._agents: set[str] = set()
        self._subscriptions: dict[str, set[str]] = defaultdict(set)

    def add(self, peer: Peer) -> None:
        """An authenticated session joins."""
        self.peers[peer.id] = peer
        user_id = peer.identity.user_id
        if user_id not in self._by_user:
            self._by_user[user_id] = set()
            self.interest.want(self.interest.user(user_id))
        self._by_user[user_id].add(peer.id)
        if peer.identity.is_agent:
            self._agents.add(peer.id)
            self.interest.want(self.interest.agents)

    def remove(self, peer: Peer) -> None:
        """A session is gone: drop it from every index."""
        if self.peers.pop(peer.id, None) is None:
            return
        user_id = peer.identity.user_id
        users = self._by_user.get(user_id)
        if users is not None:
            users.discard(peer.id)
            if not users:
                del self._by_user[user_id]
                self.interest.drop(self.interest.user(user_id))
        if peer.id in self._agents:
            self._agents.discard(peer.id)
            if not self._agents:
                self.interest.drop(self.interest.agents)
        for cid in self._subscriptions.pop(peer.id, ()):
            self._unlink(peer.id, cid)

    def _unlink(self, peer_id: str, conversation_id: str) -> None:
        subs = self._by_conversation.get(conversation_id)
        if subs is not None and peer_id in subs:
            subs.discard(peer_id)
            if not subs:
                del self._by_conversation[conversation_id]
                self.interest.drop(self.interest.conversation(conversation_id))

    def subscribe(self, peer_id: str, conversation_id: str) -> None:
        """Send this conversation's events to the socket."""
        if peer_id not in self.peers:
            return
        subs = self._by_conversation.get(conversation_id)
        if subs is None:
            subs = self._by_conversation[conversation_id] = set()
            self.interest.want(self.interest.conversation(conversation_id))
        subs.add(peer_id)
        self._subscriptions[peer_id].add(conversation_id)

    async def listening(self, conversation_id: str) -> None:
        """Return once this instance receives the conversation's events published from now on (after
        `subscribe`; see Bus.listening): a read of its history after this misses nothing."""
        await self.interest.listening(self.interest.conversation(conversation_id))

    def unsubscribe(self, peer_id: str, conversation_id: str) -> None:
        """Stop sending this conversation's events to the socket."""
        self._subscriptions.get(peer_id, set()).discard(conversation_id)
        self._unlink(peer_id, conversation_id)

    def sockets_of(self, user_id: str) -> list[Peer]:
        """Every local socket of a user."""
        return [self.peers[p] for p in self._by_user.get(user_id, ())]

    # --- delivery, one method per kind of bus message ------------------------------------

    def to_conversation(self, message: ToConversation) -> int:
        """Subscribers of the conversation and every local tab of its customer."""
        ids = set(self._by_conversation.get(message.conversation_id, ()))
        ids |= self._by_user.get(message.owner, set())
        targets = []
        for pid in ids:
            peer = self.peers[pid]
            if pid == message.skip:
                continue
            if peer.identity.is_agent or (not message.agents_only and peer.identity.user_id == message.owner):
                targets.append(peer)  # a customer only ever sees its own conversations
        return _send(targets, message.frame)

    def to_user(self, message: ToUser) -> int:
        """Every socket of one user (subscribing them first when asked)."""
        targets = [p for p in self.sockets_of(message.user_id) if p.identity.is_agent or not message.agents_only]
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
