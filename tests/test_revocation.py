"""Deactivation, a new password and a role change reach everywhere (PROTOCOL 2.1): REST 401, no new socket,
open sockets closed (4403 deactivated, 4401 a token from before the last deactivation or new password, or of
another role) on every instance (through the bus, or by each instance's own look when the message is lost)."""

from __future__ import annotations

import asyncio
import time

import jwt

from chat import keys
from chat.bus import AccountChanged, decode, encode
from chat.revocation import CLOSE_DEACTIVATED, CLOSE_ROLE_CHANGED, CLOSE_TOKEN_REVOKED, Standings, announce_changed
from chat.store.staff import Staff, Standing
from tests.wsclient import WS

WITHIN_S = 5.0  # PROTOCOL 2.1: a deactivation takes effect everywhere within 5 s


async def set_active(h, user_id: str, active: bool) -> None:
    store = h.app[keys.STORE]
    await store.db.execute(f"UPDATE {store.db.tables.users} SET active = %s WHERE id = %s", (int(active), user_id))


async def account(h, user_id: str) -> dict:
    """The user as REST shows it (what an account change announces)."""
    user = await h.app[keys.STORE].accounts.get(user_id)
    assert user is not None
    return user


async def connected(h, user_id: str, role: str = "agent"):
    """A socket whose session joined the hub (the read loop answers only after the auth phase)."""
    ws = await h.connect(user_id, role)
    assert (await ws.request("ping"))["type"] == "pong"
    return ws


async def rest_status(h, user_id: str, role: str = "agent") -> int:
    headers = {"Authorization": f"Bearer {h.token(user_id, role)}"}
    return (await h.client.get("/api/v1/conversations", headers=headers)).status


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_standing_is_cached_for_at_most_its_ttl(store):
    staff = Staff(store.db)
    await staff.remember("agent-c", "agent", None)
    clock = Clock()
    standings = Standings(staff, ttl_s=2.0, clock=clock)
    assert await standings.check("agent-c") == Standing(True, None)  # token-only: its tokens' role is taken
    await store.db.execute(f"UPDATE {store.db.tables.users} SET active = 0 WHERE id = %s", ("agent-c",))
    clock.now += 1.9
    assert (await standings.check("agent-c")).active is True  # still the cached answer
    clock.now += 0.2
    assert (await standings.check("agent-c")).active is False
    assert await standings.check("nobody-known") == Standing(True, None)  # unknown to `users` (a customer)


async def test_an_accounts_standing_names_the_role_its_admins_set(store):
    await store.accounts.create("acct-c", "admin", password_hash="a-hash")
    standings = Standings(Staff(store.db), ttl_s=2.0, clock=Clock())
    assert await standings.check("acct-c") == Standing(True, "admin")
    assert Standing(True, "admin").admits("admin") and not Standing(True, "admin").admits("agent")
    await store.db.execute(f"UPDATE {store.db.tables.users} SET role = 'agent' WHERE id = %s", ("acct-c",))
    assert (await standings.check("acct-c")).role == "admin"  # cached
    standings.forget("acct-c")
    assert await standings.check("acct-c") == Standing(True, "agent")


async def test_changed_among_finds_the_deactivated_and_the_accounts_of_another_role(store):
    staff = Staff(store.db)
    for user in ("s-1", "s-2", "s-3"):
        await staff.remember(user, "agent", None)
    await staff.remember("s-4", "admin", None)  # token-only: its sockets' roles are not compared
    await store.db.execute(f"UPDATE {store.db.tables.users} SET active = 0 WHERE id IN (%s, %s)", ("s-1", "s-3"))
    await store.accounts.create("s-5", "admin", password_hash="a-hash")  # was an agent
    await store.accounts.create("s-6", "agent", password_hash="a-hash")  # unchanged
    await store.accounts.create("s-7", "admin", password_hash="a-hash")  # an agent socket beside an admin one
    sockets = {u: {("agent", 1000)} for u in ("s-1", "s-2", "s-3", "s-4", "s-5", "s-6", "unknown")}
    sockets["s-7"] = {("agent", 1000), ("admin", 1000)}
    assert await staff.changed_among(sockets) == {
        "s-1": Standing(False, None), "s-3": Standing(False, None),
        "s-5": Standing(True, "admin"), "s-7": Standing(True, "admin")}
    assert await staff.changed_among({}) == {}


