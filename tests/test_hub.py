"""The hub delivers each kind of bus message to the local sessions it concerns, by role, and tells the
bus's interest which channels its sockets need."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from chat.auth import Identity
from chat.bus.interest import Interest
from chat.bus.messages import ToAgents, ToConversation, ToUser
from chat.hub import Hub

FRAME = {"type": "x", "data": {}}


@dataclass
class FakePeer:
    id: str
    identity: Identity
    got: list[dict] = field(default_factory=list)

    def send_text(self, text: str) -> None:
        self.got.append(orjson.loads(text))


class Online:
    def __init__(self, teams: dict[str, frozenset[str]]):
        self.teams = teams

    def teams_of(self, agent_id: str) -> frozenset[str] | None:
        return self.teams.get(agent_id)


def peer(pid: str, user: str, role: str = "customer") -> FakePeer:
    return FakePeer(pid, Identity(user, role))


def hub_with(*peers: FakePeer, online: dict[str, frozenset[str]] | None = None) -> Hub:
    hub = Hub(Online(online or {}), Interest("t"))
    for p in peers:
        hub.add(p)
    return hub


def test_conversation_frames_reach_subscribers_and_every_tab_of_the_owner_only():
    tab1, tab2, stranger, agent = peer("t1", "c1"), peer("t2", "c1"), peer("s", "c2"), peer("a", "a1", "agent")
    hub = hub_with(tab1, tab2, stranger, agent)
    hub.subscribe("a", "conv-1")
    hub.subscribe("s", "conv-1")  # a customer subscribed to someone else's conversation still gets nothing
    assert hub.to_conversation(ToConversation("conv-1", "c1", FRAME)) == 3
    assert (tab1.got, tab2.got, stranger.got, agent.got) == ([FRAME], [FRAME], [], [FRAME])


def test_agents_only_frames_never_reach_customers_and_skip_is_skipped():
    cust, agent1, agent2 = peer("c", "c1"), peer("a1", "a1", "agent"), peer("a2", "a2", "agent")
    hub = hub_with(cust, agent1, agent2)
    for p in (cust, agent1, agent2):
        hub.subscribe(p.id, "conv-1")
    assert hub.to_conversation(ToConversation("conv-1", "c1", FRAME, agents_only=True, skip="agent:a1")) == 1
    assert (cust.got, agent1.got, agent2.got) == ([], [], [FRAME])


def test_skip_names_a_speaker_none_of_whose_tabs_get_it_and_no_one_else_of_that_id():
    """A customer typing in one tab is not told so in its others; an agent whose id is the same string is."""
    tab1, tab2, agent = peer("t1", "u7"), peer("t2", "u7"), peer("a", "u7", "agent")
    hub = hub_with(tab1, tab2, agent)
    hub.subscribe("a", "conv-1")
    assert hub.to_conversation(ToConversation("conv-1", "u7", FRAME, skip="customer:u7")) == 1
    assert (tab1.got, tab2.got, agent.got) == ([], [], [FRAME])


def test_to_user_subscribes_its_sockets_even_without_a_frame():
    agent = peer("a", "a1", "agent")
    hub = hub_with(agent)
    assert hub.to_user(ToUser("a1", None, subscribe="conv-9")) == 0
    hub.to_conversation(ToConversation("conv-9", "c1", FRAME))
    assert agent.got == [FRAME]
    assert hub.interest.conversation("conv-9") in hub.interest.wanted


def test_to_user_never_reaches_a_customer():
    cust = peer("c", "c1")
    hub = hub_with(cust)
    assert hub.to_user(ToUser("c1", FRAME, subscribe="conv-9")) == 0
    assert cust.got == []
    assert hub.interest.conversation("conv-9") not in hub.interest.wanted


def test_a_users_sockets_come_and_go_in_any_order():
    tabs = [peer(f"t{i}", "c1") for i in range(3)]
    hub = hub_with(*tabs)
    for order in ([1, 0, 2], [2, 1, 0]):
        for i in order:
            assert {p.id for p in hub.sockets_of("c1")} == {t.id for t in tabs if t.id in hub.peers}
            hub.remove(tabs[i])
        assert hub.sockets_of("c1") == []
        for t in tabs:
            hub.add(t)
    hub.add(tabs[0])  # the same session twice is one socket
    assert sorted(p.id for p in hub.sockets_of("c1")) == ["t0", "t1", "t2"]
    assert hub.to_conversation(ToConversation("conv-1", "c1", FRAME)) == 3


def test_to_agents_goes_to_online_agents_of_the_team_and_to_online_admins():
    a1, a2, a3, boss, cust = (peer("1", "a1", "agent"), peer("2", "a2", "agent"), peer("3", "a3", "agent"),
                              peer("4", "boss", "admin"), peer("5", "c1"))
    hub = hub_with(a1, a2, a3, boss, cust,
                   online={"a1": frozenset({"billing"}), "a2": frozenset({"sales"}), "boss": frozenset()})
    assert hub.to_agents(ToAgents("billing", FRAME)) == 2  # a1 and the admin; a3 is not online
    assert [bool(p.got) for p in (a1, a2, a3, boss, cust)] == [True, False, False, True, False]
    assert hub.to_agents(ToAgents(None, FRAME)) == 3


def test_a_removed_session_leaves_every_index():
    tab = peer("t", "c1")
    hub = hub_with(tab)
    hub.subscribe("t", "conv-1")
    hub.remove(tab)
    hub.remove(tab)  # twice is harmless
    assert hub.sockets_of("c1") == []
    assert hub.to_conversation(ToConversation("conv-1", "c1", FRAME)) == 0


def test_channels_are_wanted_from_the_first_socket_to_the_last():
    interest = Interest("t")
    changes: list[tuple[str, bool]] = []
    interest.on_change(lambda channel, wanted: changes.append((channel, wanted)))
    hub = Hub(Online({}), interest)
    tab1, tab2 = peer("t1", "c1"), peer("t2", "c1")
    agent1, agent2 = peer("a1", "a1", "agent"), peer("a2", "a2", "agent")
    for p in (tab1, tab2, agent1, agent2):
        hub.add(p)
    for p in (tab1, agent1, agent2):
        hub.subscribe(p.id, "conv-1")
    # no user channel for customers: nothing goes to a customer's user channel
    assert changes == [("t:u:a1", True), ("t:agents", True), ("t:u:a2", True), ("t:c:conv-1", True)]
    changes.clear()
    hub.remove(tab1)
    hub.unsubscribe("a1", "conv-1")
    hub.remove(agent1)
    assert changes == [("t:u:a1", False)]  # c1 has another tab, conv-1 another subscriber, agents another agent
    changes.clear()
    hub.remove(agent2)
    hub.remove(tab2)
    assert changes == [("t:u:a2", False), ("t:agents", False), ("t:c:conv-1", False)]
    assert interest.wanted == {"t:presence"}


def test_held_frames_wait_for_release_and_go_in_order_as_kept():
    cust, other_tab, agent = peer("c", "c1"), peer("c2", "c1"), peer("a", "a1", "agent")
    hub = hub_with(cust, other_tab, agent)
    hub.subscribe("c", "conv-1")
    hub.hold("c", "conv-1")
    frames = [{"type": "ai.delta", "data": {"turn_id": "t", "index": i}} for i in range(3)]
    for frame in frames:
        hub.to_conversation(ToConversation("conv-1", "c1", frame))
    hub.to_conversation(ToConversation("conv-1", "c1", {"type": "note", "data": {}}, agents_only=True))
    hub.to_conversation(ToConversation("conv-2", "c1", FRAME))  # another conversation is not held
    assert cust.got == [FRAME] and other_tab.got == [*frames, FRAME] and len(agent.got) == 0
    hub.release("c", "conv-1", lambda f: f["data"].get("index", 0) > 0)
    assert cust.got == [FRAME, frames[1], frames[2]]  # the agents-only note was never held for it
    hub.to_conversation(ToConversation("conv-1", "c1", FRAME))
    assert cust.got[-1] == FRAME  # no longer held


def test_customer_only_frames_skip_the_agents():
    cust, agent = peer("c", "c1"), peer("a", "a1", "agent")
    hub = hub_with(cust, agent)
    hub.subscribe("a", "conv-1")
    assert hub.to_conversation(ToConversation("conv-1", "c1", FRAME, customer_only=True)) == 1
    assert (cust.got, agent.got) == ([FRAME], [])
