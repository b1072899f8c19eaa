"""Teams and their members over REST on the real Redis and on MariaDB and SQLite."""

from __future__ import annotations

from chat.auth import Identity
from tests.api.support import assert_error, uid


async def test_teams_and_members(api):
    admin, agent = Identity(uid("admin"), "admin"), Identity(uid("agent"), "agent", name="Ann")
    name = uid("billing")
    status, team = await api.call("POST", "/api/v1/teams", as_=admin, json={"name": name})
    assert status == 201 and team["name"] == name and team["description"] is None
    status, body = await api.call("POST", "/api/v1/teams", as_=admin, json={"name": name})
    assert_error(status, body, 409, "conflict")
    status, got = await api.call("GET", f"/api/v1/teams/{team['id']}", as_=admin)
    assert status == 200 and got == team
    status, page = await api.call("GET", "/api/v1/teams", as_=admin)
    assert team in page["items"] and page["next_cursor"] is None

    status, patched = await api.call("PATCH", f"/api/v1/teams/{team['id']}", as_=admin,
                                     json={"description": "invoices"})
    assert status == 200 and patched["name"] == name and patched["description"] == "invoices"
    status, renamed = await api.call("PATCH", f"/api/v1/teams/{team['id']}", as_=admin, json={"name": name + "-2"})
    assert status == 200 and renamed["name"] == name + "-2" and renamed["description"] == "invoices"
    status, other = await api.call("POST", "/api/v1/teams", as_=admin, json={"name": uid("sales")})
    status, body = await api.call("PATCH", f"/api/v1/teams/{other['id']}", as_=admin, json={"name": name + "-2"})
    assert_error(status, body, 409, "conflict")
    status, body = await api.call("PATCH", f"/api/v1/teams/{other['id']}", as_=admin, json={"name": None})
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("PATCH", f"/api/v1/teams/{uid('none')}", as_=admin, json={})
    assert_error(status, body, 404, "not_found")

    # members: only known agents (they signed in once), once each
    status, body = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                  json={"user_id": agent.user_id})
    assert_error(status, body, 404, "not_found")
    await api.call("GET", "/api/v1/labels", as_=agent)  # any authenticated request makes it known
    status, member = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                    json={"user_id": agent.user_id})
    assert status == 201
    assert member["user_id"] == agent.user_id and member["team_id"] == team["id"] and member["role"] == "agent"
    assert member["name"] == "Ann" or member["name"] is None  # names come from tokens that carry one
    status, body = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                  json={"user_id": agent.user_id})
    assert_error(status, body, 409, "conflict")
    status, members = await api.call("GET", f"/api/v1/teams/{team['id']}/members", as_=agent)
    assert status == 200 and [m["user_id"] for m in members["items"]] == [agent.user_id]
    status, _ = await api.call("DELETE", f"/api/v1/teams/{team['id']}/members/{agent.user_id}", as_=admin)
    assert status == 204
    status, body = await api.call("DELETE", f"/api/v1/teams/{team['id']}/members/{agent.user_id}", as_=admin)
    assert_error(status, body, 404, "not_found")

    # a team's conversations: start one for it, then delete the team
    customer = Identity(uid("cust"), "customer")
    status, c = await api.call("POST", "/api/v1/sessions", as_=customer, json={"team_id": team["id"]})
    assert status == 201 and c["team_id"] == team["id"]
    status, _ = await api.call("DELETE", f"/api/v1/teams/{team['id']}", as_=admin)
    assert status == 204
    for path in (f"/api/v1/teams/{team['id']}", f"/api/v1/teams/{team['id']}/members"):
        status, body = await api.call("GET", path, as_=admin)
        assert_error(status, body, 404, "not_found")
    status, body = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                  json={"user_id": agent.user_id})
    assert_error(status, body, 404, "not_found")


async def test_a_deactivated_account_joins_no_team_but_keeps_the_ones_it_is_in(api):
    """PATCH /users/{id} `teams` and POST …/members agree: a deactivated account is added to no team (409 on
    the PATCH, 404 on the POST), while the memberships it had stay (409 on the POST: a member already)."""
    admin = Identity(uid("admin"), "admin")
    team, other = [(await api.call("POST", "/api/v1/teams", as_=admin, json={"name": uid("team")}))[1]
                   for _ in range(2)]
    status, user = await api.call("POST", "/api/v1/users", as_=admin,
                                  json={"id": uid("agent"), "role": "agent", "teams": [team["id"]]})
    assert status == 201
    user_id = user["id"]
    status, user = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=admin, json={"active": False})
    assert status == 200 and user["teams"] == [team["id"]]

    status, body = await api.call("POST", f"/api/v1/teams/{other['id']}/members", as_=admin,
                                  json={"user_id": user_id})
    assert_error(status, body, 404, "not_found")
    for change in ({"teams": [team["id"], other["id"]]}, {"teams": [other["id"]], "active": False}):
        status, body = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=admin, json=change)
        assert_error(status, body, 409, "conflict")
        assert "deactivated" in body["error"]["message"] and body["error"]["details"]["teams"]
    assert (await api.call("GET", f"/api/v1/users/{user_id}", as_=admin))[1]["teams"] == [team["id"]]
    assert (await api.call("GET", f"/api/v1/teams/{other['id']}/members", as_=admin))[1]["items"] == []
    # the team it is in: a member already, deactivated or not
    status, body = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                  json={"user_id": user_id})
    assert_error(status, body, 409, "conflict")
    # leaving teams is no joining: allowed, as DELETE …/members is
    status, user = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=admin,
                                  json={"teams": [team["id"]], "name": "Ann"})
    assert status == 200 and user["teams"] == [team["id"]] and user["name"] == "Ann"
    status, user = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=admin, json={"teams": []})
    assert status == 200 and user["teams"] == []
    # activated in the same request, it joins
    status, user = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=admin,
                                  json={"active": True, "teams": [other["id"]]})
    assert status == 200 and user["active"] is True and user["teams"] == [other["id"]]
