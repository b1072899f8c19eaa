"""Fixtures of the state machine tests: the expected table and a repository on the real servers."""

import pytest

from states.repository import ConversationRepository

# PROTOCOL section 4, written out by hand: (state, trigger) -> the state it leads to
EXPECTED_MOVES = {
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


@pytest.fixture
def expected_moves() -> dict[tuple[str, str], str]:
    """Every allowed (state, trigger) pair and where it leads; any other pair is refused."""
    return dict(EXPECTED_MOVES)


@pytest.fixture
async def repo(redis, store):
    """The repository on the test Redis and the SQL store (MariaDB and SQLite)."""
    return ConversationRepository(redis, store.conversations)
