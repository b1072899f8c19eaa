"""The transition table itself, on transient models (no I/O)."""

from pathlib import Path

import pytest

from states import AgentType, InvalidTransition, State, Trigger, mermaid_diagram
from states.machine import TRANSITIONS, allowed_triggers, apply_trigger, machine
from states.record import Conversation


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


def test_table_matches_protocol_section_4(expected_moves):
    pairs = {(State(s).value, row["trigger"]): State(row["dest"]).value for row in TRANSITIONS for s in row["source"]}
    assert pairs == expected_moves


def test_shared_machine_keeps_no_models():
    assert machine.models == []
    assert set(machine.events) == {t.value for t in Trigger}


@pytest.mark.parametrize("state", [s.value for s in State])
@pytest.mark.parametrize("trigger", [t.value for t in Trigger])
async def test_every_pair(state, trigger, expected_moves):
    model = conversation(state, agent_id="agent-0" if state == "human" else None)
    expected = expected_moves.get((state, trigger))
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


def test_mermaid_diagram_is_generated_from_the_table_and_committed(expected_moves):
    text = mermaid_diagram()
    for (source, trigger), dest in expected_moves.items():
        assert f"    {source} --> {dest}: {trigger}" in text
    committed = (Path(__file__).parents[2] / "docs" / "states.md").read_text()
    assert text in committed, "docs/states.md is stale: regenerate with `chat-api states diagram`"


def test_the_timer_table_is_committed_beside_the_transition_table():
    from states.timers import timer_table

    committed = (Path(__file__).parents[2] / "docs" / "states.md").read_text()
    assert timer_table() in committed, "docs/states.md is stale: paste states.timers.timer_table() into it"


def test_states_and_agent_types_read_as_their_values():
    assert [str(s) for s in State] == ["ai", "handoff", "human", "closed"]
    assert [f"{a}" for a in AgentType] == ["ai", "human"]
