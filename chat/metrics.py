"""Prometheus metrics of the process (GET /metrics); each is described in docs/metrics.md.

Counters and histograms count what this process did; the `chat_agents_online`,
`chat_conversations_waiting*` and `chat_webhook_backlog` gauges are the whole deployment's figures as
this instance reads them when scraped (the same on every instance: aggregate them with max, not sum).
"""

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# a `*_created` series per counter and histogram (the time it was created) is noise on every scrape
disable_created_metrics()  # type: ignore[no-untyped-call]

MESSAGES = Counter("chat_messages_total", "Messages stored, by sender type", ["sender_type"])
CONVERSATIONS_STARTED = Counter("chat_conversations_started_total", "Conversations started")
TRANSITIONS = Counter("chat_transitions_total", "State machine transitions, by trigger", ["trigger"])
OPEN_SOCKETS = Gauge("chat_ws_open_sockets", "Open WebSocket connections (authenticated or not)")
WS_SESSIONS = Gauge("chat_ws_sessions", "Authenticated WebSocket connections open on this instance, by role",
                    ["role"])
WS_COMMANDS = Counter("chat_ws_commands_total", "WebSocket commands handled, by type and outcome", ["type", "outcome"])
WS_SLOW_CLIENTS = Counter("chat_ws_slow_clients_total", "Sockets closed because they could not keep up")
WEBHOOK_DELIVERIES = Counter("chat_webhook_deliveries_total",
                             "Webhook delivery attempts made by this process, by outcome", ["outcome"])
WEBHOOK_LAG = Histogram(
    "chat_webhook_delivery_lag_seconds",
    "From an event (or its redelivery) to its successful delivery, retries included",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
WEBHOOK_BACKLOG = Gauge("chat_webhook_backlog", "Webhook deliveries pending (due or waiting to retry) in the "
                        "deployment")
AGENTS_ONLINE = Gauge("chat_agents_online", "Agents online (status online with a socket open) on every instance")
CONVERSATIONS_WAITING = Gauge(
    "chat_conversations_waiting", "Conversations waiting for an agent (state handoff), by team (`none`: no team)",
    ["team"],
)
OLDEST_WAIT = Gauge(
    "chat_conversations_waiting_oldest_seconds",
    "How long the longest-waiting conversation has waited for an agent, by team (0: nobody waits)", ["team"],
)
HTTP_REQUESTS = Histogram(
    "chat_http_request_seconds", "HTTP requests (REST, pages, health; not the WebSocket) by method, route and "
    "status class, until the response is complete", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AI_FIRST_CHUNK = Histogram(
    "chat_ai_first_chunk_seconds", "Time from the start of an AI turn to its first chunk (the first delta)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
AI_REPLY = Histogram(
    "chat_ai_reply_seconds", "Time of a whole AI turn", buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
)
AI_ERRORS = Counter("chat_ai_errors_total", "Failed AI turns, by error code", ["code"])
AI_DISCARDED = Counter(
    "chat_ai_replies_discarded_total", "AI replies not stored because the conversation left `ai` meanwhile"
)
TIMERS_FIRED = Counter(
    "chat_timers_fired_total", "State timers that acted when due (PROTOCOL 4.1), by timer", ["timer"]
)
SLA_BREACHES = Counter("chat_sla_breaches_total", "First responses later than SLA_FIRST_RESPONSE_S (business time)")
