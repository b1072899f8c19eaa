"""Shared bits of the cut-over tests (constants and helpers; the fixtures are in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[2]

# Other suites share this Redis server; these tests only ever touch these logical dbs.
OWN_DBS = (10, 11, 12, 13)


def redis_url(db: int) -> str:
    """TEST_REDIS_URL (default redis://127.0.0.1:6379) pointed at logical database ``db``."""
    assert db in OWN_DBS, f"tests may only use dbs {OWN_DBS}"
    base = urlsplit(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379"))
    return urlunsplit((base.scheme, base.netloc, f"/{db}", base.query, ""))
