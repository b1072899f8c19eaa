"""What every REST handler shares: the @endpoint decorator (auth, roles, body and query
validation), the error middleware (one JSON error shape for everything), the admin queries.

A handler is `async def handle_x(ctx, data=..., query=...)`: it gets a clean, validated
`data` (body) and/or `query`, returns the JSON body (or None for 204) and raises ChatError
subclasses (or domain errors that chat.errors.to_chat_error maps) for everything else.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote_to_bytes

import orjson
from aiohttp import web
from marshmallow import Schema, ValidationError

from chat import keys, logs, render
from chat.auth import ROLES, AuthError, Identity, verify_token
from chat.errors import ChatError, Forbidden, Invalid, RateLimited, Unauthenticated, to_chat_error
from states.record import Conversation

if TYPE_CHECKING:
    from chat.conversations import Operations
    from chat.store import Store

EVERYONE = ROLES
PUBLIC: tuple[str, ...] = ()  # no token at all: the login endpoints
STAFF = ("agent", "admin")  # agents may read and act as the WebSocket protocol lets them
ADMIN = ("admin",)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
WS_ROUTE = "ws"  # the name of GET /ws's route (chat.ws.transport)
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a caller's id is reused only when it is this tame
_CONVERSATION_PATHS = ("/api/v1/conversations/{id}", "/api/v1/sessions/{id}")  # where `{id}` names a conversation

# HTTP errors aiohttp raises itself (routing, body size) -> protocol codes
_HTTP_CODES = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 429: "rate_limited", 503: "unavailable"}


def dumps(value: Any) -> str:
    """JSON for responses (non-string keys, as in marshmallow's nested errors, become strings)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def error_response(error: ChatError, headers: Mapping[str, str] | None = None) -> web.Response:
    """`{"error": {"code", "message", "details"?}}` with the error's HTTP status."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        body["details"] = error.details
    headers = dict(headers or {})
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if isinstance(error, RateLimited) and error.retry_after_s:
        headers.setdefault("Retry-After", str(error.retry_after_s))
    return web.json_response({"error": body}, status=error.status, headers=headers, dumps=dumps)


def _from_http(exc: web.HTTPException) -> ChatError:
    text = (exc.text or "").strip()
    if exc.status == 413:
        message = "the request body is too large (the limit is 1 MiB)"
    elif text and not text.startswith(f"{exc.status}:"):
        message = text  # a handler's own explanation, e.g. a plain GET on /ws
    else:
        message = exc.reason
    error = ChatError(message)
    error.code = _HTTP_CODES.get(exc.status, "invalid" if exc.status < 500 else "internal")
    error.status = exc.status
    return error


def request_id_for(request: web.Request) -> str:
    """The caller's `X-Request-ID` when it is a plain token, else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _CLIENT_REQUEST_ID.fullmatch(given) else logs.new_request_id()


RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
def error_middleware(request: web.Request, handler: RequestHandler) -> Awaitable[web.StreamResponse]:
    """Turn every error (ours, aiohttp's 404/405/413, anything unexpected) into the error shape. Every
    request gets a request id (the caller's `X-Request-ID` when it is a plain token) for its log lines,
    its access-log line included. A path or query string that is not UTF-8 is refused here, on every
    route, before its handler runs.

    A WebSocket handshake on /ws that will succeed goes straight to its handler (its coroutine is
    returned, not awaited here): that handler runs for the socket's whole life, and nothing of this
    middleware (a frame, the request id, a log context) should be kept for each open socket. Its
    commands set their own log context; its refused token answers in the error shape itself, and a
    broken handshake (or one whose path or query is not UTF-8) still comes through here."""
    if (request.match_info.route.name == WS_ROUTE and web.WebSocketResponse().can_prepare(request).ok
            and _not_utf8(request) is None):
        return handler(request)
    return _guarded(request, handler)


def _not_utf8(request: web.Request) -> str | None:
    """The part of the request target ("path" or "query string") that, percent-decoded to bytes, is not
    UTF-8, else None. aiohttp would leave such a byte percent-encoded in the path and make it U+FFFD in the
    query; an encoded surrogate (`%ED%A0%80`) is not UTF-8 either."""
    path, _, query = request.raw_path.partition("?")
    for raw, what in ((path, "path"), (query, "query string")):
        try:
            unquote_to_bytes(raw.encode("utf-8", "surrogateescape")).decode("utf-8")
        except UnicodeError:
            return what
    return None


async def _guarded(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    request_id = request_id_for(request)
    with logs.request_log_context(request, request_id=request_id):
        try:
            if (what := _not_utf8(request)) is not None:
                raise Invalid(f"invalid {what}: not valid UTF-8")
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(_from_http(exc), {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers
                                      else None)
        except Exception as exc:  # noqa: BLE001 - to_chat_error logs what it does not know
            response = error_response(to_chat_error(exc))
    if not response.prepared:  # a WebSocket has sent its headers already
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


# --- the decorator -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A REST operation: its route, who may call it, its schemas, and what it answers."""

    method: str
    path: str
    summary: str
    tag: str
    roles: tuple[str, ...]
    body: Schema | None = None
    body_required: bool = True
    body_lenient: bool = False  # the body is never an error: what of it fails `body` is left out (logout)
    query: Schema | None = None
    response: type[Schema] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    description: str = ""
    path_doc: dict[str, str] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)  # "body", "response": shown in the OpenAPI document
    content: dict[str, Any] | None = None  # the success body by media type, when it is not `response` as JSON
    also: dict[int, str] = field(default_factory=dict)  # other success statuses (same body) and what they mean


@dataclass
class RequestCtx:
    """What a handler of a PUBLIC endpoint may use: the request, the operations, the store, the path."""

    request: web.Request

    @property
    def ops(self) -> Operations:
        """The conversation operations: the one path for state changes, shared with the WebSocket."""
        return self.request.app[keys.OPERATIONS]

    @property
    def store(self) -> Store:
        """The SQL store, by resource."""
        return self.request.app[keys.STORE]

    def param(self, name: str) -> str:
        """A path parameter."""
        return self.request.match_info[name]


@dataclass
class Ctx(RequestCtx):
    """What a handler may use: who asks (always authenticated), the operations, the store, the path."""

    identity: Identity

    async def public(self, conversation: Conversation) -> render.PublicConversation:
        """C of a live record, with its last_seq and labels from SQL."""
        last_seq, labels = await self.store.conversations.extras(conversation.id)
        return render.conversation(conversation, last_seq, labels)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token (Authorization: Bearer <jwt>)")
    return token.strip()


async def authenticate(request: web.Request, roles: tuple[str, ...]) -> Identity:
    """The token's identity, when its role is one of `roles` (401 without a valid token, else 403)."""
    try:
        identity = verify_token(request.app[keys.SETTINGS].jwt_verification_keys, _bearer(request))
    except AuthError as exc:
        raise Unauthenticated(str(exc)) from None
    # a token its account no longer admits is 401 first, whatever the route (the client refreshes on 401)
    if (refusal := await request.app[keys.ACCOUNTS].refusal(identity)) is not None:
        raise Unauthenticated(refusal.message)  # deactivated, or another role now: refresh (PROTOCOL 2.1)
    if identity.role not in roles:
        raise Forbidden(f"role {identity.role} may not do this")
    await request.app[keys.OPERATIONS].staff.remember(identity)  # agents must be known to be assigned
    return identity


def _validation_error(exc: ValidationError, what: str) -> Invalid:
    messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return Invalid(f"invalid {what}", messages)


def load_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The validated query string (valid UTF-8: error_middleware); a parameter given twice is invalid."""
    query = request.query
    repeated = sorted({k for k in query if len(query.getall(k)) > 1})
    if repeated:
        raise Invalid("invalid query string", {k: ["Given more than once."] for k in repeated})
    try:
        data: dict[str, Any] = schema.load(dict(query))
    except ValidationError as exc:
        raise _validation_error(exc, "query string") from None
    return data


async def load_body(request: web.Request, schema: Schema, required: bool) -> dict[str, Any]:
    """The validated JSON body (an object); an empty body is `{}` when the body is optional."""
    raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge -> 413
    if not raw:  # no body at all (white space alone is not a JSON document)
        if required:
            raise Invalid("a JSON object body is required")
        raw = b"{}"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid("the body must be a JSON object")
    try:
        data: dict[str, Any] = schema.load(value)
    except ValidationError as exc:
        raise _validation_error(exc, "body") from None
    return data


async def load_lenient_body(request: web.Request, schema: Schema) -> dict[str, Any]:
    """load_body for an endpoint that answers whatever it is sent: a body that is not JSON or not an object,
    is too large or fails `schema` is no error, only `{}` (`schema` leaves unknown fields out: EXCLUDE)."""
    try:
        return await load_body(request, schema, required=False)
    except (Invalid, web.HTTPRequestEntityTooLarge):
        return {}


Handler = Callable[..., Awaitable[Any]]  # handle_x(ctx, [data], [query]) -> JSON body, None (204) or a response


class EndpointHandler(Protocol):
    """An aiohttp handler made by @endpoint, carrying its declaration for the router and OpenAPI."""

    endpoint: Endpoint
    __name__: str

    def __call__(self, request: web.Request) -> Awaitable[web.StreamResponse]: ...


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    roles: tuple[str, ...],
    body: type[Schema] | None = None,
    body_required: bool = True,
    body_lenient: bool = False,
    query: type[Schema] | None = None,
    response: type[Schema] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    description: str = "",
    path_doc: dict[str, str] | None = None,
    examples: dict[str, Any] | None = None,
    content: dict[str, Any] | None = None,
    also: dict[int, str] | None = None,
) -> Callable[[Handler], EndpointHandler]:
    """Make `handler(ctx, [data], [query])` an aiohttp handler that authenticates, checks the role,
    validates, calls it and renders its result (JSON with `status`, or 204 for None). With
    `roles=PUBLIC` no token is asked for and the handler gets a RequestCtx; with `body_lenient` the
    handler gets what of the body passes `body`, and a bad body is no error."""
    spec = Endpoint(
        method=method, path=path, summary=summary, tag=tag, roles=roles,
        body=body() if body else None, body_required=body_required, body_lenient=body_lenient,
        query=query() if query else None,
        response=response, status=status, errors=errors, description=description, path_doc=path_doc or {},
        examples=examples or {},
        content=content, also=also or {},
    )

    def wrap(handler: Handler) -> EndpointHandler:
        @functools.wraps(handler)
        async def view(request: web.Request) -> web.StreamResponse:
            if not spec.roles:
                return await _call(spec, handler, RequestCtx(request))
            identity = await authenticate(request, spec.roles)
            conversation_id = request.match_info.get("id") if spec.path.startswith(_CONVERSATION_PATHS) else None
            with logs.request_log_context(request, user_id=identity.user_id, conversation_id=conversation_id):
                return await _call(spec, handler, Ctx(request, identity))

        made = cast(EndpointHandler, view)
        made.endpoint = spec
        return made

    return wrap


async def _call(spec: Endpoint, handler: Handler, ctx: RequestCtx) -> web.StreamResponse:
    """Validate the query and body, call the handler, render its result."""
    kwargs: dict[str, Any] = {}
    if spec.query is not None:
        kwargs["query"] = load_query(ctx.request, spec.query)
    if spec.body is not None and spec.body_lenient:
        kwargs["data"] = await load_lenient_body(ctx.request, spec.body)
    elif spec.body is not None:
        kwargs["data"] = await load_body(ctx.request, spec.body, spec.body_required)
    result = await handler(ctx, **kwargs)
    if result is None:
        return web.Response(status=204)
    if isinstance(result, web.StreamResponse):
        return result
    try:
        text = dumps(result)
    except orjson.JSONEncodeError:  # e.g. nested deeper than orjson goes: a 500 for this request only
        log.exception("the response of %s %s could not be encoded", spec.method, spec.path)
        raise ChatError("internal error: the response could not be encoded") from None
    return web.json_response(text=text, status=spec.status)
