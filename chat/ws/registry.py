"""Commands are registered with their marshmallow schema and the roles that may send them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from marshmallow import RAISE, Schema, fields

from chat.auth import ROLES

AGENT_ROLES = ("agent", "admin")


class StrictBoolean(fields.Boolean):
    """Only JSON true and false (no "yes", 1 or "on")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class CommandSchema(Schema):
    """Base of every command schema: unknown fields are an error."""

    class Meta:
        unknown = RAISE


@dataclass(frozen=True)
class Command:
    """A registered command: its type, schema, handler and allowed roles."""

    type: str
    schema: Schema
    handler: Callable[..., Awaitable[dict | None]]
    roles: tuple[str, ...]


def command(type_: str, schema: type[CommandSchema], roles: tuple[str, ...] = ROLES):
    """Mark a handler as the command `type_`; its frame is validated by `schema` first."""

    def mark(handler):
        handler.command = Command(type_, schema(), handler, roles)
        return handler

    return mark


class Registry:
    """Every command the socket understands."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(self, *handlers) -> None:
        """Register handlers marked with @command."""
        for handler in handlers:
            cmd: Command = handler.command
            if cmd.type in self.commands:
                raise ValueError(f"command {cmd.type} registered twice")
            self.commands[cmd.type] = cmd


def default_registry() -> Registry:
    """The registry with every command module registered, one explicit call each."""
    from chat.ws.commands import agent, conversation

    registry = Registry()
    conversation.register(registry)
    agent.register(registry)
    return registry
