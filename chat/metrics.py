"""Prometheus metrics of the process (GET /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("chat_messages_total", "Messages stored, by sender type", ["sender_type"])
CONVERSATIONS_STARTED = Counter("chat_conversations_started_total", "Conversations started")
TRANSITIONS = Counter("chat_transitions_total", "State machine transitions, by trigger", ["trigger"])
OPEN_SOCKETS = Gauge("chat_ws_open_sockets", "Open WebSocket connections")
WS_COMMANDS = Counter("chat_ws_commands_total", "WebSocket commands handled, by type and outcome", ["type", "outcome"])
WS_SLOW_CLIENTS = Counter("chat_ws_slow_clients_total", "Sockets closed because they could not keep up")
AI_FIRST_CHUNK = Histogram(
    "chat_ai_first_chunk_seconds", "Time from the start of an AI turn to its first chunk",
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
