"""chat.logs: text and JSON lines with their context, tokens and secrets never in a line, the access
log's `token=***`."""

import asyncio
import dataclasses
import io
import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from chat import keys
from chat.logs import (
    MASK,
    ContextFilter,
    JsonFormatter,
    MaskedAccessLogger,
    Redactor,
    TextFormatter,
    log_context,
    mask_tokens,
    resolve_format,
    setup_logging,
)
from chat.settings import Settings
from tests.ws.fakes import on_root_logger

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_mask_tokens():
    assert mask_tokens(f"GET /ws?token={JWT} HTTP/1.1") == f"GET /ws?token={MASK} HTTP/1.1"
    assert mask_tokens("/ws?a=1&token=abc.def&b=2") == f"/ws?a=1&token={MASK}&b=2"
    assert mask_tokens("refresh_token=xyz access_token=abc") == f"refresh_token={MASK} access_token={MASK}"
    assert mask_tokens(f"bearer {JWT}!") == f"bearer {MASK}!"
    assert mask_tokens("tokens are fine, token: none") == "tokens are fine, token: none"


def test_the_redactor_masks_secret_values_and_ignores_short_ones():
    redact = Redactor(["super-secret-value-123", "", "short"])
    assert redact("key=super-secret-value-123; short") == f"key={MASK}; short"


