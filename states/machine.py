"""The conversation state machine of PROTOCOL section 4: one shared AsyncMachine, thin models.

The machine is built once at import with `model=None`; a trigger is applied to a transient
model (a Conversation) through `machine.events[...]`, so no model is ever registered and
nothing is kept per conversation. Callbacks only do bookkeeping on the model: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol, Required, TypedDict, cast

from transitions import EventData, MachineError
from transitions.extensions.asyncio import AsyncMachine

from states.clock import now_iso
from states.errors import InvalidTransition

# transitions logs every refused trigger at ERROR level; a refused trigger is a normal `conflict` here
logging.getLogger("transitions").setLevel(logging.CRITICAL)


class State(StrEnum):
    """The four conversation states."""

    AI = "ai"
    HANDOFF = "handoff"
    HUMAN = "human"
    CLOSED = "closed"


class AgentType(StrEnum):
    """Who answers a conversation: the record's `agent_type`."""

    AI = "ai"
    HUMAN = "human"


class Trigger(StrEnum):
    """Every trigger of the table; anything else is refused."""

    REQUEST_HANDOFF = "request_handoff"
    ASSIGN = "assign"
    REQUEUE = "requeue"
    RELEASE = "release"
    CLOSE = "close"
    REOPEN = "reopen"


class Model(Protocol):
    """What the machine reads and changes on a conversation (states.record.Conversation)."""

    state: str
    agent_type: str
    agent_id: str | None
    team_id: str | None
    handoff_at: str | None


class TransitionRow(TypedDict, total=False):
    """One row of the transition table, as transitions takes it."""

    trigger: Required[str]
    source: Required[list[State]]
    dest: Required[State]
    conditions: list[Callable[[EventData], bool]]


def _model(event: EventData) -> Model:
    # transitions types the model as `object`; only apply_trigger's models reach the machine
    return cast(Model, event.model)


def _names_an_agent(event: EventData) -> bool:
    """`assign` needs the agent it assigns to."""
    return bool(event.kwargs.get("agent_id"))


def _changes_agent(event: EventData) -> bool:
    """Assigning a human conversation to the agent it already has is not a transition."""
    model = _model(event)
    return model.state != State.HUMAN.value or bool(event.kwargs.get("agent_id") != model.agent_id)


TRANSITIONS: list[TransitionRow] = [
    {"trigger": Trigger.REQUEST_HANDOFF.value, "source": [State.AI], "dest": State.HANDOFF},
    {
        "trigger": Trigger.ASSIGN.value,
        "source": [State.AI, State.HANDOFF, State.HUMAN],
        "dest": State.HUMAN,
        "conditions": [_names_an_agent, _changes_agent],
    },
    {"trigger": Trigger.REQUEUE.value, "source": [State.HUMAN], "dest": State.HANDOFF},
    {"trigger": Trigger.RELEASE.value, "source": [State.HUMAN, State.HANDOFF], "dest": State.AI},
    {"trigger": Trigger.CLOSE.value, "source": [State.AI, State.HANDOFF, State.HUMAN], "dest": State.CLOSED},
    {"trigger": Trigger.REOPEN.value, "source": [State.CLOSED], "dest": State.AI},
]


def _apply_effects(event: EventData) -> None:
    """Keep agent_type, agent_id, team_id and handoff_at in step with the new state."""
    model = _model(event)
    kwargs = event.kwargs
    if "team_id" in kwargs:
        model.team_id = kwargs["team_id"]
    if model.state == State.HUMAN.value:
        model.agent_type = AgentType.HUMAN.value
        model.agent_id = kwargs["agent_id"]
        model.handoff_at = None
    elif model.state == State.HANDOFF.value:
        model.agent_type = AgentType.HUMAN.value
        model.agent_id = None
        model.handoff_at = now_iso()
    elif model.state == State.AI.value:
        model.agent_type = AgentType.AI.value
        model.agent_id = None
        model.handoff_at = None
    else:  # closed keeps agent_type and agent_id as they were
        model.handoff_at = None


machine = AsyncMachine(
    model=None,
    states=State,
    transitions=TRANSITIONS,
    initial=None,
    auto_transitions=False,
    send_event=True,
    after_state_change=_apply_effects,
)


def allowed_triggers(state: str) -> list[str]:
    """The triggers the table allows from a state (guards aside)."""
    return [t["trigger"] for t in TRANSITIONS if State(state) in t["source"]]


async def apply_trigger(model: Model, trigger: str, **data: str | None) -> None:
    """Fire `trigger` on a transient model in place; raise InvalidTransition when refused."""
    state = model.state
    event = machine.events.get(trigger) if isinstance(trigger, str) else None
    if event is None:
        raise InvalidTransition(str(trigger), state, "unknown trigger")
    model.state = State(state)  # the machine names Enum states by member; the record keeps the value
    try:
        ok = await event.trigger(model, **data)
    except MachineError:
        raise InvalidTransition(trigger, state) from None
    finally:
        model.state = State(model.state).value
    if not ok:
        raise InvalidTransition(trigger, state, "a guard refused it")


def mermaid_diagram() -> str:
    """The transition table as a mermaid stateDiagram (docs/states.md is generated from it)."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.AI.value}"]
    for row in TRANSITIONS:
        for source in row["source"]:
            lines.append(f"    {State(source).value} --> {State(row['dest']).value}: {row['trigger']}")
    return "\n".join(lines) + "\n"
