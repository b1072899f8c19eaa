"""Teams and their members (writes: admins only)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from chat.api.common import ADMIN, STAFF, Ctx, endpoint
from chat.api.schemas import DATE_TIME, Body, Description, Id, Out, Title, page_of
from chat.errors import Conflict, NotFound
from chat.store.db import DuplicateKey, IntegrityError
from chat.store.teams import Member, Team

TEAM_DOC = {"id": "the team id"}


class TeamOut(Out):
    """A team."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    updated_at = fields.String(required=True, metadata=DATE_TIME)


class MemberOut(Out):
    """A team member (an agent or admin)."""

    team_id = fields.String(required=True)
    user_id = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    role = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)


TeamPage = page_of("TeamPage", TeamOut, "always null: every team is listed")
MemberPage = page_of("MemberPage", MemberOut, "always null: every member is listed")


class TeamBody(Body):
    """A new team; the name is unique."""

    name = Title(required=True)
    description = Description(load_default=None)


class TeamPatchBody(Body):
    """The fields to change (an empty object changes nothing)."""

    name = Title()
    description = Description()


class MemberBody(Body):
    """The agent (or admin) to add; it must be known to the service (it has signed in once)."""

    user_id = Id(required=True)


def _duplicate_name(name: str) -> Conflict:
    return Conflict(f"a team named {name!r} already exists", {"name": ["Already in use."]})


async def _team_or_404(ctx: Ctx) -> Team:
    team = await ctx.store.teams.get(ctx.param("id"))
    if team is None:
        raise NotFound("team not found")
    return team


@endpoint("GET", "/api/v1/teams", summary="List teams", tag="teams", roles=STAFF, response=TeamPage)
async def handle_list_teams(ctx: Ctx) -> dict[str, Any]:
    """Every team, by name."""
    return {"items": await ctx.store.teams.all(), "next_cursor": None}


@endpoint(
    "POST", "/api/v1/teams", summary="Create a team", tag="teams", roles=ADMIN, body=TeamBody, response=TeamOut,
    status=201, errors=(400, 409, 413), description="A name already in use is 409 conflict.",
    examples={"body": {"name": "billing", "description": "invoices, refunds and payment problems"}},
)
async def handle_create_team(ctx: Ctx, data: dict[str, Any]) -> Team:
    """A new team."""
    try:
        return await ctx.store.teams.create(data["name"], data["description"])
    except DuplicateKey:
        raise _duplicate_name(data["name"]) from None


@endpoint("GET", "/api/v1/teams/{id}", summary="Get a team", tag="teams", roles=STAFF, response=TeamOut,
          errors=(404,), path_doc=TEAM_DOC)
async def handle_get_team(ctx: Ctx) -> Team:
    """One team."""
    return await _team_or_404(ctx)


@endpoint(
    "PATCH", "/api/v1/teams/{id}", summary="Change a team", tag="teams", roles=ADMIN, body=TeamPatchBody,
    response=TeamOut, errors=(400, 404, 409, 413), path_doc=TEAM_DOC,
    examples={"body": {"description": "invoices, refunds, payment problems and VAT questions"}},
)
async def handle_update_team(ctx: Ctx, data: dict[str, Any]) -> Team:
    """Change name and/or description."""
    try:
        team = await ctx.store.teams.update(ctx.param("id"), data)
    except DuplicateKey:
        raise _duplicate_name(data["name"]) from None
    if team is None:
        raise NotFound("team not found")
    return team


@endpoint(
    "DELETE", "/api/v1/teams/{id}", summary="Delete a team", tag="teams", roles=ADMIN, status=204, errors=(404,),
    path_doc=TEAM_DOC, description="Its memberships go with it; conversations keep their team_id.",
)
async def handle_delete_team(ctx: Ctx) -> None:
    """204, or 404."""
    if not await ctx.store.teams.delete(ctx.param("id")):
        raise NotFound("team not found")


@endpoint("GET", "/api/v1/teams/{id}/members", summary="List the members of a team", tag="teams", roles=STAFF,
          response=MemberPage, errors=(404,), path_doc=TEAM_DOC)
async def handle_list_members(ctx: Ctx) -> dict[str, Any]:
    """Members by user id."""
    team = await _team_or_404(ctx)
    return {"items": await ctx.store.teams.members(team["id"]), "next_cursor": None}


@endpoint(
    "POST", "/api/v1/teams/{id}/members", summary="Add a member", tag="teams", roles=ADMIN, body=MemberBody,
    response=MemberOut, status=201, errors=(400, 404, 409, 413), path_doc=TEAM_DOC,
    examples={"body": {"user_id": "agent-7"}},
    description="404 when the team is unknown, or the user is no known, active agent or admin (an agent is "
                "known once it has signed in); 409 when it is already a member (a deactivated account keeps "
                "its memberships).",
)
async def handle_add_member(ctx: Ctx, data: dict[str, Any]) -> Member:
    """Add an agent to the team."""
    team = await _team_or_404(ctx)
    user_id = data["user_id"]
    try:
        member = await ctx.store.teams.add_member(team["id"], user_id)
    except DuplicateKey:
        raise Conflict(f"{user_id} is already a member of this team") from None
    except IntegrityError:  # the team was deleted meanwhile
        raise NotFound("team not found") from None
    if member is not None:
        return member
    if await ctx.store.teams.is_member(team["id"], user_id):  # deactivated since it joined
        raise Conflict(f"{user_id} is already a member of this team (its account is deactivated)")
    raise NotFound(f"agent {user_id} not found", {"user_id": ["Unknown agent."]})


@endpoint(
    "DELETE", "/api/v1/teams/{id}/members/{user_id}", summary="Remove a member", tag="teams", roles=ADMIN,
    status=204, errors=(404,), path_doc={**TEAM_DOC, "user_id": "the member's user id"},
)
async def handle_remove_member(ctx: Ctx) -> None:
    """204, or 404 when it is not a member."""
    if not await ctx.store.teams.remove_member(ctx.param("id"), ctx.param("user_id")):
        raise NotFound("not a member of this team")


HANDLERS = (
    handle_list_teams,
    handle_create_team,
    handle_get_team,
    handle_update_team,
    handle_delete_team,
    handle_list_members,
    handle_add_member,
    handle_remove_member,
)