def test_the_bus_still_decodes_the_deactivation_of_older_instances():
    assert decode(b'{"k": "deactivated", "user_id": "u-1"}') == AccountChanged("u-1")
    message = AccountChanged("u-2")
    assert decode(encode(message)) == message


async def test_deactivation_refuses_rest_and_closes_the_socket_here(harness):
    ws = await connected(harness, "agent-d")
    assert await rest_status(harness, "agent-d") == 200
    await set_active(harness, "agent-d", False)
    await harness.app[keys.REVOCATION].changed((await account(harness, "agent-d"))["id"])
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    response = await harness.client.get("/api/v1/conversations",
                                         headers={"Authorization": f"Bearer {harness.token('agent-d', 'agent')}"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_a_deactivated_user_cannot_open_a_socket(harness):
    ws = await connected(harness, "agent-e")
    await ws.close()
    await set_active(harness, "agent-e", False)
    harness.app[keys.ACCOUNTS].standings.forget("agent-e")
    ws = await harness.connect()
    reply = await ws.request("auth", token=harness.token("agent-e", "agent"))
    assert reply["type"] == "error" and reply["code"] == "forbidden"
    assert await ws.closed() == CLOSE_DEACTIVATED
    await set_active(harness, "agent-e", True)
    harness.app[keys.ACCOUNTS].standings.forget("agent-e")
    again = await harness.connect()
    assert (await again.ok("auth", token=harness.token("agent-e", "agent")))["user_id"] == "agent-e"


async def test_deactivation_closes_a_socket_on_another_instance(harness_factory, mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url)
    b = await harness_factory(database_url=mysql_database_url)
    on_b = await connected(b, "agent-f")
    other = await connected(b, "agent-g")
    await set_active(a, "agent-f", False)
    await a.app[keys.REVOCATION].changed((await account(a, "agent-f"))["id"])
    assert await on_b.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    assert await rest_status(b, "agent-f") == 401  # b's cached answer was dropped by the message
    assert (await other.request("ping"))["type"] == "pong"  # the other agent's socket stays open


async def test_the_cli_announcement_closes_sockets_on_running_instances(harness):
    ws = await connected(harness, "agent-h")
    await set_active(harness, "agent-h", False)
    assert await announce_changed(harness.settings, await account(harness, "agent-h")) is True
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED


async def test_the_sweep_closes_sockets_whose_message_was_lost(harness):
    ws = await connected(harness, "agent-i")
    customer = await connected(harness, "cust-i", "customer")
    await set_active(harness, "agent-i", False)  # no announcement: the bus message is lost
    await harness.app[keys.ACCOUNTS].sweep()
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    assert not customer.ws.closed


async def test_announcing_without_a_shared_redis_says_so(make_settings):
    assert await announce_changed(make_settings(embedded=True), "agent-j") is False


# --- a role change (an account with a password: its role is the one its admins set) -------------------


async def make_account(h, user_id: str, role: str) -> None:
    await h.app[keys.STORE].accounts.create(user_id, role, password_hash="a-hash")


async def set_role(h, user_id: str, role: str) -> dict:
    """The role changed in SQL (committed, not announced); the account as it is now."""
    store = h.app[keys.STORE]
    await store.db.execute(f"UPDATE {store.db.tables.users} SET role = %s WHERE id = %s", (role, user_id))
    return await account(h, user_id)


async def admin_status(h, user_id: str, role: str) -> int:
    """GET an admin-only endpoint."""
    return (await h.client.get("/api/v1/users", headers={"Authorization": f"Bearer {h.token(user_id, role)}"})).status


async def test_a_role_change_refuses_the_old_role_and_closes_its_sockets_here(harness):
    await make_account(harness, "adm-a", "admin")
    ws = await connected(harness, "adm-a", "admin")
    assert await admin_status(harness, "adm-a", "admin") == 200  # cached: admin
    await harness.app[keys.REVOCATION].changed((await set_role(harness, "adm-a", "agent"))["id"])
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_ROLE_CHANGED
    response = await harness.client.get("/api/v1/users",
                                         headers={"Authorization": f"Bearer {harness.token('adm-a', 'admin')}"})
    assert response.status == 401  # not 403: a refresh gives a token with the new role
    assert (await response.json())["error"]["code"] == "unauthenticated"
    assert await rest_status(harness, "adm-a", "admin") == 401
    assert await rest_status(harness, "adm-a", "agent") == 200  # the new role's token works

    again = await harness.connect()  # a new socket with the old role does not authenticate
    reply = await again.request("auth", token=harness.token("adm-a", "admin"))
    assert reply["type"] == "error" and reply["code"] == "unauthenticated"
    assert await again.closed() == CLOSE_ROLE_CHANGED
    fresh = await harness.connect()
    assert (await fresh.ok("auth", token=harness.token("adm-a", "agent")))["role"] == "agent"


async def test_a_role_change_closes_a_socket_on_another_instance(harness_factory, mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url)
    b = await harness_factory(database_url=mysql_database_url)
    await make_account(a, "adm-b", "admin")
    on_b = await connected(b, "adm-b", "admin")
    assert await admin_status(b, "adm-b", "admin") == 200  # b's cached answer: admin
    await a.app[keys.REVOCATION].changed((await set_role(a, "adm-b", "agent"))["id"])
    assert await on_b.closed(timeout=WITHIN_S) == CLOSE_ROLE_CHANGED
    assert await admin_status(b, "adm-b", "admin") == 401  # b's cached answer was dropped by the message


async def test_another_instance_refuses_the_old_role_within_its_cache_ttl(harness):
    """The bus message lost: the cached answer is good for ACTIVE_CHECK_S at most."""
    guard = harness.app[keys.ACCOUNTS]
    clock = Clock()
    guard.standings = Standings(harness.app[keys.STORE].staff, ttl_s=2.0, clock=clock)
    await make_account(harness, "adm-c", "admin")
    assert await admin_status(harness, "adm-c", "admin") == 200
    await set_role(harness, "adm-c", "agent")  # not announced
    clock.now += 1.9
    assert await admin_status(harness, "adm-c", "admin") == 200  # the cached answer, within its time
    clock.now += 0.2
    assert await admin_status(harness, "adm-c", "admin") == 401


async def test_the_sweep_closes_the_sockets_of_the_old_role_when_the_message_was_lost(harness):
    await make_account(harness, "adm-d", "admin")
    old = await connected(harness, "adm-d", "admin")
    await make_account(harness, "adm-e", "admin")
    untouched = await connected(harness, "adm-e", "admin")
    await set_role(harness, "adm-d", "agent")  # no announcement
    await harness.app[keys.ACCOUNTS].sweep()
    assert await old.closed(timeout=WITHIN_S) == CLOSE_ROLE_CHANGED
    new = await connected(harness, "adm-d", "agent")  # the sweep dropped the cached answer too
    await harness.app[keys.ACCOUNTS].sweep()
    assert (await new.request("ping"))["type"] == "pong"  # a socket with the new role stays
    assert (await untouched.request("ping"))["type"] == "pong"


async def test_a_change_to_the_same_role_closes_nothing(harness_factory, mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url)
    b = await harness_factory(database_url=mysql_database_url)
    await make_account(a, "adm-f", "admin")
    kept = await connected(b, "adm-f", "admin")
    gone = await connected(b, "agent-k")
    await a.app[keys.REVOCATION].changed((await set_role(a, "adm-f", "admin"))["id"])
    await set_active(a, "agent-k", False)
    await a.app[keys.REVOCATION].changed((await account(a, "agent-k"))["id"])  # published after, on the same channel
    assert await gone.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED  # so b has heard the first one too
    assert (await kept.request("ping"))["type"] == "pong"
    assert await admin_status(b, "adm-f", "admin") == 200


async def test_a_token_only_user_keeps_the_role_of_its_tokens(harness):
    await harness.app[keys.STORE].staff.remember("tok-a", "agent", None)  # no password: not an account's role
    assert await admin_status(harness, "tok-a", "admin") == 200
    ws = await connected(harness, "tok-a", "admin")  # (its token wrote `admin` into its row)
    db = harness.app[keys.STORE].db
    await db.execute(f"UPDATE {db.tables.users} SET role = 'agent' WHERE id = %s", ("tok-a",))
    await harness.app[keys.ACCOUNTS].sweep()  # the row says agent, the socket admin: not compared, kept
    assert (await ws.request("ping"))["type"] == "pong"


async def test_a_customer_token_costs_no_query(harness, monkeypatch):
    staff, asked = harness.app[keys.STORE].staff, []
    standing = staff.standing

    async def counted(user_id: str) -> Standing:
        asked.append(user_id)
        return await standing(user_id)

    monkeypatch.setattr(staff, "standing", counted)
    customer = {"Authorization": f"Bearer {harness.token('cust-q', 'customer')}"}
    assert (await harness.client.get("/api/v1/me/conversations", headers=customer)).status == 200
    await connected(harness, "cust-q", "customer")
    assert asked == []
    assert await rest_status(harness, "agent-q", "agent") == 200
    assert asked == ["agent-q"]  # the spy sees a staff token's look


async def test_a_read_under_way_when_the_account_changes_is_not_kept(store):
    """forget() while check() reads SQL: the answer read before the change is not cached."""
    await store.accounts.create("acct-r", "admin", password_hash="a-hash")
    staff = Staff(store.db)
    standings = Standings(staff, ttl_s=60.0, clock=Clock())
    reading, release, reads = asyncio.Event(), asyncio.Event(), []
    standing = staff.standing

    async def held(user_id: str) -> Standing:
        answer = await standing(user_id)
        reads.append(answer)
        reading.set()
        await release.wait()
        return answer

    staff.standing = held  # type: ignore[method-assign]
    first = asyncio.create_task(standings.check("acct-r"))
    await reading.wait()
    await store.db.execute(f"UPDATE {store.db.tables.users} SET role = 'agent' WHERE id = %s", ("acct-r",))
    standings.forget("acct-r")  # the change, announced while the read is under way
    release.set()
    assert (await first).role == "admin"  # what was read is answered once...
    assert (await standings.check("acct-r")).role == "agent"  # ...but not kept
    assert len(reads) == 2


async def test_an_account_message_is_a_hint_the_account_is_read_again(harness_factory, mysql_database_url):
    """Out of order or stale, a message never closes what SQL still admits: each instance reads the account."""
    a = await harness_factory(database_url=mysql_database_url)
    b = await harness_factory(database_url=mysql_database_url)
    await make_account(a, "adm-h", "admin")
    kept = await connected(b, "adm-h", "admin")
    await set_role(a, "adm-h", "agent")
    await set_role(a, "adm-h", "admin")  # changed back before anyone heard of the first change
    await a.app[keys.REVOCATION].changed("adm-h")
    await a.app[keys.REVOCATION].changed("adm-h")
    gone = await connected(b, "agent-h")
    await set_active(a, "agent-h", False)
    await a.app[keys.REVOCATION].changed("agent-h")  # published after, on the same channel
    assert await gone.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    await b.app[keys.ACCOUNTS].settled()  # every look b began is done
    assert (await kept.request("ping"))["type"] == "pong"


async def test_a_token_its_account_no_longer_admits_is_401_before_any_role_check(harness):
    await make_account(harness, "agt-p", "agent")
    assert await admin_status(harness, "agt-p", "agent") == 403  # an agent on an admin route
    await harness.app[keys.REVOCATION].changed((await set_role(harness, "agt-p", "admin"))["id"])
    assert await admin_status(harness, "agt-p", "agent") == 401  # the old agent token: refresh, not forbidden
    assert await admin_status(harness, "agt-p", "admin") == 200


# --- tokens issued before the account's last deactivation or new password (users.tokens_after_ms) ---------


def issued_at(h, user_id: str, iat: float | None, role: str = "agent") -> str:
    """A token of `user_id` issued at `iat` (None: without the claim), good for ten minutes."""
    claims: dict = {"sub": user_id, "role": role, "exp": int(time.time()) + 600}
    if iat is not None:
        claims["iat"] = iat
    return jwt.encode(claims, h.settings.jwt_secret_key, algorithm="HS256")


async def socket_with(h, token: str):
    ws = WS(await h.client.ws_connect(f"/ws?token={token}", autoping=True))
    assert (await ws.request("ping"))["type"] == "pong"
    return ws


def mid_second(clock) -> int:
    """Put the simulated clock 400 ms into the second before the real one; that second."""
    second = clock.ms // 1000 - 1
    clock.ms = second * 1000 + 400
    return second


async def test_standing_carries_the_second_the_accounts_tokens_count_from(store, sim_clock):
    await store.accounts.create("mark-a", "agent", password_hash="a-hash")
    standings = Standings(Staff(store.db), ttl_s=2.0, clock=Clock())
    assert await standings.check("mark-a") == Standing(True, "agent", None)
    assert not Standing(True, "agent", None).predates(None)  # never changed: every token counts
    second = mid_second(sim_clock)
    await store.accounts.update("mark-a", {"password_hash": "another"})
    standings.forget("mark-a")
    standing = await standings.check("mark-a")
    assert standing == Standing(True, "agent", second)
    assert [standing.predates(iat) for iat in (second - 1, second - 0.001, None, second, second + 0.5)] == [
        True, True, True, False, False]


async def test_changed_among_finds_the_sockets_whose_tokens_predate_a_new_password(store, sim_clock):
    await store.accounts.create("mark-b", "agent", password_hash="a-hash")
    await store.accounts.create("mark-c", "agent", password_hash="a-hash")  # unchanged
    second = mid_second(sim_clock)
    await store.accounts.update("mark-b", {"password_hash": "another"})
    staff = Staff(store.db)
    assert await staff.changed_among({"mark-b": {("agent", second)}, "mark-c": {("agent", None)}}) == {}
    for older in (second - 1, None):
        assert await staff.changed_among({"mark-b": {("agent", second), ("agent", older)}}) == {
            "mark-b": Standing(True, "agent", second)}


async def test_the_sweep_closes_the_sockets_of_tokens_from_before_a_new_password(harness, sim_clock):
    """The change's message lost: each instance's look closes them (4401), and keeps the newer ones."""
    await make_account(harness, "mark-d", "agent")
    second = mid_second(sim_clock)
    old = await socket_with(harness, issued_at(harness, "mark-d", second - 1))
    new = await socket_with(harness, issued_at(harness, "mark-d", second))
    await harness.app[keys.STORE].accounts.update("mark-d", {"password_hash": "another"})  # not announced
    await harness.app[keys.ACCOUNTS].sweep()
    assert await old.closed(timeout=WITHIN_S) == CLOSE_TOKEN_REVOKED
    await harness.app[keys.ACCOUNTS].sweep()
    assert (await new.request("ping"))["type"] == "pong"


async def test_an_open_socket_cannot_take_a_token_from_before_a_new_password(harness, sim_clock):
    await make_account(harness, "mark-e", "agent")
    second = mid_second(sim_clock)
    await harness.app[keys.STORE].accounts.update("mark-e", {"password_hash": "another"})
    await harness.app[keys.REVOCATION].changed("mark-e")
    ws = await socket_with(harness, issued_at(harness, "mark-e", second))
    reply = await ws.request("auth", token=issued_at(harness, "mark-e", second - 1))
    assert reply["type"] == "error" and reply["code"] == "unauthenticated"
    assert (await ws.request("ping"))["type"] == "pong"  # it keeps the token it has
    assert (await ws.ok("auth", token=issued_at(harness, "mark-e", second + 1)))["user_id"] == "mark-e"
