"""JWT (HS256) tokens: issue for the CLI and the dev banner, verify for REST and WebSocket."""

from __future__ import annotations

import math
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt

from states.clock import now_ms

ROLES = ("customer", "agent", "admin")
ALGORITHMS = ["HS256"]  # the only one accepted: never `none`, never another HMAC or a public-key algorithm
_ROLE = {role: role for role in ROLES}  # a token's role as the one shared string (each socket keeps its identity)
MAX_SUB_CHARS = 64
# How far an issuer's clock may run ahead of ours: a token it has just minted carries an `iat` (or `nbf`)
# a little in our future, and is good. `exp` has no such leeway.
CLOCK_SKEW_S = 60
MAX_EXP = 2**53 - 1  # the largest integer every JSON reader (a browser's too) holds exactly


class AuthError(Exception):
    """The token is missing, malformed, expired, badly signed or names an unknown role."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for (one per open socket: slots keep it small)."""

    user_id: str
    role: str
    name: str | None = None
    teams: tuple[str, ...] = field(default_factory=tuple)
    exp: int | None = None  # the token's expiry (epoch seconds); None for identities not read from a token
    iat: float | None = None  # when the token was issued (epoch seconds); None: it has no `iat`, or no token

    @property
    def is_agent(self) -> bool:
        """Agents and admins may do what agents do."""
        return self.role in ("agent", "admin")

    @property
    def is_admin(self) -> bool:
        """Only admins."""
        return self.role == "admin"

    @property
    def speaker(self) -> str:
        """Who this identity is in a conversation, as `typing` names its sender: `agent:<id>` (admins too)
        or `customer:<id>` (an agent and a customer may share an id string)."""
        return f"{'agent' if self.is_agent else 'customer'}:{self.user_id}"


def issue_token(
    secret: str,
    sub: str,
    role: str,
    *,
    ttl_s: int = 3600,
    name: str | None = None,
    teams: list[str] | None = None,
) -> str:
    """A token with `sub`, `role`, `iat`, `exp`, a random `jti` (and `name`, `teams` when given), signed
    HS256 with `secret`: the current JWT_SECRET_KEY, never a previous one."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not _valid_sub(sub):  # never a token that verify_token refuses for its claims (an expired one, tests make)
        raise ValueError(f"sub must be a string of 1 to {MAX_SUB_CHARS} characters without control characters")
    now = now_ms() // 1000  # the service's one wall clock: the time an account's tokens count from is read there too
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + int(ttl_s),
                              "jti": uuid.uuid4().hex}
    if name:
        claims["name"] = name
    if teams:
        claims["teams"] = list(teams)
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(keys: str | tuple[str, ...], token: object) -> Identity:
    """Check signature, algorithm, expiry and the claims (PROTOCOL section 2); return the identity.
    `keys` is one key, or the keys a token may be signed with (`Settings.jwt_verification_keys`: the
    current one, then those it replaced). `token` is what the client sent (an auth frame's field may be
    any JSON value): anything but a string is refused. The error messages never repeat the token."""
    if not token or not isinstance(token, str):
        raise AuthError("missing token")
    try:
        claims = _decode((keys,) if isinstance(keys, str) else keys, token)
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None  # PyJWT's messages never quote the token
    exp, sub, role = claims["exp"], claims["sub"], claims["role"]
    if type(exp) is not int or exp > MAX_EXP:  # PyJWT takes a float exp (and a bool is an int subclass)
        raise AuthError(f"invalid token: exp must be an integer of at most {MAX_EXP}")
    for claim in ("iat", "nbf"):  # checked here rather than by PyJWT, to allow for the issuer's clock
        value = claims.get(claim)
        if value is None:
            continue
        if type(value) not in (int, float) or not math.isfinite(value):  # not a bool, NaN or infinity
            raise AuthError(f"invalid token: {claim} must be a number")
        if value > now_ms() / 1000 + CLOCK_SKEW_S:
            raise AuthError(f"invalid token: {claim} is in the future")
    if not _valid_sub(sub):
        raise AuthError(f"invalid token: sub must be a string of 1 to {MAX_SUB_CHARS} characters without control "
                        "characters")
    role = _ROLE.get(role) if isinstance(role, str) else None
    if role is None:
        raise AuthError("invalid token: unknown role")
    teams = claims.get("teams", [])  # absent is none; any other type, a falsy one too, is refused
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        raise AuthError("invalid token: teams must be a list of strings")
    name = claims.get("name")
    return Identity(user_id=sub, role=role, name=name if isinstance(name, str) else None, teams=tuple(teams),
                    exp=exp, iat=claims.get("iat"))


def _decode(keys: tuple[str, ...], token: str) -> dict[str, Any]:
    """The claims of a token signed with one of `keys` (tried in order: the current key first).

    Only a bad signature moves on to the next key: any other error (malformed, another algorithm,
    expired, a missing claim) is the same whichever key is tried, and is raised at once."""
    if not keys or not all(keys):
        raise ValueError("verify_token needs at least one key, none of them empty")
    for key in keys[:-1]:
        try:
            return _decode_with(key, token)
        except jwt.InvalidSignatureError:
            continue
    return _decode_with(keys[-1], token)


def _decode_with(key: str, token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=ALGORITHMS,
                                        options={"require": ["exp", "sub", "role"], "verify_iat": False,
                                                 "verify_nbf": False})
    if "aud" in claims:  # PyJWT lets an empty one ([], "", null) through when no audience is expected
        raise jwt.InvalidAudienceError("a token with an audience (aud) is refused: none is configured")
    return claims


def _valid_sub(sub: object) -> bool:
    return (isinstance(sub, str) and 0 < len(sub) <= MAX_SUB_CHARS
            and not any(unicodedata.category(c) == "Cc" for c in sub))
