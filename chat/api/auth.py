"""Staff login over REST (PROTOCOL 2.1): POST /api/v1/auth/login, /refresh and /logout, no token needed.

Two ways to hold the refresh token. API clients get it in the body and send it back in the body.
A browser (the console) asks for the cookie form with `"cookie": true`: the refresh token is then
set as the cookie `chat_refresh` (HttpOnly, SameSite=Strict, Path=/api/v1/auth, Secure over https)
and never shown to scripts; /refresh and /logout read the cookie when the body names no token. A
token read from the cookie is answered in the cookie too, so the browser never keeps a used one
(presenting that again would end the session).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import EXCLUDE, fields, validate

from chat import keys
from chat.api.common import PUBLIC, RequestCtx, dumps, endpoint, error_response
from chat.api.schemas import Body, Out, UserId
from chat.api.users import UserOut
from chat.client_address import client_address, over_https
from chat.errors import Unauthenticated
from chat.login import Tokens
from chat.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from chat.ws.registry import StrictBoolean

REFRESH_COOKIE = "chat_refresh"
COOKIE_PATH = "/api/v1/auth"
MAX_REFRESH_TOKEN_CHARS = 256  # ours are 43; anything much longer is not one

_EXAMPLE_USER = {"id": "ann", "role": "agent", "name": "Ann", "active": True, "max_chats": 5,
                 "teams": ["billing"], "created_at": "2026-12-01T09:00:00Z", "has_password": True}
_EXAMPLE_TOKENS = {"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl",
                   "token_type": "Bearer", "expires_in": 900,
                   "refresh_token": "q3R8iLr0c7mKQ2bqvN1yT6wXo5aZs4dUe9fGh0jKl2M", "user": _EXAMPLE_USER}
_COOKIE_DOC = ('With `"cookie": true` the refresh token is not in the body but set as the cookie `chat_refresh` '
               "(HttpOnly; SameSite=Strict; Path=/api/v1/auth; Secure when the request came over https; "
               "Max-Age = REFRESH_TOKEN_TTL_S).")


def Cookie(**kwargs: Any) -> fields.Boolean:  # noqa: N802 - a field factory reads like a field class
    """`cookie`: true for the browser form (the refresh token travels in the `chat_refresh` cookie)."""
    return StrictBoolean(load_default=False, metadata={"description": _COOKIE_DOC}, **kwargs)


def RefreshToken(**kwargs: Any) -> fields.String:  # noqa: N802
    """A refresh token as issued (opaque)."""
    return fields.String(validate=validate.Length(min=1, max=MAX_REFRESH_TOKEN_CHARS), **kwargs)


class LoginBody(Body):
    """A staff member's user id and password."""

    user_id = UserId(required=True)
    password = fields.String(required=True, validate=validate.Length(min=MIN_PASSWORD_CHARS, max=MAX_PASSWORD_CHARS))
    cookie = Cookie()


class RefreshBody(Body):
    """The refresh token; without it, the `chat_refresh` cookie."""

    refresh_token = RefreshToken(metadata={"description": "omit it to use the `chat_refresh` cookie"})
    cookie = Cookie()


class LogoutBody(Body):
    """The refresh token of the session to end; without it, the `chat_refresh` cookie. Nothing else in the
    body is an error (the endpoint is lenient: a logout always succeeds)."""

    class Meta:
        unknown = EXCLUDE

    refresh_token = RefreshToken(metadata={"description": "omit it to use the `chat_refresh` cookie"})


class TokensOut(Out):
    """A new access token and refresh token."""

    access_token = fields.String(required=True, metadata={"description": "a JWT for `Authorization: Bearer`"})
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_in = fields.Integer(required=True, metadata={"description": "seconds the access token is valid"})
    refresh_token = fields.String(metadata={"description": "good for one /refresh; absent in the cookie form"})
    user = fields.Nested(UserOut, required=True)


def _tokens_response(request: web.Request, tokens: Tokens, *, cookie: bool) -> web.Response:
    response = web.json_response(text=dumps(tokens.body(with_refresh_token=not cookie)))
    if cookie:
        response.set_cookie(REFRESH_COOKIE, tokens.refresh_token, max_age=tokens.refresh_expires_in,
                             path=COOKIE_PATH, httponly=True, samesite="Strict", secure=over_https(request))
    return response


