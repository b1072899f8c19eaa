"""GET /api/openapi.json, and schemathesis fuzzing the live app against it.

The fuzzer runs in a worker thread (schemathesis' transport is the blocking `requests`) while the
test's event loop serves the aiohttp test server on 127.0.0.1: SQLite and the real Redis.
Hypothesis is derandomized and bounded, so the run is deterministic and takes a few seconds.
"""

from __future__ import annotations

import asyncio
import re

import pytest
import schemathesis  # noqa: E402  (the test extra installs it)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from chat import keys
from chat.api.routes import HANDLERS
from chat.app import create_app
from chat.auth import Identity, issue_token

# Every built-in response check except positive_data_acceptance: a schema-valid value may still
# be refused for its meaning (a well-formed but foreign cursor, the 31st of February, an unknown
# id), which the document states as a 400 or 404.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]
MAX_EXAMPLES = 15  # per operation and generation mode


@pytest.fixture
async def live(aiohttp_client, make_settings):
    app = create_app(make_settings())  # SQLite file + the real Redis
    client = await aiohttp_client(app)
    return app, client


async def test_the_document_covers_every_route(live):
    app, client = live
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer",
                                                                  "bearerFormat": "JWT"}
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {(h.endpoint.method, h.endpoint.path) for h in HANDLERS}
    assert served <= documented
    assert {("GET", "/health"), ("GET", "/metrics"), ("GET", "/api/v1/agents"),
            ("GET", "/api/openapi.json")} <= documented
    public = {(h.endpoint.method, h.endpoint.path) for h in HANDLERS if not h.endpoint.roles}
    for (method, path) in served:
        operation = doc["paths"][path][method.lower()]
        if (method, path) in public:  # login, refresh, logout: no token
            assert operation["security"] == [] and "403" not in operation["responses"]
        else:
            assert operation["security"] == [{"bearerAuth": []}] and "401" in operation["responses"]
        assert "503" in operation["responses"]
        for name in re.findall(r"{(\w+)}", path):
            assert any(p["in"] == "path" and p["name"] == name for p in operation["parameters"])
    listing = doc["paths"]["/api/v1/conversations"]["get"]
    names = {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    assert names == {"state", "agent_id", "team_id", "label", "user_id", "since", "until", "q", "limit", "cursor"}
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 200
    assert doc["paths"]["/api/v1/labels"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LabelBody"}
    assert doc["components"]["schemas"]["LabelBody"]["additionalProperties"] is False
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["example"]["user_id"]
    assert set(login["responses"]["200"]["content"]["application/json"]["example"]) >= {
        "access_token", "token_type", "expires_in", "refresh_token", "user"}
    assert login["responses"]["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "password_hash" not in doc["components"]["schemas"]["User"]["properties"]
    agents = doc["components"]["schemas"]["Agent"]["properties"]
    assert {"agent_id", "status", "active", "max_chats", "active_conversations"} <= set(agents)


async def test_every_body_has_a_valid_example_and_every_error_its_schema(live):
    _, client = live
    doc = await (await client.get("/api/openapi.json")).json()
    by_route = {(h.endpoint.method.lower(), h.endpoint.path): h.endpoint for h in HANDLERS}
    bodies = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                bodies += 1
                media = operation["requestBody"]["content"]["application/json"]
                assert "example" in media, f"{method.upper()} {path}: no example body"
                spec = by_route[(method, path)]
                spec.body.load(media["example"])  # the example is a body the endpoint accepts
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path != "/health":  # its 503 is the health body, by design
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    assert bodies == sum(1 for h in HANDLERS if h.endpoint.body is not None) >= 11
    error = doc["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"} and "details" in error["properties"]
    send = doc["paths"]["/api/v1/conversations/{id}/messages"]["post"]["responses"]
    assert {"201", "200", "403", "404", "409", "413"} <= set(send)
    transcript = doc["paths"]["/api/v1/conversations/{id}/transcript"]["get"]
    assert set(transcript["responses"]["200"]["content"]) == {"application/json", "text/csv", "text/markdown"}
    assert transcript["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Transcript"}
    export = doc["paths"]["/api/v1/export/conversations"]["get"]
    assert set(export["responses"]["200"]["content"]) == {"application/x-ndjson"}
    assert {"conversation", "messages", "events"} <= set(doc["components"]["schemas"]["ExportLine"]["properties"])
    mine = doc["paths"]["/api/v1/me/conversations"]["get"]
    assert {p["name"] for p in mine["parameters"] if p["in"] == "query"} == {"state", "limit", "cursor"}


def _fuzz(doc: dict, base_url: str, token: str, served: set[tuple[str, str]],
          statuses: dict[str, set[int]]) -> list[str]:
    """Run every served operation in both generation modes; return what failed."""
    schema = schemathesis.openapi.from_dict(doc)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    # a lenient body (logout) is never refused, by design: only its negative data's answers are checked
    lenient = {(h.endpoint.method, h.endpoint.path) for h in HANDLERS if h.endpoint.body_lenient}
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in served:
            continue  # e.g. /api/v1/agents before the presence module serves it
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck), print_blob=False)
            def run(case) -> None:
                response = case.call(base_url=base_url, timeout=10)
                route = f"{case.operation.method.upper()} {case.operation.path}"
                statuses.setdefault(route, set()).add(response.status_code)
                checks = CHECKS
                if (case.operation.method.upper(), case.operation.path) in lenient:
                    checks = [check for check in CHECKS if check is not negative_data_rejection]
                case.validate_response(response, checks=checks)

            try:
                run()
            except Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE  # nothing can be wrong in a bare GET
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return failures


async def test_fuzz_finds_no_server_error_and_no_undocumented_response(live):
    app, client = live
    admin = Identity("fuzz-admin", "admin")
    await app[keys.OPERATIONS].staff.remember(admin)
    token = issue_token(app[keys.SETTINGS].jwt_secret_key, admin.user_id, admin.role)
    # something for the fuzzer to find: a conversation, a label and a team
    conversation = await app[keys.OPERATIONS].conversations.start(Identity("fuzz-customer", "customer"))
    assert conversation.id
    doc = await (await client.get("/api/openapi.json")).json()
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    base_url = str(client.make_url("")).rstrip("/")
    statuses: dict[str, set[int]] = {}
    failures = await asyncio.to_thread(_fuzz, doc, base_url, token, served, statuses)
    assert not failures, "\n\n".join(failures)
    # the fuzzer reached every served operation, and got past validation on the listings
    assert len(statuses) == len(served & {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops})
    assert 200 in statuses["GET /api/v1/conversations"] and 400 in statuses["GET /api/v1/conversations"]


async def test_the_canned_and_csat_endpoints_have_examples(api):
    status, doc = await api.call("GET", "/api/openapi.json")
    create = doc["paths"]["/api/v1/canned_responses"]["post"]
    assert create["requestBody"]["content"]["application/json"]["example"]["short_code"] == "thanks"
    patch = doc["paths"]["/api/v1/canned_responses/{id}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["example"]["content"]
    listing = doc["paths"]["/api/v1/csat"]["get"]["responses"]["200"]["content"]["application/json"]["example"]
    assert listing["items"][0]["score"] == 5
