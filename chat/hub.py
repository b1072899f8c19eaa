"""This instance's sockets and what they are subscribed to; routes bus envelopes to them.

Roles are checked here, when an event is forwarded, not only when a command arrives: a
customer socket only ever receives events of its own conversations, and never an
agent-only one (private notes, queue changes).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

import orjson

from chat.auth import Identity


class Peer(Protocol):
    """What the hub needs of a connection."""

    id: str
    identity: Identity | None

    def send_text(self, text: str) -> None:
        """Queue a frame; never blocks."""


class Hub:
    """Local fan-out: conversation subscribers, a user's sockets, online agents."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self._by_conversation: dict[str, set[str]] = defaultdict(set)
        self._by_user: dict[str, set[str]] = defaultdict(set)
        self._subscriptions: dict[str, set[str]] = defaultdict(set)
        self.online_agents: dict[str, set[str]] = {}  # online agent (any instance) -> its teams

    def add(self, peer: Peer) -> None:
        """An authenticated socket joins."""
        self.peers[peer.id] = peer
        self._by_user[peer.identity.user_id].add(peer.id)

    def remove(self, peer: Peer) -> None:
        """A socket is gone: drop it from every index."""
        self.peers.pop(peer.id, None)
        if peer.identity is not None:
            users = self._by_user.get(peer.identity.user_id)
            if users is not None:
                users.discard(peer.id)
                if not users:
                    del self._by_user[peer.identity.user_id]
        for cid in self._subscriptions.pop(peer.id, ()):
            self._unlink(peer.id, cid)

    def _unlink(self, peer_id: str, conversation_id: str) -> None:
        subs = self._by_conversation.get(conversation_id)
        if subs is not None:
            subs.discard(peer_id)
            if not subs:
                del self._by_conversation[conversation_id]

    def subscribe(self, peer_id: str, conversation_id: str) -> None:
        """Send this conversation's events to the socket."""
        if peer_id in self.peers:
            self._by_conversation[conversation_id].add(peer_id)
            self._subscriptions[peer_id].add(conversation_id)

    def unsubscribe(self, peer_id: str, conversation_id: str) -> None:
        """Stop sending this conversation's events to the socket."""
        self._subscriptions.get(peer_id, set()).discard(conversation_id)
        self._unlink(peer_id, conversation_id)

    def sockets_of(self, user_id: str) -> list[Peer]:
        """Every local socket of a user."""
        return [self.peers[p] for p in self._by_user.get(user_id, ()) if p in self.peers]

    def deliver(self, envelope: dict) -> int:
        """Route one bus envelope to the local sockets it concerns; return how many got it."""
        to = envelope["to"]
        if to == "conversation":
            targets = self._conversation_targets(envelope)
        elif to == "user":
            targets = [p for p in self.sockets_of(envelope["user_id"]) if self._role_ok(p, envelope)]
            cid = envelope.get("subscribe")
            if cid:
                for peer in targets:
                    self.subscribe(peer.id, cid)
        elif to == "agents":
            team = envelope.get("team_id")
            targets = [
                p
                for p in self.peers.values()
                if p.identity.is_agent
                and p.identity.user_id in self.online_agents
                and (team is None or team in self.online_agents[p.identity.user_id] or p.identity.is_admin)
            ]
        elif to == "presence":
            if envelope["status"] == "online":
                self.online_agents[envelope["agent_id"]] = set(envelope.get("teams") or ())
            else:
                self.online_agents.pop(envelope["agent_id"], None)
            return 0
        else:
            return 0
        if not targets or envelope.get("frame") is None:
            return 0
        text = orjson.dumps(envelope["frame"]).decode()
        for peer in targets:
            peer.send_text(text)
        return len(targets)

    @staticmethod
    def _role_ok(peer: Peer, envelope: dict) -> bool:
        return not envelope.get("agents_only") or peer.identity.is_agent

    def _conversation_targets(self, envelope: dict) -> list[Peer]:
        cid, owner, skip = envelope["conversation_id"], envelope.get("owner"), envelope.get("skip")
        ids = set(self._by_conversation.get(cid, ()))
        if owner:
            ids |= self._by_user.get(owner, set())  # every tab of the customer
        out = []
        for pid in ids:
            peer = self.peers.get(pid)
            if peer is None or pid == skip or not self._role_ok(peer, envelope):
                continue
            if not peer.identity.is_agent and peer.identity.user_id != owner:
                continue  # a customer only ever sees its own conversations
            out.append(peer)
        return out