def _record(message: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    record = logging.LogRecord("chat.test", logging.WARNING, __file__, 1, message, args, exc_info)
    ContextFilter("inst-1").filter(record)
    return record


def test_json_lines_carry_the_context_and_no_token():
    formatter = JsonFormatter(Redactor(["jwt-secret-for-tests-0123456789"]))
    with log_context(request_id="req-1", user_id="cust-1", conversation_id="c-1"):
        record = _record("token %s with secret %s", JWT, "jwt-secret-for-tests-0123456789")
    line = formatter.format(record)
    entry = json.loads(line)
    assert entry["instance"] == "inst-1" and entry["request_id"] == "req-1"
    assert entry["user_id"] == "cust-1" and entry["conversation_id"] == "c-1"
    assert entry["level"] == "WARNING" and entry["logger"] == "chat.test" and entry["time"].endswith("Z")
    assert entry["message"] == f"token {MASK} with secret {MASK}"
    outside = json.loads(formatter.format(_record("plain")))
    assert "user_id" not in outside and "request_id" not in outside and outside["instance"] == "inst-1"


def test_exceptions_are_formatted_and_redacted():
    try:
        raise ValueError(f"bad ?token={JWT}")
    except ValueError as exc:
        error = exc
    entry = json.loads(JsonFormatter(Redactor()).format(_record("failed", exc=error)))
    assert "ValueError" in entry["exception"] and JWT not in entry["exception"]
    text = TextFormatter(Redactor()).format(_record("failed", exc=error))
    assert "Traceback" in text and JWT not in text


def test_text_lines_append_the_context():
    with log_context(user_id="cust-1", conversation_id="c-9"):
        record = _record("hello")
    line = TextFormatter(Redactor()).format(record)
    assert line.endswith("WARNING chat.test: hello [user_id=cust-1 conversation_id=c-9]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_otherwise():
    assert resolve_format("auto", Terminal()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Terminal()) == "json"
    assert Settings.from_env({}).log_format == "auto"
    assert Settings.from_env({"LOG_FORMAT": "json"}).log_format == "json"


def test_setup_logging_sends_every_logger_through_one_masking_handler(restore_logging):
    settings = dataclasses.replace(Settings(), log_format="json", log_level="INFO",
                                   jwt_secret_key="the-jwt-secret-of-this-test-0123",
                                   jwt_previous_secret_keys=("the-previous-jwt-secret-0123456", "the-first-one-01234"))
    stream = io.StringIO()
    setup_logging(settings, "inst-7", stream)
    logging.getLogger("aiohttp.server").info("secret %s", settings.jwt_secret_key)
    logging.getLogger("chat.x").debug("below the level")
    logging.getLogger("chat.y").info("rotated %s", ",".join(settings.jwt_previous_secret_keys))
    first, rotated = stream.getvalue().splitlines()
    assert json.loads(first) == {**json.loads(first), "message": f"secret {MASK}", "instance": "inst-7"}
    assert json.loads(rotated)["message"] == f"rotated {MASK},{MASK}"


class Collect(logging.Handler):
    """Every record (formatted plainly); access-log records can be awaited."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.access: list[tuple[str, logging.LogRecord]] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))
        if record.name == "aiohttp.access":
            self.access.append((self.lines[-1], record))
            self.arrived.set()

    async def access_record(self, containing: str) -> tuple[str, logging.LogRecord]:
        """The first access-log line holding `containing`, and its record (waiting for it to be written)."""
        async with asyncio.timeout(5):
            while True:
                found = [(line, record) for line, record in self.access if containing in line]
                if found:
                    return found[0]
                self.arrived.clear()
                await self.arrived.wait()

    async def access_line(self, containing: str) -> str:
        """The first access-log line holding `containing` (waiting for it to be written)."""
        return (await self.access_record(containing))[0]


@pytest.fixture
def collect():
    with on_root_logger(Collect(), logging.DEBUG) as handler:
        yield handler


def test_the_access_logger_masks_the_token_of_the_request_line():
    logger, stream = logging.getLogger("test.access"), io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        request = make_mocked_request("GET", f"/ws?lang=en&token={JWT}", headers={"Referer": f"/?token={JWT}"})
        MaskedAccessLogger(logger, '%a "%r" %s "%{Referer}i"').log(request, web.Response(status=101), 0.5)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().endswith(f'"GET /ws?lang=en&token={MASK} HTTP/1.1" 101 "/?token={MASK}"\n')


async def test_the_apps_access_log_masks_url_tokens(harness, collect):
    token = harness.token("cust-1")
    resp = await harness.client.get(f"/ws?token={token}x")  # refused: a plain 401
    assert resp.status == 401
    line = await collect.access_line(" 401 ")
    assert f"GET /ws?token={MASK} HTTP/1.1" in line and token not in line
    resp = await harness.client.get(f"/ws?token={token}")  # a valid token on a plain GET (no upgrade)
    line = await collect.access_line(f" {resp.status} ")
    assert f"GET /ws?token={MASK} HTTP/1.1" in line and token not in line


async def test_an_access_line_carries_the_request_id_of_its_response_and_the_user(harness, collect):
    """An operator finds a response's `X-Request-ID` (the caller's own, or a new one) in its access line, with
    the user once the request was authenticated: in JSON and in text, and the token still masked."""
    collect.addFilter(ContextFilter("inst-1"))  # as setup_logging's handler
    json_lines, text_lines = JsonFormatter(Redactor()), TextFormatter(Redactor())
    token = harness.token("cust-1")
    resp = await harness.client.get("/api/v1/me/conversations?limit=3", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    request_id = resp.headers["X-Request-ID"]
    _, record = await collect.access_record("GET /api/v1/me/conversations?limit=3 ")
    entry = json.loads(json_lines.format(record))
    assert (entry["request_id"], entry["user_id"], entry["logger"]) == (request_id, "cust-1", "aiohttp.access")
    assert "conversation_id" not in entry
    assert text_lines.format(record).endswith(f" [request_id={request_id} user_id=cust-1]")

    resp = await harness.client.get(f"/api/v1/me/conversations?token={token}", headers={"X-Request-ID": "probe-7"})
    assert (resp.status, resp.headers["X-Request-ID"]) == (401, "probe-7")  # a token in the URL is no login
    line, record = await collect.access_record(" 401 ")
    assert f"?token={MASK} " in line and token not in line
    entry = json.loads(json_lines.format(record))
    assert entry["request_id"] == "probe-7" and "user_id" not in entry and token not in json.dumps(entry)
    assert text_lines.format(record).endswith(" [request_id=probe-7]")


async def test_no_line_at_debug_holds_a_token(harness, collect):
    tokens = [harness.token("cust-1"), harness.token("cust-1", ttl_s=7200), harness.token("agent-1", role="agent")]
    ws = await harness.connect("cust-1")
    await ws.ok("auth", token=tokens[1])
    assert (await ws.request("auth", token=tokens[2] + "x"))["code"] == "unauthenticated"
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    other = await harness.connect()
    assert (await other.request("auth", token=tokens[0][:-2]))["code"] == "unauthenticated"
    assert await other.closed() == 4401
    resp = await harness.client.get(f"/api/v1/sessions/{cid}", headers={"Authorization": f"Bearer {tokens[2]}x"})
    assert resp.status == 401
    await collect.access_line(f"/api/v1/sessions/{cid}")
    assert harness.app[keys.SETTINGS].jwt_secret_key not in "\n".join(collect.lines)
    for token in tokens:
        signature = token.rsplit(".", 1)[1]
        assert not [line for line in collect.lines if signature in line]


async def raw_request(port: int, request: bytes) -> bytes:
    """What the server answers to these bytes, sent as they are (no client would send them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await reader.read()  # aiohttp closes the connection after such an answer
    finally:
        writer.close()


async def test_serve_writes_json_lines_with_the_instance_and_masked_tokens(tmp_path):
    """`chat-api serve` with LOG_FORMAT=json: every stderr line is a JSON object, the access line masks the
    token of a refused URL and carries the response's request id. A request aiohttp cannot parse is answered by
    aiohttp itself (a plain-text 400) and is one INFO line, not an ERROR with a traceback."""
    import os
    import socket
    import sys

    import aiohttp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY")}
    env.update(CHAT_DATA_DIR=str(tmp_path / "data"), LOG_FORMAT="json", LOG_LEVEL="INFO", AI_PROVIDER="echo")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            while b"Running on" not in await proc.stdout.readline():
                pass
            for bad in (b"GET /api/v1/conversations?q=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n\r\n"):
                answer = await raw_request(port, bad)
                assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n") and b"text/plain" in answer, answer
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/ws?token={JWT}") as resp:
                assert resp.status == 401
                request_id = resp.headers["X-Request-ID"]
            lines = []
            while not any("/ws?token=" in line for line in lines):
                lines.append((await proc.stderr.readline()).decode())
    finally:
        proc.terminate()
        await proc.wait()
    entries = [json.loads(line) for line in lines if line.strip()]
    access = next(e for e in entries if "/ws?token=" in e["message"])
    assert f"GET /ws?token={MASK} HTTP/1.1" in access["message"] and access["logger"] == "aiohttp.access"
    assert access["request_id"] == request_id
    assert access["instance"] and all(e["instance"] == access["instance"] for e in entries)
    assert JWT.split(".")[2] not in "".join(lines)
    refused = [e for e in entries if "not valid HTTP" in e["message"]]
    assert [(e["level"], e["logger"]) for e in refused] == [("INFO", "aiohttp.server")] * 2, entries
    assert "InvalidURLError: Invalid char in url query" in refused[0]["message"]
    assert "BadHttpMessage: Invalid header value char" in refused[1]["message"]
    assert [e for e in entries if e["level"] == "ERROR" or "exception" in e] == []


def test_background_failures_of_a_dependency_are_one_warning_line_and_bugs_keep_their_traceback(caplog):
    """A Redis or database outage during background work (routing, sweeps, AI turns) is expected in a
    restart or failover: one WARNING line; anything else is an ERROR with its traceback."""
    import logging

    from redis.exceptions import ConnectionError as RedisConnectionError

    from chat.errors import log_failure

    logger = logging.getLogger("chat.test-failures")
    with caplog.at_level(logging.WARNING, logger="chat.test-failures"):
        log_failure(logger, RedisConnectionError("Connection refused"), "routing pass failed")
        log_failure(logger, KeyError("bug"), "AI turn of %s failed", "c1")
    dependency, bug = caplog.records
    assert dependency.levelname == "WARNING" and dependency.exc_info is None
    assert dependency.getMessage() == "routing pass failed: ConnectionError: Connection refused"
    assert bug.levelname == "ERROR" and bug.exc_info is not None and bug.getMessage() == "AI turn of c1 failed"
