"""JWT (HS256) tokens: issue for the CLI and the dev banner, verify for REST and WebSocket."""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import jwt

ROLES = ("customer", "agent", "admin")
_ROLE = {role: role for role in ROLES}  # a token's role as the one shared string (each socket keeps its identity)
MAX_SUB_CHARS = 64


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

    @property
    def is_agent(self) -> bool:
        """Agents and admins may do what agents do."""
        return self.role in ("agent", "admin")

    @property
    def is_admin(self) -> bool:
        """Only admins."""
        return self.role == "admin"


def issue_token(
    secret: str,
    sub: str,
    role: str,
    *,
    ttl_s: int = 3600,
    name: str | None = None,
    teams: list[str] | None = None,
) -> str:
    """A signed HS256 token with `sub`, `role`, `exp` (and `name`, `teams` when given)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(sub), "role": role, "iat": now, "exp": now + int(ttl_s)}
    if name:
        claims["name"] = name
    if teams:
        claims["teams"] = list(teams)
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: object) -> Identity:
    """Check signature, algorithm, expiry and the claims (PROTOCOL section 2); return the identity.
    `token` is what the client sent (an auth frame's field may be any JSON value): anything but a
    string is refused. The error messages never repeat the token."""
    if not token or not isinstance(token, str):
        raise AuthError("missing token")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "role"]})
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None  # PyJWT's messages never quote the token
    exp, sub, role = claims["exp"], claims["sub"], claims["role"]
    if type(exp) is not int:  # PyJWT takes a float exp (and a bool is an int subclass)
        raise AuthError("invalid token: exp must be an integer")
    if not _valid_sub(sub):
        raise AuthError(f"invalid token: sub must be a string of 1 to {MAX_SUB_CHARS} characters without control "
                        "characters")
    role = _ROLE.get(role) if isinstance(role, str) else None
    if role is None:
        raise AuthError("invalid token: unknown role")
    teams = claims.get("teams") or []
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        raise AuthError("invalid token: teams must be a list of strings")
    name = claims.get("name")
    return Identity(user_id=sub, role=role, name=name if isinstance(name, str) else None, teams=tuple(teams),
                    exp=exp)


def _valid_sub(sub: object) -> bool:
    return (isinstance(sub, str) and 0 < len(sub) <= MAX_SUB_CHARS
            and not any(unicodedata.category(c) == "Cc" for c in sub))
