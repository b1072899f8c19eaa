"""The old system's MySQL tables (migration guide: users, customer_contacts, conversations, messages,
labels, teams, kept unchanged), as a plausible Node.js support chat had them, with a few rows.

docs/legacy-mapping.example.toml maps exactly this schema; the DDL runs on MariaDB and SQLite.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)

from chat.settings import DatabaseConfig, parse_database_url

LEGACY_DDL = [
    "CREATE TABLE users (id INT NOT NULL PRIMARY KEY, name VARCHAR(255) NULL, email VARCHAR(255) NULL, "
    "role VARCHAR(20) NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)",
    "CREATE TABLE customer_contacts (id INT NOT NULL PRIMARY KEY, external_id VARCHAR(64) NOT NULL, "
    "name VARCHAR(255) NULL, email VARCHAR(255) NULL, phone VARCHAR(64) NULL, created_at DATETIME NOT NULL)",
    "CREATE TABLE teams (id INT NOT NULL PRIMARY KEY, name VARCHAR(191) NOT NULL, description TEXT NULL, "
    "created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)",
    "CREATE TABLE labels (id INT NOT NULL PRIMARY KEY, title VARCHAR(191) NOT NULL, color VARCHAR(16) NULL, "
    "created_at DATETIME NOT NULL)",
    "CREATE TABLE conversations (id INT NOT NULL PRIMARY KEY, contact_id INT NOT NULL, assignee_id INT NULL, "
    "team_id INT NULL, status VARCHAR(20) NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)",
    "CREATE TABLE messages (id INT NOT NULL PRIMARY KEY, conversation_id INT NOT NULL, "
    "sender_type VARCHAR(20) NOT NULL, sender_id INT NULL, content TEXT NOT NULL, "
    "private SMALLINT NOT NULL DEFAULT 0, created_at DATETIME NOT NULL)",
]

LEGACY_ROWS: dict[str, list[tuple[Any, ...]]] = {
    "users": [
        (1, "Alice Admin", "alice@example.com", "administrator", "2024-01-02 09:00:00", "2024-01-02 09:00:00"),
        (2, "Bob Agent", "bob@example.com", "agent", "2024-01-03 09:00:00", "2024-03-01 10:00:00"),
    ],
    "customer_contacts": [
        (10, "cust-100", "Carol", "carol@example.com", None, "2024-02-01 08:00:00"),
        (11, "cust-101", "Dan", None, "+86 10 5555 0101", "2024-02-02 08:00:00"),
    ],
    "teams": [(5, "Billing", "invoices and refunds", "2024-01-05 09:00:00", "2024-01-05 09:00:00")],
    "labels": [(7, "vip", "#ff0000", "2024-01-06 09:00:00"), (8, "refund", None, "2024-01-06 09:00:00")],
    "conversations": [
        (100, 10, None, None, "open", "2024-04-01 10:00:00", "2024-04-01 10:05:00"),
        (101, 11, 2, 5, "resolved", "2024-04-02 10:00:00", "2024-04-02 11:00:00"),
        (102, 10, None, 5, "pending", "2024-04-03 10:00:00", "2024-04-03 10:02:00"),
    ],
    "messages": [
        (1000, 100, "contact", None, "Where is my order?", 0, "2024-04-01 10:00:00"),
        (1001, 100, "bot", None, "It left the warehouse yesterday.", 0, "2024-04-01 10:00:05"),
        (1002, 101, "contact", None, "I was charged twice", 0, "2024-04-02 10:00:00"),
        (1003, 101, "agent", 2, "Refund issued, sorry!", 0, "2024-04-02 10:30:00"),
        (1004, 101, "agent", 2, "refund ticket #42", 1, "2024-04-02 10:31:00"),
        (1005, 102, "contact", None, "talk to a human please", 0, "2024-04-03 10:00:00"),
    ],
}

# What the example mapping makes of them (the service's tables after one import).
IMPORTED = {"users": 2, "customer_contacts": 2, "teams": 1, "labels": 2, "conversations": 3, "messages": 6}


def _insert(table: str, rows: list[tuple[Any, ...]]) -> str:
    return f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(rows[0]))})"


def create_legacy_mysql(config: DatabaseConfig) -> None:
    """The old tables and their rows in a MySQL/MariaDB database."""
    conn = pymysql.connect(host=config.host, port=config.port, user=config.user, password=config.password,
                           database=config.database, autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in LEGACY_DDL:
                cur.execute(statement)
            for table, rows in LEGACY_ROWS.items():
                cur.executemany(_insert(table, rows), rows)
    finally:
        conn.close()


def create_legacy_sqlite(path: str) -> None:
    """The old tables and their rows in an SQLite file."""
    conn = sqlite3.connect(path)
    try:
        for statement in LEGACY_DDL:
            conn.execute(statement)
        for table, rows in LEGACY_ROWS.items():
            conn.executemany(_insert(table, rows).replace("%s", "?"), rows)
        conn.commit()
    finally:
        conn.close()


def create_legacy(config: DatabaseConfig) -> None:
    """The old tables and rows in the database `config` names."""
    if config.kind == "sqlite":
        create_legacy_sqlite(config.path)
    else:
        create_legacy_mysql(config)


@contextmanager
def fresh_mysql_database(server_url: str, prefix: str = "chat_legacy") -> Iterator[str]:
    """The URL of a new empty database on the server of `server_url` (dropped afterwards)."""
    base = parse_database_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    def admin(sql: str) -> None:
        conn = pymysql.connect(host=base.host, port=base.port, user=base.user, password=base.password)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    parts = urlsplit(server_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    finally:
        admin(f"DROP DATABASE IF EXISTS {name}")
