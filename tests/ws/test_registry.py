"""The fast loader compiled from each command's schema: it only ever accepts what marshmallow
accepts, loaded the same; anything else (every error) is left to marshmallow."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields, validate, validates_schema

from chat.app import command_registry
from chat.ws.registry import CommandSchema, fast_loader

REGISTRY = command_registry()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=70), st.sampled_from(["", "x" * 64, "x" * 65, "online", "away"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def typed(field):
    """Values of the field's own type, around its limits (so valid frames come up often)."""
    if isinstance(field, fields.Boolean):
        return st.booleans()
    if isinstance(field, fields.Integer):
        return st.integers(min_value=-2, max_value=2**31 + 1)
    if isinstance(field, fields.Dict):
        return st.dictionaries(st.text(max_size=3), json_values, max_size=3)
    return st.one_of(st.text(max_size=66), st.sampled_from(["online", "away", "", "x" * 64, "x" * 65, "x" * 256]))


def bodies(schema):
    own = {name: typed(f) for name, f in schema.load_fields.items()}
    anything = {name: json_values for name in schema.load_fields}
    return st.one_of(
        st.fixed_dictionaries(own, optional={"type": st.text(max_size=3), "id": st.integers()}),
        st.fixed_dictionaries({}, optional={**own, "extra": json_values}),
        st.fixed_dictionaries({}, optional={**anything, "type": json_values}),
    )


@pytest.mark.parametrize("type_", sorted(REGISTRY.commands))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_fast_loader_accepts_only_what_the_schema_loads_the_same(type_, data):
    cmd = REGISTRY.commands[type_]
    if cmd.fast is None:
        return
    body = data.draw(bodies(cmd.schema))
    fast = cmd.fast(body)
    payload = {k: v for k, v in body.items() if k not in ("type", "id")}
    try:
        loaded = cmd.schema.load(payload)
    except ValidationError:
        assert fast is None
    else:
        assert fast is None or fast == loaded


def test_the_frequent_commands_have_a_fast_loader():
    for type_ in ("message.send", "typing", "conversation.resume", "conversation.start", "presence.set"):
        assert REGISTRY.commands[type_].fast is not None, type_
    cmd = REGISTRY.commands["message.send"]
    frame = {"type": "message.send", "id": 3, "conversation_id": "c-1", "client_msg_id": "m-1", "content": "hi"}
    assert cmd.load(frame) == {"conversation_id": "c-1", "client_msg_id": "m-1", "content": "hi", "private": False}


def test_a_schema_with_a_hook_or_an_unknown_field_type_is_left_to_marshmallow():
    class Hooked(CommandSchema):
        a = fields.String()

        @validates_schema
        def _check(self, data, **_):
            raise ValidationError("never")

    class OtherField(CommandSchema):
        when = fields.DateTime()

    class Known(CommandSchema):
        a = fields.String(required=True, validate=validate.Length(max=2))

    assert fast_loader(Hooked()) is None
    assert fast_loader(OtherField()) is None
    load = fast_loader(Known())
    assert load is not None
    assert load({"a": "ok"}) == {"a": "ok"}
    assert load({"a": "too long"}) is None and load({}) is None and load({"a": "ok", "b": 1}) is None
