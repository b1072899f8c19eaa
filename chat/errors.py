"""Domain errors and the one mapping from any error to a protocol code and HTTP status."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from chat.store.db import DatabaseError
from states.errors import ConversationNotFound, TransitionError

log = logging.getLogger(__name__)


class ChatError(Exception):
    """An error a client is told about, with its protocol code."""

    code = "internal"
    status = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthenticated(ChatError):
    code, status = "unauthenticated", 401


class Forbidden(ChatError):
    code, status = "forbidden", 403


class NotFound(ChatError):
    code, status = "not_found", 404


class Invalid(ChatError):
    code, status = "invalid", 400


class Conflict(ChatError):
    code, status = "conflict", 409


class TooLarge(ChatError):
    code, status = "too_large", 413


class RateLimited(ChatError):
    code, status = "rate_limited", 429

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, retry_after_s: int | None = None):
        super().__init__(message, details)
        self.retry_after_s = retry_after_s  # REST sends it as Retry-After


class Unavailable(ChatError):
    code, status = "unavailable", 503


DEPENDENCY_ERRORS = (RedisError, DatabaseError, ConnectionError, OSError)


def cancelled_meanwhile() -> bool:
    """The current task is being cancelled: an error a client library raised as it unwound stands for the
    cancel, and a cancel it dropped (redis-py's wait_for on 3.11, a database driver) is still owed."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def log_failure(logger: logging.Logger, exc: BaseException, what: str, *args: object) -> None:
    """A failure of background work: a dependency that went away is a WARNING in one line (it is
    expected during a restart or failover); anything else is an ERROR with its traceback."""
    if isinstance(exc, DEPENDENCY_ERRORS):
        logger.warning(what + ": %s: %s", *args, type(exc).__name__, exc)
    else:
        logger.error(what, *args, exc_info=exc)


def to_chat_error(exc: BaseException) -> ChatError:
    """Map any exception to what the client sees; unknown ones are logged and `internal`."""
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, TransitionError):
        return Conflict(str(exc))
    if isinstance(exc, ConversationNotFound):
        return NotFound("conversation not found")
    if isinstance(exc, DEPENDENCY_ERRORS):
        log.warning("dependency failure: %s: %s", type(exc).__name__, exc)
        return Unavailable("a dependency of the service is unavailable, try again")
    log.exception("internal error", exc_info=exc)
    return ChatError("internal error")
