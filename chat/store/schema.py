"""The SQL schema, versioned: `chat-api db upgrade` applies what is missing, idempotently.

One description renders to both dialects: MySQL 8 / MariaDB 10.11 (InnoDB, utf8mb4, binary
collation so ids and client_msg_id compare exactly as in SQLite) and SQLite. Times are
epoch milliseconds (BIGINT) so the same arithmetic works in both for the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    """A table: columns and inline constraints, plus non-unique indexes."""

    name: str
    columns: list[str]
    indexes: list[tuple[str, str]] = field(default_factory=list)  # (index name, column list)


ID = "VARCHAR(64) NOT NULL"

TABLES_V1 = [
    Table(
        "users",
        [
            f"id {ID}",
            "role VARCHAR(16) NOT NULL",
            "name VARCHAR(255) NULL",
            "active SMALLINT NOT NULL DEFAULT 1",
            "max_chats INTEGER NULL",
            "created_ms BIGINT NOT NULL",
            "updated_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
        ],
        [("ix_users_role", "role")],
    ),
    Table(
        "customer_contacts",
        [
            f"id {ID}",
            f"user_id {ID}",
            "name VARCHAR(255) NULL",
            "email VARCHAR(255) NULL",
            "phone VARCHAR(64) NULL",
            "metadata TEXT NULL",
            "created_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
        ],
        [("ix_contacts_user", "user_id")],
    ),
    Table(
        "teams",
        [
            f"id {ID}",
            "name VARCHAR(191) NOT NULL",
            "description TEXT NULL",
            "created_ms BIGINT NOT NULL",
            "updated_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
            "UNIQUE (name)",
        ],
    ),
    Table(
        "team_members",
        [
            f"team_id {ID}",
            f"user_id {ID}",
            "created_ms BIGINT NOT NULL",
            "PRIMARY KEY (team_id, user_id)",
            "FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE CASCADE",
        ],
        [("ix_team_members_user", "user_id")],
    ),
    Table(
        "labels",
        [
            f"id {ID}",
            "title VARCHAR(191) NOT NULL",
            "description TEXT NULL",
            "color VARCHAR(16) NULL",
            "created_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
            "UNIQUE (title)",
        ],
    ),
    Table(
        "conversations",
        [
            f"id {ID}",
            f"user_id {ID}",
            "state VARCHAR(16) NOT NULL",
            "agent_type VARCHAR(16) NOT NULL",
            "agent_id VARCHAR(64) NULL",
            "team_id VARCHAR(64) NULL",
            "version INTEGER NOT NULL DEFAULT 0",
            "last_seq INTEGER NOT NULL DEFAULT 0",
            "metadata TEXT NULL",
            "handoff_ms BIGINT NULL",
            "created_ms BIGINT NOT NULL",
            "updated_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
        ],
        [
            ("ix_conversations_state", "state, created_ms"),
            ("ix_conversations_agent", "agent_id, created_ms"),
            ("ix_conversations_team", "team_id, created_ms"),
            ("ix_conversations_user", "user_id, created_ms"),
            ("ix_conversations_created", "created_ms, id"),
            ("ix_conversations_updated", "updated_ms"),
        ],
    ),
    Table(
        "conversation_labels",
        [
            f"conversation_id {ID}",
            f"label_id {ID}",
            "PRIMARY KEY (conversation_id, label_id)",
            "FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE",
            "FOREIGN KEY (label_id) REFERENCES labels (id) ON DELETE CASCADE",
        ],
        [("ix_conversation_labels_label", "label_id")],
    ),
    Table(
        "messages",
        [
            f"id {ID}",
            f"conversation_id {ID}",
            "seq INTEGER NOT NULL",
            "sender_type VARCHAR(16) NOT NULL",
            "sender_id VARCHAR(64) NULL",
            "content TEXT NOT NULL",
            "private SMALLINT NOT NULL DEFAULT 0",
            "client_msg_id VARCHAR(64) NULL",
            "created_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
            "UNIQUE (conversation_id, seq)",
            # idempotency is per sender: two clients numbering their messages 1, 2, 3 never collide
            "UNIQUE (conversation_id, sender_type, sender_id, client_msg_id)",
            "FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE",
        ],
        [("ix_messages_created", "created_ms")],
    ),
    Table(
        "conversation_events",
        [
            f"id {ID}",
            f"conversation_id {ID}",
            "version INTEGER NOT NULL",
            "trigger_name VARCHAR(32) NOT NULL",
            "from_state VARCHAR(16) NOT NULL",
            "to_state VARCHAR(16) NOT NULL",
            "actor_type VARCHAR(16) NOT NULL",
            "actor_id VARCHAR(64) NULL",
            "reason VARCHAR(255) NULL",
            "agent_id VARCHAR(64) NULL",
            "team_id VARCHAR(64) NULL",
            "created_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
            "UNIQUE (conversation_id, version)",
            "FOREIGN KEY (conversation_id) REFERENCES conversations (id) ON DELETE CASCADE",
        ],
        [("ix_events_created", "created_ms"), ("ix_events_trigger", "trigger_name, created_ms")],
    ),
]

# Each schema version is a list of tables to create; later versions add tables or statements.
MIGRATIONS: list[tuple[int, list[Table]]] = [(1, TABLES_V1)]
LATEST_VERSION = MIGRATIONS[-1][0]

MYSQL_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_ms BIGINT NOT NULL, "
    "PRIMARY KEY (version))"
)


def render(table: Table, dialect: str) -> list[str]:
    """CREATE statements for one table in `mysql` or `sqlite`, each safe to run again."""
    body = ",\n  ".join(table.columns)
    if dialect == "mysql":
        inline = "".join(f",\n  INDEX {name} ({cols})" for name, cols in table.indexes)
        return [f"CREATE TABLE IF NOT EXISTS {table.name} (\n  {body}{inline}\n) {MYSQL_TABLE_OPTIONS}"]
    statements = [f"CREATE TABLE IF NOT EXISTS {table.name} (\n  {body}\n)"]
    statements += [f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} ({cols})" for name, cols in table.indexes]
    return statements


def table_names() -> list[str]:
    """Every table of the latest schema, parents before children."""
    return [t.name for _, tables in MIGRATIONS for t in tables]
