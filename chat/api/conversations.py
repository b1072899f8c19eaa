"""Conversations for agents and admins: listing with filters, one C, its messages and its
transition log, and the actions (assign, release, handoff, close, labels) that go through
the conversation operations exactly like the WebSocket commands.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from chat import render
from chat.api.common import STAFF, Ctx, endpoint
from chat.api.schemas import (
    Body,
    ConversationOut,
    ConversationPage,
    EventPage,
    Id,
    MessagePage,
    Query,
    QueryInt,
    Timestamp,
    Title,
    WindowQuery,
)
from chat.cursors import Cursor, next_cursor
from chat.limits import counter_range
from chat.store.listing import ConversationFilter
from chat.store.models import STATES

ID_DOC = {"id": "the conversation id"}
# Query values are kept short enough that a full query string stays under aiohttp's 8190-byte
# request line even percent-encoded (it answers a longer one with a plain-text 400 of its own).
MAX_Q_CHARS = 100


class ConversationQuery(WindowQuery):
    """Filters (all optional, combined with AND) and the page."""

    state = fields.String(validate=validate.OneOf(STATES))
    agent_id = Id()
    team_id = Id()
    user_id = Id()
    label = Title(metadata={"description": "a label title"})
    since = Timestamp(metadata={"description": "created at or after (ISO 8601; no offset means UTC)"})
    until = Timestamp(metadata={"description": "created before (ISO 8601; no offset means UTC)"})
    q = fields.String(validate=validate.Length(max=MAX_Q_CHARS),
                      metadata={"description": "text in any message, case-insensitive; empty means no filter"})
    limit = QueryInt(load_default=50, validate=counter_range(200, minimum=1))
    cursor = Cursor(metadata={"description": "the next_cursor of the previous page (empty: the first page)"})


@endpoint(
    "GET", "/api/v1/conversations", summary="List conversations", tag="conversations", roles=STAFF,
    query=ConversationQuery, response=ConversationPage, errors=(400,),
    description="Newest first (created_at, then id, descending). Keyset pagination: a page never repeats "
                "or skips a conversation that existed when the walk began, even while new ones are created. "
                "`q` scans the messages of every candidate conversation: narrow it with other filters.",
)
async def handle_list_conversations(ctx: Ctx, query: dict[str, Any]) -> dict[str, Any]:
    """One page of C objects read from the SQL mirror rows."""
    where = ConversationFilter(
        state=query.get("state"), agent_id=query.get("agent_id"), team_id=query.get("team_id"),
        label=query.get("label"), user_id=query.get("user_id"), since_ms=query.get("since"),
        until_ms=query.get("until"), q=query.get("q") or None,
    )
    page = await ctx.store.listing.page(where, limit=query["limit"], after=query.get("cursor"))
    return {
        "items": page.items,
        "next_cursor": next_cursor(page.next_position),
    }


@endpoint(
    "GET", "/api/v1/conversations/{id}", summary="Get a conversation", tag="conversations", roles=STAFF,
    response=ConversationOut, errors=(404,), path_doc=ID_DOC,
)
async def handle_get_conversation(ctx: Ctx) -> render.PublicConversation:
    """C from the live record."""
    conversation = await ctx.ops.conversations.get_for(ctx.identity, ctx.param("id"))
    return await ctx.public(conversation)


class MessageQuery(Query):
    """Where to start and how many."""

    after_seq = QueryInt(load_default=0, validate=counter_range())
    limit = QueryInt(load_default=100, validate=counter_range(500, minimum=1))


@endpoint(
    "GET", "/api/v1/conversations/{id}/messages", summary="Messages of a conversation", tag="conversations",
    roles=STAFF, query=MessageQuery, response=MessagePage, errors=(400, 404), path_doc=ID_DOC,
    description="Messages with seq > after_seq in seq order, private notes included.",
)
async def handle_list_messages(ctx: Ctx, query: dict[str, Any]) -> dict[str, Any]:
    """Items M in seq order."""
    conversation = await ctx.ops.conversations.get_for(ctx.identity, ctx.param("id"))
    messages = await ctx.ops.messages.list_for(ctx.identity, conversation.id, query["after_seq"], query["limit"])
    full = len(messages) == query["limit"]
    return {"items": [render.message(m) for m in messages], "next_cursor": str(messages[-1].seq) if full else None}


@endpoint(
    "GET", "/api/v1/conversations/{id}/events", summary="Transition log of a conversation", tag="conversations",
    roles=STAFF, response=EventPage, errors=(404,), path_doc=ID_DOC,
    description="Every transition, oldest first, and the entries that are not transitions (`sla_breached`: "
                "`from_state` = `to_state`, the version unchanged) where they happened.",
)
async def handle_list_events(ctx: Ctx) -> dict[str, Any]:
    """Items E, oldest first (a mark after the transition of its version)."""
    conversation = await ctx.ops.conversations.get_for(ctx.identity, ctx.param("id"))
    events = await ctx.store.events.list_of(conversation.id)
    marks = await ctx.store.timers.marks_of([conversation.id])
    return {"items": render.log_entries(events, marks), "next_cursor": None}


# --- actions: the same operations as the WebSocket commands ------------------------------------

ACTION_ERRORS = (400, 403, 404, 409, 413)


class AssignBody(Body):
    """Who gets the conversation."""

    agent_id = Id(required=True)


class EmptyBody(Body):
    """No fields (an empty body or `{}`)."""


class HandoffBody(Body):
    """Why."""

    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=255))


class LabelsBody(Body):
    """The complete new set of labels, by title."""

    labels = fields.List(Title(), required=True, validate=validate.Length(max=50))


@endpoint(
    "POST", "/api/v1/conversations/{id}/assign", summary="Assign to an agent", tag="actions", roles=STAFF,
    body=AssignBody, response=ConversationOut, errors=ACTION_ERRORS, path_doc=ID_DOC,
    examples={"body": {"agent_id": "agent-7"}},
    description="Admin: assign to any known agent (`ai`, `handoff` or `human` -> `human`; a takeover from "
                "another agent is allowed). Agent naming itself: the WebSocket `conversation.claim` (`ai` or "
                "`handoff` only, racing claims: one wins, the others 409). Agent naming another agent: the "
                "WebSocket `conversation.transfer` (only the assigned agent, in `human`).",
)
async def handle_assign(ctx: Ctx, data: dict[str, Any]) -> render.PublicConversation:
    """assign for admins; claim or transfer for agents, as on the WebSocket."""
    identity, assignment, conversation_id = ctx.identity, ctx.ops.assignment, ctx.param("id")
    agent_id = data["agent_id"]
    if identity.is_admin:
        conversation = await assignment.assign(identity, conversation_id, agent_id)
    elif agent_id == identity.user_id:
        conversation = await assignment.claim(identity, conversation_id)
    else:
        conversation = await assignment.transfer(identity, conversation_id, agent_id=agent_id)
    return await ctx.public(conversation)


@endpoint(
    "POST", "/api/v1/conversations/{id}/release", summary="Hand back to the AI", tag="actions", roles=STAFF,
    body=EmptyBody, body_required=False, response=ConversationOut, errors=ACTION_ERRORS, path_doc=ID_DOC,
    examples={"body": {}},
    description="`human` or `handoff` -> `ai` (an agent: only its own conversation).",
)
async def handle_release(ctx: Ctx, data: dict[str, Any]) -> render.PublicConversation:
    """Assignment.release."""
    conversation = await ctx.ops.assignment.release(ctx.identity, ctx.param("id"))
    return await ctx.public(conversation)


@endpoint(
    "POST", "/api/v1/conversations/{id}/handoff", summary="Hand over to a human", tag="actions", roles=STAFF,
    body=HandoffBody, body_required=False, response=ConversationOut, errors=ACTION_ERRORS, path_doc=ID_DOC,
    examples={"body": {"reason": "asks about a refund over the AI's limit"}},
    description="`ai` -> `handoff` (queued for routing); the reason defaults to the caller's role.",
)
async def handle_handoff(ctx: Ctx, data: dict[str, Any]) -> render.PublicConversation:
    """Conversations.request_handoff."""
    conversation = await ctx.ops.conversations.request_handoff(ctx.identity, ctx.param("id"), data["reason"])
    return await ctx.public(conversation)


@endpoint(
    "POST", "/api/v1/conversations/{id}/close", summary="Close", tag="actions", roles=STAFF,
    body=EmptyBody, body_required=False, response=ConversationOut, errors=ACTION_ERRORS, path_doc=ID_DOC,
    examples={"body": {}},
    description="-> `closed`: an admin, the assigned agent, or any agent when none is assigned.",
)
async def handle_close(ctx: Ctx, data: dict[str, Any]) -> render.PublicConversation:
    """Conversations.close."""
    conversation = await ctx.ops.conversations.close(ctx.identity, ctx.param("id"))
    return await ctx.public(conversation)


@endpoint(
    "PUT", "/api/v1/conversations/{id}/labels", summary="Replace the labels", tag="actions", roles=STAFF,
    body=LabelsBody, response=ConversationOut, errors=ACTION_ERRORS, path_doc=ID_DOC,
    examples={"body": {"labels": ["refund", "vip"]}},
    description="The labels become exactly these titles; an unknown title is 404 and changes nothing.",
)
async def handle_set_labels(ctx: Ctx, data: dict[str, Any]) -> render.PublicConversation:
    """Labels.set."""
    conversation = await ctx.ops.labels.set(ctx.identity, ctx.param("id"), data["labels"])
    return await ctx.public(conversation)


HANDLERS = (
    handle_list_conversations,
    handle_get_conversation,
    handle_list_messages,
    handle_list_events,
    handle_assign,
    handle_release,
    handle_handoff,
    handle_close,
    handle_set_labels,
)
