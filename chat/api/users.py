"""Staff accounts over REST (PROTOCOL 2.1), admins only: GET|POST /api/v1/users, GET|PATCH /api/v1/users/{id}.

A user object never carries the password hash, only `has_password`. Deactivating a user or giving
it a new password revokes its refresh tokens and records the moment its access tokens count from (in
the same SQL transaction). A change of `active`, role or password is then announced, so every instance
forgets what it cached of the account: a deactivated user's sockets close (4403) and its access tokens
stop working (those issued before the deactivation for good, a reactivation too); so do those of an
account's sockets and tokens issued before a new password (4401; a login gives a new one) or that name
its old role (4401; a refresh gives a token with the new one).

A change that would leave no active admin is refused (409), and so is a deactivated account joining a
team (409; POST /api/v1/teams/{id}/members refuses it too, with its 404). The CLI, the way back in, is not
held to the first.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from chat import keys
from chat.api.common import ADMIN, Ctx, endpoint
from chat.api.schemas import DATE_TIME, Body, Id, Out, UserId, page_of
from chat.errors import Conflict, Invalid, NotFound
from chat.limits import counter_range
from chat.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, hash_password
from chat.store.accounts import InactiveJoins, LastAdmin, User
from chat.store.db import DuplicateKey, IntegrityError
from chat.store.staff import STAFF_ROLES
from chat.ws.registry import StrictBoolean

USER_DOC = {"id": "the user id"}
MAX_TEAMS = 100


def Password(**kwargs: Any) -> fields.String:  # noqa: N802
    """A new password: 1 to 1024 characters (argon2id-hashed, never stored or shown)."""
    metadata = {"description": "1 to 1024 characters; stored only as an argon2id hash", **kwargs.pop("metadata", {})}
    return fields.String(validate=validate.Length(min=MIN_PASSWORD_CHARS, max=MAX_PASSWORD_CHARS),
                         metadata=metadata, **kwargs)


def _name(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=255), allow_none=True, **kwargs)


def _max_chats(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=counter_range(minimum=1), allow_none=True,
                          metadata={"description": "the agent's capacity; null: AGENT_MAX_CHATS"}, **kwargs)


def _teams(**kwargs: Any) -> fields.List[Any]:
    return fields.List(Id(), validate=validate.Length(max=MAX_TEAMS),
                       metadata={"description": "team ids (each must exist); replaces the memberships"}, **kwargs)


class UserOut(Out):
    """An agent's or admin's account."""

    id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(STAFF_ROLES))
    name = fields.String(required=True, allow_none=True)
    active = fields.Boolean(required=True)
    max_chats = fields.Integer(required=True, allow_none=True)
    teams = fields.List(fields.String(), required=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    has_password = fields.Boolean(required=True, metadata={"description": "false: it cannot log in until set"})


UserPage = page_of("UserPage", UserOut, "always null: every account is listed")


class UserBody(Body):
    """A new account; without a password it cannot log in until one is set."""

    id = UserId(required=True)
    role = fields.String(required=True, validate=validate.OneOf(STAFF_ROLES))
    name = _name(load_default=None)
    max_chats = _max_chats(load_default=None)
    teams = _teams(load_default=list)
    password = Password()


class UserPatchBody(Body):
    """The fields to change (an empty object changes nothing)."""

    role = fields.String(validate=validate.OneOf(STAFF_ROLES),
                         metadata={"description": "its access tokens naming the old role are refused (401) and "
                                                  "its sockets with them closed (4401) on every instance; a "
                                                  "refresh gives a token with the new role"})
    name = _name()
    active = StrictBoolean(metadata={"description": "false: its refresh tokens are revoked, its access tokens "
                                                    "refused and its sockets closed (4403) on every instance; the "
                                                    "access tokens issued until then stay refused after true"})
    max_chats = _max_chats()
    teams = _teams()
    password = Password(metadata={"description": "a new password (1 to 1024 characters); revokes the user's "
                                                 "refresh tokens and refuses its access tokens issued before it "
                                                 "(401; their sockets closed with 4401)"})


async def _check_teams(ctx: Ctx, teams: list[str] | None) -> None:
    unknown = [t for t in dict.fromkeys(teams or []) if not await ctx.store.teams.exists(t)]
    if unknown:
        raise Invalid("invalid body", {"teams": [f"Unknown team {t!r}." for t in unknown]})


@endpoint("GET", "/api/v1/users", summary="List the accounts", tag="users", roles=ADMIN, response=UserPage)
async def handle_list_users(ctx: Ctx) -> dict[str, Any]:
    """Every agent and admin, by id."""
    return {"items": await ctx.store.accounts.all(), "next_cursor": None}


@endpoint(
    "POST", "/api/v1/users", summary="Create an account", tag="users", roles=ADMIN, body=UserBody,
    response=UserOut, status=201, errors=(400, 409, 413),
    description="An id already in use is 409: an agent's or admin's (an account, or a token-only user), or a "
                "customer's (one with a conversation or a contact row); an unknown team is 400.",
    examples={"body": {"id": "ann", "role": "agent", "name": "Ann", "max_chats": 5, "teams": [],
                       "password": "correct horse battery staple"}},
)
async def handle_create_user(ctx: Ctx, data: dict[str, Any]) -> User:
    """A new agent or admin."""
    await _check_teams(ctx, data["teams"])
    password_hash = await hash_password(data["password"]) if "password" in data else None
    try:
        return await ctx.store.accounts.create(data["id"], data["role"], name=data["name"],
                                               max_chats=data["max_chats"], password_hash=password_hash,
                                               teams=data["teams"])
    except DuplicateKey:
        raise Conflict(f"the user id {data['id']!r} is already in use", {"id": ["Already in use."]}) from None
    except IntegrityError:  # a team deleted meanwhile
        raise Invalid("invalid body", {"teams": ["Unknown team."]}) from None


@endpoint("GET", "/api/v1/users/{id}", summary="Get an account", tag="users", roles=ADMIN, response=UserOut,
          errors=(404,), path_doc=USER_DOC)
async def handle_get_user(ctx: Ctx) -> User:
    """One agent or admin."""
    user = await ctx.store.accounts.get(ctx.param("id"))
    if user is None:
        raise NotFound("user not found")
    return user


@endpoint(
    "PATCH", "/api/v1/users/{id}", summary="Change an account", tag="users", roles=ADMIN, body=UserPatchBody,
    response=UserOut, errors=(400, 404, 409, 413), path_doc=USER_DOC,
    description="`active: false` takes effect everywhere within seconds: refresh tokens revoked, access tokens "
                "refused on REST, sockets closed with 4403; the access tokens issued until then stay refused once "
                "it is active again. A new password revokes the refresh tokens and refuses the access tokens "
                "issued before it (401 on REST, sockets closed with 4401; a token of the change's second still "
                "counts: `iat` has whole seconds). A new `role` does too for the tokens naming the old "
                "one (of an account with a password): 401 on REST, sockets closed with 4401, and a refresh "
                "gives a token with the new role. 409 for a change "
                "that would leave no active admin, and for `teams` that add a team to a deactivated account "
                "(one that stays or becomes deactivated; leaving teams is fine).",
    examples={"body": {"active": False}},
)
async def handle_update_user(ctx: Ctx, data: dict[str, Any]) -> User:
    """Change role, name, active, max_chats, teams and/or the password."""
    await _check_teams(ctx, data.get("teams"))
    changes = {k: v for k, v in data.items() if k != "password"}
    if "password" in data:
        changes["password_hash"] = await hash_password(data["password"])
    user_id = ctx.param("id")
    try:
        user = await ctx.store.accounts.update(user_id, changes, keep_an_admin=True)
    except IntegrityError:  # a team deleted meanwhile
        raise Invalid("invalid body", {"teams": ["Unknown team."]}) from None
    except LastAdmin:
        raise Conflict(f"{user_id} is the last active admin: make another account an admin first",
                       {k: ["It would leave no active admin."] for k, removes in
                        (("role", data.get("role", "admin") != "admin"), ("active", data.get("active") is False))
                        if removes}) from None
    except InactiveJoins as exc:
        raise Conflict(f"{user_id} is deactivated: it joins no team (activate it first, or with "
                       '"active": true in the same request)',
                       {"teams": [f"Cannot join {team!r} while deactivated." for team in exc.teams]}) from None
    if user is None:
        raise NotFound("user not found")
    if data.keys() & {"active", "role", "password"}:  # committed: every instance forgets its cached answer
        await ctx.request.app[keys.REVOCATION].changed(user["id"])  # and closes the sockets it no longer admits
    return user


HANDLERS = (handle_list_users, handle_create_user, handle_get_user, handle_update_user)
