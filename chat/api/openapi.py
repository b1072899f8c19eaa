"""GET /api/openapi.json: the OpenAPI 3 document, generated from the same marshmallow schemas
(apispec's MarshmallowPlugin) and the same @endpoint declarations that serve the requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from chat.api.common import EVERYONE, EndpointHandler, dumps
from chat.api.schemas import ConversationOut, ErrorOut, EventOut, ExportLineOut, MessageOut, Out, TranscriptOut

TITLE = "chat-api"
VERSION = "1.0.0"
OPENAPI_VERSION = "3.0.3"
DOCUMENT_PATH = "/api/openapi.json"

INTRO = (
    "Admin REST API of the customer-support chat service (PROTOCOL.md section 6). "
    "Authenticate with `Authorization: Bearer <jwt>` (HS256; claims sub, role, exp). "
    "Every error is `{\"error\": {\"code\", \"message\", \"details\"?}}`. Lists are "
    "`{\"items\": [...], \"next_cursor\": string|null}`. Unknown routes answer 404 and wrong methods 405, "
    "in the same error shape. The WebSocket protocol lives at GET /ws (not described here)."
)

ERROR_TEXT = {
    400: "invalid: a malformed body or query string, or a field that fails validation (details)",
    401: "unauthenticated: no token, or a bad, expired or unknown-role token",
    403: "forbidden: the caller's role (or relation to the conversation) does not allow it",
    404: "not_found",
    409: "conflict: the state machine refuses the transition, another actor won a race, or a duplicate",
    413: "too_large: the body is over 1 MiB",
    429: "rate_limited: over a rate limit (conversation starts per user, failed logins per user id and per "
         "address); `Retry-After` says in how many seconds to try again",
    503: "unavailable: Redis or the database is down",
}


class HealthOut(Out):
    """The health of the service and its dependencies."""

    status = fields.String(required=True, metadata={"enum": ["ok", "degraded"]})
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "redis, database, ai: \"ok\" or what failed"})


def _resolver(schema: Schema | type[Schema]) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Out")


def _json(schema: Schema | type[Schema] | dict[str, Any] | None, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RETRY_AFTER = {"Retry-After": {"description": "seconds until a retry may succeed",
                               "schema": {"type": "integer", "minimum": 1}}}


def _error_responses(codes: Iterable[int]) -> dict[str, Any]:
    responses = {str(code): _json(ErrorOut, ERROR_TEXT[code]) for code in sorted(set(codes))}
    if "429" in responses:
        responses["429"]["headers"] = RETRY_AFTER
    return responses


def _operation(handler: EndpointHandler) -> dict[str, Any]:
    spec = handler.endpoint
    names = re.findall(r"{(\w+)}", spec.path)
    parameters: list[dict[str, Any]] = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string", "minLength": 1},
         "description": spec.path_doc.get(name, "")}
        for name in names
    ]
    if spec.query is not None:
        parameters.append({"in": "query", "schema": type(spec.query)})
    errors = set(spec.errors) | {503}
    checked_body = spec.body is not None and not spec.body_lenient  # a lenient body is never an error
    if spec.query is not None or checked_body or names:
        errors.add(400)
    if checked_body:
        errors.add(413)
    if spec.roles:
        errors.add(401)
    if spec.roles and set(spec.roles) != set(EVERYONE):
        errors.add(403)
    success: dict[str, Any] = {"204": {"description": "done (no body)"}}
    if spec.status != 204:
        content = spec.content or {"application/json": {"schema": spec.response}}
        if "response" in spec.examples:
            content = {media: {**body, "example": spec.examples["response"]} for media, body in content.items()}
        success = {str(spec.status): {"description": "success", "content": content}}
        success.update({str(status): {"description": text, "content": content} for status, text in spec.also.items()})
    operation: dict[str, Any] = {
        "operationId": handler.__name__.removeprefix("handle_"),
        "summary": spec.summary,
        "tags": [spec.tag],
        "parameters": parameters,
        "responses": {**success, **_error_responses(errors)},
        "security": [{"bearerAuth": []}] if spec.roles else [],
    }
    who = f"roles: {', '.join(spec.roles)}" if spec.roles else "no token"
    operation["description"] = f"{spec.description} ({who})".strip()
    if spec.body is not None:
        body: dict[str, Any] = {"schema": type(spec.body)}
        if "body" in spec.examples:
            body["example"] = spec.examples["body"]
        operation["requestBody"] = {"required": spec.body_required, "content": {"application/json": body}}
    return operation


def _extra_paths(spec: APISpec, handled: set[str]) -> None:
    """Routes served outside the @endpoint modules: health, metrics, this document."""
    spec.path(path="/health", operations={"get": {
        "operationId": "health", "summary": "Health of the service", "tags": ["service"], "security": [],
        "responses": {"200": _json(HealthOut, "every check ok"),
                      "503": _json(HealthOut, "degraded: a dependency failed")},
    }})
    spec.path(path="/metrics", operations={"get": {
        "operationId": "metrics", "summary": "Prometheus metrics", "tags": ["service"], "security": [],
        "responses": {"200": {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }})
    spec.path(path=DOCUMENT_PATH, operations={"get": {
        "operationId": "openapi", "summary": "This document", "tags": ["service"], "security": [],
        "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {
            "type": "object"}}}}},
    }})


@lru_cache(maxsize=4)
def build_document(handlers: tuple[EndpointHandler, ...]) -> dict[str, Any]:
    """The OpenAPI document of these @endpoint handlers (plus health and metrics)."""
    spec = APISpec(
        title=TITLE, version=VERSION, openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin(schema_name_resolver=_resolver)],
        info={"description": INTRO},
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    for schema in (ConversationOut, MessageOut, EventOut, ErrorOut, TranscriptOut, ExportLineOut):
        spec.components.schema(_resolver(schema), schema=schema)
    _extra_paths(spec, {handler.endpoint.path for handler in handlers})
    for handler in handlers:
        spec.path(path=handler.endpoint.path, operations={handler.endpoint.method.lower(): _operation(handler)})
    document: dict[str, Any] = spec.to_dict()
    return document


def register(app: web.Application, handlers: tuple[EndpointHandler, ...]) -> None:
    """Serve the document of `handlers` at GET /api/openapi.json (no auth)."""
    body = dumps(build_document(handlers))

    async def handle_openapi(request: web.Request) -> web.Response:
        """The OpenAPI 3 document."""
        return web.Response(text=body, content_type="application/json")

    app.router.add_get(DOCUMENT_PATH, handle_openapi)