def _refresh_token(ctx: RequestCtx, data: dict[str, Any]) -> tuple[str | None, bool]:
    """The token of the body, else of the cookie; and whether it came from the cookie."""
    if "refresh_token" in data:
        return data["refresh_token"], False
    token = ctx.request.cookies.get(REFRESH_COOKIE)
    return (token, True) if token else (None, False)


@endpoint(
    "POST", "/api/v1/auth/login", summary="Log in (agents and admins)", tag="auth", roles=PUBLIC, body=LoginBody,
    response=TokensOut, errors=(401, 429),
    description="A wrong user id, a wrong password, a deactivated account and one without a password are the "
                "same 401. Failed logins are limited per user id (LOGIN_FAILURES_PER_ACCOUNT) and per client "
                "address (LOGIN_FAILURES_PER_ADDRESS) in LOGIN_FAILURE_WINDOW_S: then 429 with Retry-After. "
                + _COOKIE_DOC,
    examples={"body": {"user_id": "ann", "password": "correct horse battery staple"}, "response": _EXAMPLE_TOKENS},
)
async def handle_login(ctx: RequestCtx, data: dict[str, Any]) -> web.Response:
    """An access token and a refresh token for a staff member's password."""
    tokens = await ctx.request.app[keys.LOGIN].login(data["user_id"], data["password"], client_address(ctx.request))
    return _tokens_response(ctx.request, tokens, cookie=data["cookie"])


@endpoint(
    "POST", "/api/v1/auth/refresh", summary="Exchange a refresh token for a new pair", tag="auth", roles=PUBLIC,
    body=RefreshBody, body_required=False, response=TokensOut, errors=(401,),
    description="Each refresh token is good once. Presenting one that was used already revokes every token of "
                "its login (401), the one it was exchanged for included. A token from the `chat_refresh` cookie "
                "is answered in the cookie. " + _COOKIE_DOC,
    examples={"body": {"refresh_token": _EXAMPLE_TOKENS["refresh_token"]}, "response": _EXAMPLE_TOKENS},
)
async def handle_refresh(ctx: RequestCtx, data: dict[str, Any]) -> web.Response:
    """A new pair; the presented refresh token is used up."""
    token, from_cookie = _refresh_token(ctx, data)
    try:
        if token is None:
            raise Unauthenticated("no refresh token: send `refresh_token`, or the `chat_refresh` cookie")
        tokens = await ctx.request.app[keys.LOGIN].refresh(token)
    except Unauthenticated as exc:
        response = error_response(exc)
        if from_cookie:  # it will never work again: the browser need not keep it
            response.del_cookie(REFRESH_COOKIE, path=COOKIE_PATH)
        return response
    return _tokens_response(ctx.request, tokens, cookie=data["cookie"] or from_cookie)


@endpoint(
    "POST", "/api/v1/auth/logout", summary="End a session", tag="auth", roles=PUBLIC, body=LogoutBody,
    body_required=False, body_lenient=True, status=204,
    description="Revokes the refresh token and every token rotated from the same login, and clears the "
                "`chat_refresh` cookie. 204 whatever the body: an unknown or already revoked token, other fields, "
                "a body that is not JSON are no error; without a usable `refresh_token` (a string of 1 to 256 "
                "characters) the cookie's session ends. Access tokens already issued run out by themselves "
                "(ACCESS_TOKEN_TTL_S).",
    examples={"body": {"refresh_token": _EXAMPLE_TOKENS["refresh_token"]}},
)
async def handle_logout(ctx: RequestCtx, data: dict[str, Any]) -> web.Response:
    """204; the cookie is cleared."""
    token, _ = _refresh_token(ctx, data)
    if token is not None:
        await ctx.request.app[keys.LOGIN].logout(token)
    response = web.Response(status=204)
    response.del_cookie(REFRESH_COOKIE, path=COOKIE_PATH)
    return response


HANDLERS = (handle_login, handle_refresh, handle_logout)
