"""What crosses the bus between instances: one frozen dataclass per kind, each with encode/decode.

On the wire a message is a JSON object whose `k` names its kind; `decode` returns the typed
message, and receivers dispatch on its type, never on a string field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

Frame = dict[str, Any]  # a protocol frame as the sockets receive it: {"type": ..., "data": ...}


class BusMessageError(ValueError):
    """Bytes from the bus that are not a message of a known kind."""


@dataclass(frozen=True, slots=True)
class ToConversation:
    """A frame for a conversation's subscribers and its customer's sockets (every tab)."""

    KIND: ClassVar[str] = "conversation"
    conversation_id: str
    owner: str
    frame: Frame
    agents_only: bool = False
    skip: str | None = None  # who caused it (typing: Identity.speaker), none of whose sockets gets it back
    customer_only: bool = False  # for the customer's sockets, not the agents' (csat.requested)

    def fields(self) -> dict[str, Any]:
        """The wire fields (without the kind)."""
        return {"conversation_id": self.conversation_id, "owner": self.owner, "frame": self.frame,
                "agents_only": self.agents_only, "skip": self.skip, "customer_only": self.customer_only}


@dataclass(frozen=True, slots=True)
class ToUser:
    """A frame for every socket of one agent (only agents have a user channel); `subscribe` also
    subscribes those sockets."""

    KIND: ClassVar[str] = "user"
    user_id: str
    frame: Frame | None
    subscribe: str | None = None

    def fields(self) -> dict[str, Any]:
        """The wire fields (without the kind)."""
        return {"user_id": self.user_id, "frame": self.frame, "subscribe": self.subscribe}


@dataclass(frozen=True, slots=True)
class ToAgents:
    """A frame for the online agents of a team (None: every online agent); admins get all."""

    KIND: ClassVar[str] = "agents"
    team_id: str | None
    frame: Frame

    def fields(self) -> dict[str, Any]:
        """The wire fields (without the kind)."""
        return {"team_id": self.team_id, "frame": self.frame}


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """An agent went online (with its teams) or offline/away."""

    KIND: ClassVar[str] = "presence"
    agent_id: str
    status: str
    teams: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        """The wire fields (without the kind)."""
        return {"agent_id": self.agent_id, "status": self.status, "teams": list(self.teams)}


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """An account's standing may have changed (deactivated, reactivated, another role): every instance
    forgets what it cached, and one with sockets of the user reads the account again and closes those it
    no longer admits (4403 deactivated, 4401 another role). A hint, not the standing itself: whatever order
    such messages arrive in, SQL says what is true now."""

    KIND: ClassVar[str] = "account"
    user_id: str

    def fields(self) -> dict[str, Any]:
        """The wire fields (without the kind)."""
        return {"user_id": self.user_id}


BusMessage = ToConversation | ToUser | ToAgents | PresenceChanged | AccountChanged


def encode(message: BusMessage) -> bytes:
    """The message as JSON bytes."""
    return orjson.dumps({"k": message.KIND, **message.fields()})


def _to_conversation(raw: dict[str, Any]) -> ToConversation:
    return ToConversation(raw["conversation_id"], raw["owner"], raw["frame"], bool(raw.get("agents_only")),
                          raw.get("skip"), bool(raw.get("customer_only")))


def _to_user(raw: dict[str, Any]) -> ToUser:
    return ToUser(raw["user_id"], raw.get("frame"), raw.get("subscribe"))


def _to_agents(raw: dict[str, Any]) -> ToAgents:
    return ToAgents(raw.get("team_id"), raw["frame"])


def _presence(raw: dict[str, Any]) -> PresenceChanged:
    return PresenceChanged(raw["agent_id"], raw["status"], tuple(raw.get("teams") or ()))


def _account(raw: dict[str, Any]) -> AccountChanged:
    """Also the kind older instances publish for a deactivation, "deactivated" (a rolling deploy shares one bus)."""
    return AccountChanged(raw["user_id"])


_DECODERS: dict[str, Callable[[dict[str, Any]], BusMessage]] = {
    ToConversation.KIND: _to_conversation,
    ToUser.KIND: _to_user,
    ToAgents.KIND: _to_agents,
    PresenceChanged.KIND: _presence,
    AccountChanged.KIND: _account,
    "deactivated": _account,
}


def decode(data: bytes | memoryview | str) -> BusMessage:
    """The typed message; BusMessageError for anything else."""
    try:
        raw = orjson.loads(data)
        return _DECODERS[raw["k"]](raw)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BusMessageError(f"not a bus message: {type(exc).__name__}: {exc}") from None
