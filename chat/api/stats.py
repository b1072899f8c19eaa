"""GET /api/v1/stats: figures over a window of time (definitions in docs/rest.md)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validates_schema

from chat.api.common import STAFF, Ctx, endpoint
from chat.api.schemas import DATE_TIME, Id, Out, Query, Timestamp
from chat.store.log_stats import CLOSERS
from chat.store.models import SENDER_TYPES, STATES


class StatsQuery(Query):
    """The window [since, until) and an optional team."""

    since = Timestamp(metadata={"description": "window start, inclusive (ISO 8601; no offset means UTC)"})
    until = Timestamp(metadata={"description": "window end, exclusive (ISO 8601; no offset means UTC)"})
    team_id = Id(metadata={"description": "only conversations whose current team is this one"})

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        if "since" in data and "until" in data and data["since"] > data["until"]:
            raise ValidationError("must not be before since", "until")


def _counts(name: str, doc: str, keys: tuple[str, ...]) -> type[Out]:
    """An object of one integer per key (the states, the sender types)."""
    return type(name, (Out,), {"__doc__": doc, **{key: fields.Integer(required=True) for key in keys}})


ByState = _counts("ByState", "Conversations created in the window, by their current state.", STATES)
ByCloser = _counts("ByCloser", "close transitions in the window by actor type; a system close for inactivity (the "
                   "idle timers) counts as inactivity", CLOSERS)
BySender = _counts("BySender", "Messages stored in the window, by sender type (private notes count as agent).",
                   SENDER_TYPES)


def _seconds(doc: str) -> fields.Float:
    return fields.Float(required=True, allow_none=True, metadata={"description": doc + "; null when none"})


class StatsOut(Out):
    """The figures of a window."""

    since = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    until = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    team_id = fields.String(required=True, allow_none=True)
    conversations_by_state = fields.Nested(ByState, required=True)
    started = fields.Integer(required=True, metadata={"description": "conversations created in the window"})
    handed_off = fields.Integer(required=True, metadata={
        "description": "conversations with a request_handoff transition in the window"})
    closed = fields.Integer(required=True, metadata={"description": "conversations closed in the window"})
    ai_resolved = fields.Integer(required=True, metadata={
        "description": "of those closed in the window, the ones that never had a (non-private) agent message"})
    handoff_rate = fields.Float(required=True, metadata={"description": "handed_off / started (0 when none started)"})
    queue_waits = fields.Integer(required=True, metadata={"description": "handoff -> human waits counted"})
    queue_wait_avg_s = _seconds("average seconds from entering handoff (in the window) to the assignment")
    queue_wait_p90_s = _seconds("90th percentile (nearest rank) of the same waits")
    first_responses = fields.Integer(required=True)
    first_response_avg_s = _seconds(
        "average seconds from the first assignment (in the window) to the first agent message after it")
    resolution_avg_s = _seconds("average seconds from creation to the close, of conversations closed in the window")
    messages_by_sender_type = fields.Nested(BySender, required=True)
    time_with_ai_s = fields.Float(required=True, metadata={
        "description": "seconds conversations spent in `ai` inside the window (from the transition log)"})
    time_in_queue_s = fields.Float(required=True, metadata={"description": "seconds spent in `handoff` inside it"})
    time_with_humans_s = fields.Float(required=True, metadata={"description": "seconds spent in `human` inside it"})
    ai_time_share = fields.Float(required=True, allow_none=True, metadata={
        "description": "time_with_ai_s / (time_with_ai_s + time_with_humans_s); null when both are 0"})
    closes_by_actor = fields.Nested(ByCloser, required=True)
    reopened = fields.Integer(required=True, metadata={"description": "reopen transitions in the window"})
    reopen_rate = fields.Float(required=True, metadata={
        "description": "reopened / close transitions in the window (0 when none closed)"})
    human_entries = fields.Integer(required=True, metadata={
        "description": "transitions into `human` in the window (each starts a first-response SLA)"})
    sla_breached = fields.Integer(required=True, metadata={"description": "sla_breached entries logged in the window"})
    csat_average = fields.Float(required=True, allow_none=True, metadata={
        "description": "average CSAT score (1-5) of the closes in the window; null when none was rated"})
    csat_responses = fields.Integer(required=True, metadata={"description": "closes in the window that were rated"})
    csat_response_rate = fields.Float(required=True, allow_none=True, metadata={
        "description": "csat_responses / closes in the window; null when none closed"})
    sla_met_rate = fields.Float(required=True, allow_none=True, metadata={
        "description": "1 - sla_breached / human_entries (a running SLA counts as met so far); null when no entry"})


@endpoint(
    "GET", "/api/v1/stats", summary="Statistics", tag="stats", roles=STAFF, query=StatsQuery, response=StatsOut,
    errors=(400,), description="Every figure is computed in SQL over the *_ms columns, the AI-vs-human ones from the "
                                "event log alone; see docs/rest.md and docs/protocol.md.",
)
async def handle_stats(ctx: Ctx, query: dict[str, Any]) -> dict[str, Any]:
    """The figures of the window."""
    return await ctx.store.stats.figures(since_ms=query.get("since"), until_ms=query.get("until"),
                                         team_id=query.get("team_id"))


HANDLERS = (handle_stats,)
