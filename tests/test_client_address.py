"""The client address behind trusted proxies (TRUSTED_PROXIES, chat.client_address): what failed logins
and visitor tokens are counted by, and what the access log shows."""

from __future__ import annotations

import logging
from ipaddress import ip_network

import pytest

from chat.app import create_app
from chat.client_address import address_behind
from chat.settings import Settings, SettingsError
from tests.api.accounts import PASSWORD, make_account
from tests.api.support import Api, uid
from tests.test_logs import Collect
from tests.ws.fakes import on_root_logger

PROXIES = (ip_network("10.0.0.0/8"), ip_network("192.168.1.10/32"), ip_network("fd00::/8"))
LOCAL = (ip_network("127.0.0.1/32"),)  # the test client's peer


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    # no trusted proxy in front: the peer, whatever it writes into the header
    ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
    ("203.0.113.7", [], "203.0.113.7"),
    # one proxy: the address it appended
    ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
    # what the client wrote itself stays left of what the proxies added
    ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
    ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # two headers, in their order
    # two proxies: the right-most entry that is no trusted proxy
    ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 192.168.1.10"], "198.51.100.1"),
    # an untrusted hop in the chain ends the walk there, even with a trusted one beyond it
    ("10.1.2.3", ["10.9.9.9, 198.51.100.1, 10.0.0.5"], "198.51.100.1"),
    # every hop a trusted proxy: the left-most
    ("10.1.2.3", ["10.0.0.9, 10.0.0.5"], "10.0.0.9"),
    # a trusted peer without the header
    ("10.1.2.3", [], "10.1.2.3"),
    # ports, brackets, IPv6 and a dual-stack socket's mapped IPv4 peer
    ("10.1.2.3", ["198.51.100.1:51234"], "198.51.100.1"),  # the port is no part of the client: one key
    ("10.1.2.3", ["::ffff:198.51.100.1"], "198.51.100.1"),
    ("10.1.2.3", ["2001:DB8:0::5"], "2001:db8::5"),
    ("10.1.2.3", ["198.51.100.1, 192.168.1.10:8080"], "198.51.100.1"),
    ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
    ("fd00::1", ["[2001:db8::5]:443, [fd00::7]:80"], "2001:db8::5"),
    ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
    # an entry that names no address, put there by a trusted proxy, is the client (as text, cut)
    ("10.1.2.3", ["unknown"], "unknown"),
    ("10.1.2.3", ["x" * 500], "x" * 64),
])
def test_the_client_is_the_right_most_forwarded_address_that_is_no_trusted_proxy(peer, forwarded, client):
    assert address_behind(peer, forwarded, PROXIES) == client


def test_without_trusted_proxies_the_header_is_never_read():
    assert address_behind("10.1.2.3", ["198.51.100.1"], ()) == "10.1.2.3"


def test_the_setting_reads_addresses_and_networks_and_names_a_bad_one():
    settings = Settings.from_env({"TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.10 ,fd00::/8,"})
    assert settings.trusted_proxies == PROXIES
    assert Settings.from_env({}).trusted_proxies == ()
    for bad in ("10.0.0.0/33", "proxy.internal", "10.0.0.1-10.0.0.9"):
        with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
            Settings.from_env({"TRUSTED_PROXIES": bad})


async def _api(aiohttp_client, make_settings, database_url, **overrides) -> Api:
    app = create_app(make_settings(database_url=database_url, login_failures_per_address=3, **overrides))
    return Api(app, await aiohttp_client(app))


async def _fail_logins(api: Api, times: int, forwarded_for: str | None) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    statuses = []
    for _ in range(times):
        resp = await api.client.post("/api/v1/auth/login", json={"user_id": uid("nobody"), "password": "guess"},
                                     headers=headers)
        statuses.append(resp.status)
    return statuses


async def test_behind_a_trusted_proxy_one_guesser_locks_out_only_itself(aiohttp_client, make_settings, database_url):
    api = await _api(aiohttp_client, make_settings, database_url, trusted_proxies=LOCAL)
    user_id = await make_account(api)
    assert await _fail_logins(api, 4, "203.0.113.7") == [401, 401, 401, 429]
    # another client behind the same proxy still logs in
    resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD},
                                 headers={"X-Forwarded-For": "198.51.100.1"})
    assert resp.status == 200
    # and a guesser cannot start afresh by writing another address left of what the proxy added
    assert await _fail_logins(api, 1, "1.1.1.1, 203.0.113.7") == [429]


async def test_from_an_untrusted_peer_the_header_changes_nothing(aiohttp_client, make_settings, database_url):
    api = await _api(aiohttp_client, make_settings, database_url)  # no TRUSTED_PROXIES: the peer is the client
    user_id = await make_account(api)
    statuses = [(await _fail_logins(api, 1, f"203.0.113.{n}"))[0] for n in range(4)]
    assert statuses == [401, 401, 401, 429]  # one client, whatever addresses it claims
    resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD},
                                 headers={"X-Forwarded-For": "198.51.100.1"})
    assert resp.status == 429


async def test_visitor_tokens_are_counted_per_forwarded_client(harness_factory):
    h = await harness_factory(anonymous_visitors=True, visitors_per_address=1, trusted_proxies=LOCAL)
    first = await h.client.post("/api/v1/visitors", headers={"X-Forwarded-For": "203.0.113.7"})
    again = await h.client.post("/api/v1/visitors", headers={"X-Forwarded-For": "203.0.113.7"})
    other = await h.client.post("/api/v1/visitors", headers={"X-Forwarded-For": "198.51.100.1"})
    assert (first.status, again.status, other.status) == (200, 429, 200)


async def test_the_access_log_shows_the_forwarded_client(harness_factory):
    h = await harness_factory(trusted_proxies=LOCAL)
    with on_root_logger(Collect(), logging.INFO) as collect:
        await h.client.get("/health", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
        line = await collect.access_line("GET /health")
    assert line.startswith("203.0.113.7 ") and "6.6.6.6" not in line


async def test_the_refresh_cookie_is_secure_when_a_trusted_proxy_took_the_request_over_https(
        aiohttp_client, make_settings, database_url):
    """TLS ends at the proxy: the service sees http, and only the proxy's X-Forwarded-Proto says https."""
    from http.cookies import SimpleCookie

    async def cookie_secure(api: Api, user_id: str, proto: str | None) -> bool:
        resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD,
                                                                 "cookie": True},
                                     headers={"X-Forwarded-Proto": proto} if proto else {})
        assert resp.status == 200
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(resp.headers["Set-Cookie"])
        return bool(cookie["chat_refresh"]["secure"])

    behind = await _api(aiohttp_client, make_settings, database_url, trusted_proxies=LOCAL)
    user_id = await make_account(behind)
    assert await cookie_secure(behind, user_id, "https") is True
    assert await cookie_secure(behind, user_id, "http, https") is True  # the nearest proxy's word
    assert await cookie_secure(behind, user_id, "https, http") is False
    assert await cookie_secure(behind, user_id, None) is False
    untrusted = await _api(aiohttp_client, make_settings, database_url)  # anyone may write the header
    assert await cookie_secure(untrusted, await make_account(untrusted), "https") is False
