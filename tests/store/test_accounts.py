"""Accounts and refresh tokens on MariaDB and SQLite (with and without a table prefix)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from chat.store import DuplicateKey, IntegrityError
from chat.store.accounts import Refreshed
from states.clock import now_ms


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_create_get_update_never_the_hash(store):
    team = await store.teams.create(uid("team"), None)
    user_id = uid("agent")
    user = await store.accounts.create(user_id, "agent", name="Ann", max_chats=3, password_hash="$argon2id$x",
                                       teams=[team["id"]])
    assert user["id"] == user_id and user["role"] == "agent" and user["name"] == "Ann" and user["active"] is True
    assert user["max_chats"] == 3 and user["teams"] == [team["id"]] and user["has_password"] is True
    assert "password_hash" not in user and "$argon2id$x" not in str(user)
    assert user["created_at"].endswith(("Z", "+00:00"))
    with pytest.raises(DuplicateKey):
        await store.accounts.create(user_id, "admin")
    with pytest.raises(IntegrityError):
        await store.accounts.create(uid("agent"), "agent", teams=["no-such-team"])

    changed = await store.accounts.update(user_id, {"role": "admin", "name": None, "teams": []})
    assert changed is not None and changed["role"] == "admin" and changed["name"] is None and changed["teams"] == []
    assert await store.accounts.update(uid("nobody"), {"name": "x"}) is None
    assert await store.accounts.credentials(user_id) == ("admin", True, "$argon2id$x")
    assert user_id in [u["id"] for u in await store.accounts.all()]


async def test_customers_are_no_accounts(store):
    customer = uid("cust")
    await store.staff.remember(customer, "customer", None)
    await store.db.execute(f"INSERT INTO {store.db.tables.users} (id, role, active, created_ms, updated_ms) "
                           "VALUES (%s, 'customer', 1, 1, 1)", (uid("cust"),))
    assert await store.accounts.get(customer) is None
    assert await store.accounts.credentials(customer) is None
    assert await store.accounts.update(customer, {"active": False}) is None
    assert all(u["role"] in ("agent", "admin") for u in await store.accounts.all())


async def _login(store, user_id: str) -> tuple[str, str]:
    token, family = uid("rt"), uid("family")
    assert await store.accounts.add_refresh(digest(token), family, user_id, now_ms() + 60_000, "h")
    return token, family


async def test_rotation_reuse_revokes_the_family(store):
    user_id = uid("agent")
    await store.accounts.create(user_id, "agent", password_hash="h")
    first, _ = await _login(store, user_id)
    second = uid("rt")
    rotated = await store.accounts.rotate(digest(first), digest(second), now_ms() + 60_000)
    assert rotated.outcome is Refreshed.ROTATED and rotated.user_id == user_id
    # the used one again: the family goes, the successor with it
    assert (await store.accounts.rotate(digest(first), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.REUSED
    assert (await store.accounts.rotate(digest(second), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.REFUSED
    assert (await store.accounts.rotate(digest("unknown"), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.REFUSED
    # only hashes are stored
    rows = await store.db.fetchall(f"SELECT token_hash FROM {store.db.tables.refresh_tokens} WHERE user_id = %s",
                                   (user_id,))
    assert {r[0] for r in rows} == {digest(first), digest(second)}


async def test_a_session_is_stored_only_while_the_password_checked_is_the_accounts(store):
    """A login that checked the old password while it was changed stores no session: the change revoked
    the tokens it found, and one stored after it would outlive it."""
    user_id = uid("agent")
    await store.accounts.create(user_id, "agent", password_hash="old")
    await store.accounts.update(user_id, {"password_hash": "new"})
    assert await store.accounts.add_refresh(digest(uid("rt")), uid("family"), user_id, now_ms() + 60_000, "old") \
        is False
    await store.accounts.update(user_id, {"active": False})
    assert await store.accounts.add_refresh(digest(uid("rt")), uid("family"), user_id, now_ms() + 60_000, "new") \
        is False
    rows = await store.db.fetchall(f"SELECT 1 FROM {store.db.tables.refresh_tokens} WHERE user_id = %s", (user_id,))
    assert rows == []


async def test_expired_tokens_and_other_sessions(store):
    user_id = uid("agent")
    await store.accounts.create(user_id, "agent", password_hash="h")
    expired = uid("rt")
    assert await store.accounts.add_refresh(digest(expired), uid("family"), user_id, now_ms() - 1, "h")
    assert (await store.accounts.rotate(digest(expired), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.REFUSED
    one, _ = await _login(store, user_id)
    other, _ = await _login(store, user_id)
    assert await store.accounts.revoke_session(digest(one)) is True
    assert await store.accounts.revoke_session(digest("unknown")) is False
    assert (await store.accounts.rotate(digest(one), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.REFUSED
    # logging out one session leaves the other
    assert (await store.accounts.rotate(digest(other), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.ROTATED


@pytest.mark.parametrize("change", [{"active": False}, {"password_hash": "new"}, {"password_hash": None}])
async def test_deactivation_and_a_new_password_revoke_the_tokens(store, change):
    user_id = uid("agent")
    await store.accounts.create(user_id, "agent", password_hash="h")
    token, _ = await _login(store, user_id)
    await store.accounts.update(user_id, change)
    assert (await store.accounts.rotate(digest(token), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.REFUSED


async def test_a_name_change_keeps_the_tokens_and_an_inactive_user_cannot_rotate(store):
    user_id = uid("agent")
    await store.accounts.create(user_id, "agent", password_hash="h")
    token, _ = await _login(store, user_id)
    await store.accounts.update(user_id, {"name": "Bea"})
    second = uid("rt")
    assert (await store.accounts.rotate(digest(token), digest(second), now_ms() + 60_000)).outcome \
        is Refreshed.ROTATED
    # made inactive behind the store's back (another tool): the rotation still refuses
    await store.db.execute(f"UPDATE {store.db.tables.users} SET active = 0 WHERE id = %s", (user_id,))
    assert (await store.accounts.rotate(digest(second), digest(uid("rt")), now_ms() + 60_000)).outcome \
        is Refreshed.REFUSED


async def test_two_concurrent_uses_of_one_token_one_wins_the_other_is_a_reuse(store):
    import asyncio

    user_id = uid("agent")
    await store.accounts.create(user_id, "agent", password_hash="h")
    token, _ = await _login(store, user_id)
    results = await asyncio.gather(*(store.accounts.rotate(digest(token), digest(uid("rt")), now_ms() + 60_000)
                                     for _ in range(2)))
    assert sorted(r.outcome.value for r in results) == ["reused", "rotated"]
    rows = await store.db.fetchall(f"SELECT revoked_ms FROM {store.db.tables.refresh_tokens} WHERE user_id = %s",
                                   (user_id,))
    assert len(rows) == 2 and all(r[0] is not None for r in rows)  # the winner's successor is revoked too


async def _marks(store, user_id: str) -> tuple[int | None, list[int | None]]:
    """The account's tokens_after_ms and its refresh tokens' revoked_ms."""
    t = store.db.tables
    (mark,) = await store.db.fetchone(f"SELECT tokens_after_ms FROM {t.users} WHERE id = %s", (user_id,))
    revoked = [r[0] for r in await store.db.fetchall(f"SELECT revoked_ms FROM {t.refresh_tokens} WHERE user_id = %s",
                                                     (user_id,))]
    return mark, revoked


@pytest.mark.parametrize("change", [{"active": False}, {"password_hash": "new"}, {"password_hash": None}])
async def test_deactivation_and_a_new_password_set_the_time_its_tokens_count_from(store, sim_clock, change):
    """In the transaction that revokes the refresh tokens, at the same time; nothing else moves it, a
    reactivation neither."""
    user_id = uid("agent")
    await store.accounts.create(user_id, "agent", password_hash="h")
    await _login(store, user_id)
    for other in ({"name": "Bea"}, {"role": "admin"}, {"max_chats": 2}, {"active": True}):
        await store.accounts.update(user_id, other)
    assert await _marks(store, user_id) == (None, [None])
    changed_at = sim_clock.advance(1.5)
    await store.accounts.update(user_id, change)
    assert await _marks(store, user_id) == (changed_at, [changed_at])
    sim_clock.advance(60)
    await store.accounts.update(user_id, {"active": True, "name": "Cy"})
    assert await _marks(store, user_id) == (changed_at, [changed_at])
