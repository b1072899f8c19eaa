"""Fixtures of the WebSocket tests."""

import logging

import pytest

from chat.logs import ContextFilter
from tests.ws.fakes import on_root_logger


class ContextRecords(logging.Handler):
    """Every record, with the context fields chat.logs adds (instance `test`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter("test"))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def find(self, text: str) -> logging.LogRecord:
        return next(r for r in self.records if text in r.getMessage())


@pytest.fixture
def context_records():
    """Records of the root logger (INFO and up) with their request_id, user_id, conversation_id."""
    with on_root_logger(ContextRecords(), logging.INFO) as handler:
        yield handler
