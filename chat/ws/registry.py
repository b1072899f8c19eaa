"""Commands are registered with their marshmallow schema and the roles that may send them.

The schema is the one statement of what a command accepts. Loading it costs more than the rest of
a `message.send`, so each schema is also compiled (`fast_loader`) into a plain function that
accepts the common case: the same fields, the same type checks, the fields' own validators. It
only ever accepts; whatever it does not accept (any error, a field or hook it does not know) is
loaded by marshmallow, which gives the error and its `details` as it always did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing

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


FRAME_KEYS = ("type", "id")  # every frame's own keys, not the command's fields
FastLoader = Callable[[Mapping[str, Any]], dict[str, Any] | None]


_REFUSED: Any = object()  # what the fast loader does not accept as it is


def _kind(f: fields.Field[Any]) -> Callable[[Any], Any] | None:
    """The type check and conversion of a field the fast loader knows (None: it does not know it)."""
    if type(f) is fields.String:
        return lambda v: v if type(v) is str else _REFUSED
    if type(f) is fields.Integer and f.strict:
        return lambda v: v if type(v) is int else _REFUSED  # strict: no float, no string, no bool
    if type(f) is StrictBoolean:
        return lambda v: v if type(v) is bool else _REFUSED
    if type(f) is fields.Dict and f.key_field is None and f.value_field is None:
        return lambda v: dict(v) if isinstance(v, dict) else _REFUSED
    return None


def _field_loader(name: str, f: fields.Field[Any]) -> Callable[[Mapping[str, Any]], Any] | None:
    """The field's value in a frame as marshmallow loads it, or _REFUSED; None for a field it does not know."""
    convert = _kind(f)
    if convert is None or f.data_key not in (None, name) or f.attribute not in (None, name):
        return None
    required, allow_none, default, validators = f.required, f.allow_none, f.load_default, tuple(f.validators)

    def value_of(body: Mapping[str, Any]) -> Any:
        value = body.get(name, missing)
        if value is missing:
            return _REFUSED if required else default() if callable(default) else default
        if value is None:
            return None if allow_none else _REFUSED
        value = convert(value)
        if value is _REFUSED:
            return _REFUSED
        try:
            for check in validators:
                check(value)
        except ValidationError:
            return _REFUSED
        return value

    return value_of


def fast_loader(schema: Schema) -> FastLoader | None:
    """`schema.load` for the frames it accepts as they are (None for any other: load it with marshmallow);
    None when the schema has something the fast loader does not know (a hook, another field type)."""
    hooked = any(hasattr(getattr(type(schema), name, None), "__marshmallow_hook__") for name in dir(type(schema)))
    if hooked or schema.unknown != RAISE:
        return None
    loaders = [(name, _field_loader(name, f)) for name, f in schema.load_fields.items()]
    if any(value_of is None for _, value_of in loaders):
        return None
    getters = [(name, value_of) for name, value_of in loaders if value_of is not None]
    allowed = frozenset(schema.load_fields) | set(FRAME_KEYS)

    def load(body: Mapping[str, Any]) -> dict[str, Any] | None:
        if not allowed.issuperset(body):
            return None
        data: dict[str, Any] = {}
        for name, value_of in getters:
            value = value_of(body)
            if value is _REFUSED:
                return None
            data[name] = value
        return data

    return load


@dataclass(frozen=True)
class Command:
    """A registered command: its type, schema, handler and allowed roles."""

    type: str
    schema: Schema
    handler: Handler
    roles: tuple[str, ...]
    fast: FastLoader | None = field(default=None, compare=False, repr=False)

    def load(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The frame's fields as the schema loads them; ValidationError (from the schema) when invalid."""
        if self.fast is not None:
            data = self.fast(body)
            if data is not None:
                return data
        loaded: dict[str, Any] = self.schema.load({k: v for k, v in body.items() if k not in FRAME_KEYS})
        return loaded

    def __call__(self, ctx: CommandContext, data: dict[str, Any]) -> Awaitable[dict[str, Any] | None]:
        """Run the handler (the decorated name stays callable as the handler was)."""
        return self.handler(ctx, data)


def command(type_: str, schema: type[CommandSchema], roles: tuple[str, ...] = ROLES) -> Callable[[Handler], Command]:
    """Make a handler the command `type_`; its frame is validated by `schema` first."""

    def mark(handler: Handler) -> Command:
        instance = schema()
        return Command(type_, instance, handler, roles, fast_loader(instance))

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
