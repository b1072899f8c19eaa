"""Logging: text or JSON lines (`LOG_FORMAT`), each carrying the context it was written in
(instance, request id, user, conversation), and never a token or a secret.

The context is a set of contextvars: the WebSocket session sets them around each command and
the REST decorator around each request; tasks started meanwhile inherit them. A REST request's
fields are also kept on the request (`request_log_context`), for its access-log line: aiohttp
writes that line once the request's own context is gone. A token is kept
out of the lines twice: the access log masks the `token` query parameter at its source
(`MaskedAccessLogger`), and the formatters mask whatever still looks like a token or equals a
secret setting in the finished line.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import IO, TYPE_CHECKING

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger

from chat.client_address import client_address

if TYPE_CHECKING:
    from aiohttp.web_request import BaseRequest
    from aiohttp.web_response import StreamResponse

    from chat.settings import Settings

CONTEXT_FIELDS = ("instance", "request_id", "user_id", "conversation_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# request_id, user_id, conversation_id: one variable holding the three, so a command's context
# costs one set and one reset
_Fields = tuple[str | None, str | None, str | None]
_context: ContextVar[_Fields] = ContextVar("log_context", default=(None, None, None))

_TOKEN_PARAM = re.compile(r"(?i)(\b(?:access_|refresh_)?token=)[^&\s\"'<>\\]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
MASK = "***"
MIN_SECRET_CHARS = 8  # shorter values (an empty key, a placeholder) would mask ordinary words


_REQUEST_PREFIX = uuid.uuid4().hex[:8]  # this process
_request_numbers = itertools.count(1)


def new_request_id() -> str:
    """A short id, unique across processes, that ties together the lines of one command or request
    (a process prefix and a counter: one per WebSocket command, so it must cost next to nothing)."""
    return f"{_REQUEST_PREFIX}{next(_request_numbers) & 0xFFFFFFFF:08x}"


def current_request_id() -> str | None:
    """The request id of the log context this runs in (None outside a request or command)."""
    return _context.get()[0]


class log_context:  # noqa: N801 - used like a function: `with log_context(...)`
    """Every line logged inside (and by tasks started inside) carries these fields (request_id,
    user_id, conversation_id); the fields not named keep their outer value. (A plain class, not a
    generator: it wraps every WebSocket command.)"""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: str | None) -> None:
        unknown = fields.keys() - CONTEXT_FIELDS[1:]
        if unknown:
            raise TypeError(f"log_context got unknown fields {sorted(unknown)}")
        self._fields: dict[str, str | None] | None = fields
        self._token: Token[_Fields] | None = None

    def __enter__(self) -> None:
        # the fields are let go once set: a context around a WebSocket lives as long as the socket
        outer, fields, self._fields = _context.get(), self._fields or {}, None
        self._token = _context.set((fields.get("request_id", outer[0]), fields.get("user_id", outer[1]),
                                    fields.get("conversation_id", outer[2])))

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)


# the log fields of a REST request (request_log_context), for its access-log line
REQUEST_FIELDS: web.RequestKey[dict[str, str | None]] = web.RequestKey("log_fields")


def request_log_context(request: BaseRequest, **fields: str | None) -> log_context:
    """log_context(**fields) for (part of) a REST request; the fields are kept on the request as well, so that
    its access-log line carries them (MaskedAccessLogger)."""
    context = log_context(**fields)  # refuses an unknown field before anything is kept
    request[REQUEST_FIELDS] = {**request.get(REQUEST_FIELDS, {}), **fields}
    return context


def mask_tokens(text: str) -> str:
    """`token=<anything>` becomes `token=***`, and anything shaped like a JWT becomes `***`."""
    return _JWT.sub(MASK, _TOKEN_PARAM.sub(rf"\g<1>{MASK}", text))


class Redactor:
    """Masks tokens and the values of the secret settings in a finished line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """The line with nothing secret left in it."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return mask_tokens(text)


class ContextFilter(logging.Filter):
    """Adds the instance and the current context to every record (handlers' filter, never drops one)."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the fields; a field set explicitly (`extra=`) wins."""
        record.instance = getattr(record, "instance", None) or self.instance
        for name, value in zip(CONTEXT_FIELDS[1:], _context.get(), strict=True):
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The classic line, the context fields that are set appended as key=value."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """One redacted text line (plus the traceback, if any)."""
        line = super().format(record)
        context = " ".join(f"{name}={value}" for name in CONTEXT_FIELDS[1:]
                           if (value := getattr(record, name, None)) is not None)
        if context:
            head, sep, tail = line.partition("\n")
            line = f"{head} [{context}]{sep}{tail}"
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, the exception."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """One redacted JSON line."""
        entry: dict[str, str] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = self.redact(str(value))
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.redact(record.exc_text)
        return orjson.dumps(entry).decode()


class MaskedAccessLogger(AccessLogger):
    """aiohttp's access log with the `token` query parameter masked (GET /ws?token=***), the client
    address (chat.client_address) where it shows the peer's, and the log fields of the request
    (request_log_context: its request id, and the user and conversation once authenticated)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Write the line in the log context of its request."""
        fields = request.get(REQUEST_FIELDS, {}) if request is not None else {}
        with log_context(**fields):
            super().log(request, response, time)

    def _format_line(
        self, request: BaseRequest, response: StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [(key, client_address(request) if key == "remote_address" and request is not None
                 else mask_tokens(value) if isinstance(value, str) else value)
                for key, value in super()._format_line(request, response, time)]


class UnparsableRequests(logging.Filter):
    """On aiohttp's server logger: a request its HTTP parser refused (a raw byte outside ASCII in the
    request line, a NUL in a header, a line over 8190 bytes...) is the client's mistake, which aiohttp
    answers with a plain-text 400 before any middleware. aiohttp logs it as an ERROR with a traceback, so
    anyone could fill the log with those: it becomes one INFO line (logger `aiohttp.server`) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Let every other record through; log this one again as one INFO line and drop it."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or record.levelno <= logging.INFO:
            return True
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = exc.message.partition("\n")[0].rstrip(":")  # its first line, without the quoted bytes
        logging.getLogger(record.name).info("refused a request that is not valid HTTP from %s (400): %s: %s",
                                            peer, type(exc).__name__, reason)
        return False


_UNPARSABLE_REQUESTS = UnparsableRequests()


def secret_values(settings: Settings) -> list[str]:
    """The values of the settings marked secret (left out of the dataclass repr); a list setting's each item."""
    values = [getattr(settings, f.name) for f in dataclasses.fields(settings) if not f.repr]
    items = itertools.chain.from_iterable(v if isinstance(v, tuple) else (v,) for v in values)
    return [v for v in items if isinstance(v, str) and v]


def resolve_format(log_format: str, stream: IO[str]) -> str:
    """`auto`: text on a terminal, JSON otherwise (a log collector)."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


START_LOGGER = "chat.start"  # the start line: logged whatever LOG_LEVEL says


def setup_logging(settings: Settings, instance_id: str, stream: IO[str] | None = None) -> logging.Handler:
    """Route every logger to one handler on `stream` (stderr) in the configured format and level."""
    stream = stream if stream is not None else sys.stderr
    redact = Redactor(secret_values(settings))
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter(instance_id))
    use_json = resolve_format(settings.log_format, stream) == "json"
    handler.setFormatter(JsonFormatter(redact) if use_json else TextFormatter(redact))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger(START_LOGGER).setLevel(logging.INFO)  # what an operator checks after a start, at any level
    logging.getLogger("aiohttp.server").addFilter(_UNPARSABLE_REQUESTS)  # once: the same filter is not added twice
    return handler
