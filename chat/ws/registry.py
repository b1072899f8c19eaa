"""Commands are registered with their marshmallow schema and the roles that may send them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from marshmallow import RAISE, Schema, fields

from chat.auth import ROLES

if TYPE_CHECKING:
    from chat.ws.commands import CommandContext

AGENT_ROLES = ("agent", "admin")

# handle_<command>(ctx, data): `data` is what the command's schema loaded; the reply's data, or None
Handler = Callable[["CommandContext", dict[str, Any]], Awaitable[dict[str, Any] | None]]


class StrictBoolean(fields.Boolean):
    """Only JSON true and false (no "yes", 1 or "on")."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> bool:
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
    handler: Handler
    roles: tuple[str, ...]

    def __call__(self, ctx: CommandContext, data: dict[str, Any]) -> Awaitable[dict[str, Any] | None]:
        """Run the handler (the decorated name stays callable as the handler was)."""
        return self.handler(ctx, data)


def command(type_: str, schema: type[CommandSchema], roles: tuple[str, ...] = ROLES) -> Callable[[Handler], Command]:
    """Make a handler the command `type_`; its frame is validated by `schema` first."""

    def mark(handler: Handler) -> Command:
        return Command(type_, schema(), handler, roles)

    return mark


class Registry:
    """Every command the socket understands."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(self, *commands: Command) -> None:
        """Register handlers made commands with @command."""
        for cmd in commands:
            if cmd.type in self.commands:
                raise ValueError(f"command {cmd.type} registered twice")
            self.commands[cmd.type] = cmd
