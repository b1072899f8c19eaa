"""The transition table itself, on transient models (no I/O)."""

import pytest

from states import InvalidTransition, State, Trigger, mermaid_diagram
from states.machine import TRANSITIONS, allowed_triggers, apply_trigger, machine
from states.record import Conversation

EXPECTED = {
    ("ai", "request_handoff"): "handoff",
    ("ai", "assign"): "human",
    ("handoff", "assign"): "human",
    ("human", "assign"): "human",
    ("human", "requeue"): "handoff",
    ("human", "release"): "ai",
    ("handoff", "release"): "ai",
    ("ai", "close"): "closed",
    ("handoff", "close"): "closed",
    ("human", "close"): "closed",
    ("closed", "reopen"): "ai",
}


def conversation(state: str, agent_id: str | None = None) -> Conversation:
    agent_type = "ai" if state == "ai" else "human"
    return Conversation(
        id="c1",
        user_id="u1",
        agent_type=agent_type,
        created_at="2024-01-01T10:00:00Z",
        updated_at="2024-01-01T10:00:00Z",
        state=state,
        agent_id=agent_id,
    )


def test_table_matches_protocol_section_4():
    pairs = {(State(s).value, row["trigger"]): State(row["dest"]).value for row in TRANSITIONS for s in row["source"]}
    assert pairs == EXPECTED


def test_shared_machine_keeps_no_models():
    assert machine.models == []
    assert set(machine.events) == {t.value for t in Trigger}


@pytest.mark.parametrize("state", [s.value for s in State])
@pytest.mark.parametrize("trigger", [t.value for t in Trigger])
async def test_every_pair(state, trigger):
    model = conversation(state, agent_id="agent-0" if state == "human" else None)
    expected = EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(InvalidTransition):
            await apply_trigger(model, trigger, agent_id="agent-1")
        assert model.state == state
    else:
        await apply_trigger(model, trigger, agent_id="agent-1")
        assert model.state == expected
    assert trigger in allowed_triggers(state) or expected is None


async def test_assign_needs_an_agent_and_a_change():
    model = conversation("handoff")
    with pytest.raises(InvalidTransition):
        await apply_trigger(model, "assign")
    assert model.state == "handoff"
    human = conversation("human", agent_id="a1")
    with pytest.raises(InvalidTransition):
        await apply_trigger(human, "assign", agent_id="a1")
    await apply_trigger(human, "assign", agent_id="a2")
    assert human.agent_id == "a2"


async def test_effects_on_agent_fields():
    model = conversation("ai")
    await apply_trigger(model, "request_handoff")
    assert (model.agent_type, model.agent_id, model.handoff_at is not None) == ("human", None, True)
    await apply_trigger(model, "assign", agent_id="a1")
    assert (model.state, model.agent_type, model.agent_id, model.handoff_at) == ("human", "human", "a1", None)
    await apply_trigger(model, "requeue", team_id="t1")
    assert (model.state, model.agent_id, model.team_id) == ("handoff", None, "t1")
    await apply_trigger(model, "assign", agent_id="a2")
    await apply_trigger(model, "close")
    assert (model.state, model.agent_type, model.agent_id) == ("closed", "human", "a2")  # closed keeps them
    await apply_trigger(model, "reopen")
    assert (model.state, model.agent_type, model.agent_id) == ("ai", "ai", None)


async def test_unknown_trigger_is_refused():
    model = conversation("ai")
    with pytest.raises(InvalidTransition):
        await apply_trigger(model, "explode")
    assert model.state == "ai"


def test_mermaid_diagram_is_generated_from_the_table_and_committed():
    text = mermaid_diagram()
    for (source, trigger), dest in EXPECTED.items():
        assert f"    {source} --> {dest}: {trigger}" in text
    from pathlib import Path

    committed = (Path(__file__).parents[2] / "docs" / "states.md").read_text()
    assert text in committed, "docs/states.md is stale: regenerate with `chat-api states diagram`"
