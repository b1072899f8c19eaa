"""Pieces of the statistics (the figures themselves: tests/api/test_stats.py, worked out by hand)."""

import uuid

from chat.store.stats import Window, p90_seconds


def test_the_window_and_the_team_scope():
    assert Window(None, None, None).scoped("c.created_ms") == ("", [])
    assert Window(5, 9, None).on("e.created_ms") == (" AND e.created_ms >= %s AND e.created_ms < %s", [5, 9])
    assert Window(None, 9, "t").scoped("m.created_ms") == (" AND m.created_ms < %s AND c.team_id = %s", [9, "t"])


def test_p90_is_the_nearest_rank():
    assert p90_seconds([]) is None
    assert p90_seconds([3000, 1000, 2000]) == 3.0


async def test_an_empty_scope_counts_zero_of_everything(store):
    figures = await store.stats.figures(since_ms=None, until_ms=None, team_id=f"none-{uuid.uuid4()}")
    assert figures["conversations_by_state"] == {"ai": 0, "handoff": 0, "human": 0, "closed": 0}
    assert figures["messages_by_sender_type"] == {"customer": 0, "ai": 0, "agent": 0, "system": 0}
    assert (figures["started"], figures["closed"], figures["handoff_rate"], figures["queue_wait_p90_s"]) == (
        0, 0, 0.0, None)
