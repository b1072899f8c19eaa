"""POST /api/v1/visitors (PROTOCOL 2.2): a customer token for a new visitor when ANONYMOUS_VISITORS is
on (404 when off), signed with the current secret, limited per client address across instances."""

import time

import pytest

from chat import keys
from chat.auth import AuthError, verify_token
from states import redis_keys
from tests.wsclient import WS

CURRENT = "current-secret-0123456789abcdef012345"
PREVIOUS = "previous-secret-0123456789abcdef01234"
PATH = "/api/v1/visitors"


async def test_off_it_is_404_and_counts_nothing(harness):
    assert not harness.settings.anonymous_visitors  # the default outside the embedded mode
    resp = await harness.client.post(PATH)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    assert await harness.app[keys.REDIS].exists(redis_keys.visitor_tokens("127.0.0.1")) == 0


async def test_each_call_is_a_new_visitor_with_a_customer_token_of_the_current_secret(harness_factory):
    h = await harness_factory(anonymous_visitors=True, visitor_token_ttl_s=600, jwt_secret_key=CURRENT,
                              jwt_previous_secret_keys=(PREVIOUS,))
    first, second = [await (await h.client.post(PATH)).json() for _ in range(2)]
    assert first.keys() == {"access_token", "expires_in", "user_id"} and first["expires_in"] == 600
    assert first["user_id"].startswith("v-") and len(first["user_id"]) == 34 and first["user_id"] != second["user_id"]
    identity = verify_token((CURRENT,), first["access_token"])  # the current key alone signs
    assert (identity.user_id, identity.role) == (first["user_id"], "customer")
    assert 590 <= identity.exp - time.time() <= 600
    with pytest.raises(AuthError, match="Signature"):
        verify_token((PREVIOUS,), first["access_token"])


async def test_the_visitor_token_works_on_the_websocket_and_rest(harness_factory):
    h = await harness_factory(anonymous_visitors=True)
    visitor = await (await h.client.post(PATH)).json()
    ws = WS(await h.client.ws_connect(f"/ws?token={visitor['access_token']}"))
    assert (await ws.request("ping"))["type"] == "pong"
    resp = await h.client.post("/api/v1/sessions", headers={"Authorization": f"Bearer {visitor['access_token']}"})
    assert resp.status == 201 and (await resp.json())["user_id"] == visitor["user_id"]


async def test_over_the_limit_an_address_gets_429_with_retry_after_on_every_instance(harness_factory):
    one = await harness_factory(anonymous_visitors=True, visitors_per_address=2, visitor_window_s=600)
    other = await harness_factory(anonymous_visitors=True, visitors_per_address=2, visitor_window_s=600)
    assert (await one.client.post(PATH)).status == 200
    assert (await other.client.post(PATH)).status == 200
    for h in (one, other):  # the count is in Redis: the second instance knows of the first one's tokens
        resp = await h.client.post(PATH)
        assert resp.status == 429 and (await resp.json())["error"]["code"] == "rate_limited"
        assert 1 <= int(resp.headers["Retry-After"]) <= 600
    key = redis_keys.visitor_tokens("127.0.0.1")
    assert await one.app[keys.REDIS].zcard(key) == 2  # a refusal is not counted
    assert 0 < await one.app[keys.REDIS].ttl(key) <= 601


async def test_the_openapi_document_shows_it_public_with_an_example(harness):
    document = await (await harness.client.get("/api/openapi.json")).json()
    operation = document["paths"][PATH]["post"]
    assert operation["security"] == [] and {"200", "404", "429"} <= operation["responses"].keys()
    example = operation["responses"]["200"]["content"]["application/json"]["example"]
    assert example.keys() == {"access_token", "expires_in", "user_id"}
