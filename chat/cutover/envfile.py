""".env files as dotenv parsers read them: values quoted to read back unchanged, files written safely."""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dotenv import dotenv_values

# Written bare: nothing in here means anything to a dotenv parser or a shell.
_BARE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+=,-]+")


def quote_value(value: str) -> str:
    """``value`` written so that a dotenv parser reads it back unchanged.

    Plain values stay bare. Others are single-quoted as they are, which python-dotenv, Node's
    dotenv, Docker Compose and POSIX shells all read literally, unless python-dotenv would
    see an escape in them (a quote, a doubled or final backslash) or a carriage return
    (lost when a file is read in text mode): those are double-quoted with escapes, a form
    python-dotenv reads back exactly.
    """
    if _BARE_VALUE.fullmatch(value):
        return value
    if not ("'" in value or "\r" in value or "\\\\" in value or value.endswith("\\")):
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
    )
    return f'"{escaped}"'


class _Collector(logging.Handler):
    """Keeps python-dotenv's warnings (they name a line number, never its text)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _dotenv_warnings() -> Iterator[list[str]]:
    logger = logging.getLogger("dotenv.main")
    collector = _Collector()
    propagate = logger.propagate
    logger.addHandler(collector)
    logger.propagate = False
    try:
        yield collector.messages
    finally:
        logger.removeHandler(collector)
        logger.propagate = propagate


def read_env(path: Path) -> tuple[dict[str, str | None], list[str]]:
    """The old file's variables, literally: no ``${VAR}`` expansion, as Node's dotenv did not."""
    # Read here, not by path: python-dotenv quietly returns nothing for a missing file.
    text = path.read_text(encoding="utf-8-sig")
    with _dotenv_warnings() as warnings:
        values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return dict(values), warnings


def write_env(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` readable by the owner only; an existing file only with ``force``."""
    if not force:
        # O_EXCL: even a file created a moment ago is not overwritten.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(temporary, path)  # all or nothing: never half a config file
    except BaseException:
        os.unlink(temporary)
        raise
