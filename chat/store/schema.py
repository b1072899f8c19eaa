"""The SQL schema, versioned: `chat-api db upgrade` applies what is missing, idempotently.

One description renders to both dialects: MySQL 8 / MariaDB 10.11 (InnoDB, utf8mb4, the binary
collation utf8mb4_bin; client_msg_id in a NO PAD one, see ExactColumn, so it compares exactly as in SQLite) and
SQLite. Times are
epoch milliseconds (BIGINT) so the same arithmetic works in both for the statistics.

Every table name the service uses goes through `Tables` (`DB_TABLE_PREFIX` prepended), so the
service's tables can live beside another system's tables of the same names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Table:
    """A table: columns and inline constraints, non-unique indexes and foreign keys (to a parent's id)."""

    name: str  # without the prefix
    columns: list[str]
    indexes: list[tuple[str, str]] = field(default_factory=list)  # (index name, column list)
    references: list[tuple[str, str]] = field(default_factory=list)  # (column, parent table): ON DELETE CASCADE

    def column_types(self) -> dict[str, str]:
        """Each column's declared type (`VARCHAR(64)`, `BIGINT`...), constraints left out."""
        return {line.split()[0]: line.split()[1] for line in self.columns if not _CONSTRAINT.match(line)}


_CONSTRAINT = re.compile(r"(PRIMARY KEY|UNIQUE|FOREIGN KEY)\b")
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_]{0,24}")  # pasted into SQL as part of identifiers: nothing else


@dataclass(frozen=True)
class Tables:
    """The names of the service's tables under one prefix: `Tables("chat_").conversations == "chat_conversations"`."""

    prefix: str = ""
    users: str = field(init=False)
    customer_contacts: str = field(init=False)
    teams: str = field(init=False)
    team_members: str = field(init=False)
    labels: str = field(init=False)
    conversations: str = field(init=False)
    conversation_labels: str = field(init=False)
    messages: str = field(init=False)
    conversation_events: str = field(init=False)
    refresh_tokens: str = field(init=False)
    conversation_marks: str = field(init=False)
    csat_responses: str = field(init=False)
    canned_responses: str = field(init=False)
    webhooks: str = field(init=False)
    webhook_deliveries: str = field(init=False)
    conversation_purges: str = field(init=False)
    schema_version: str = field(init=False)

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError(f"table prefix {self.prefix!r}: letters, digits and _ only, at most 24")
        for f in fields(self):
            if f.name != "prefix":
                object.__setattr__(self, f.name, self.prefix + f.name)

    def of(self, name: str) -> str:
        """The prefixed name of a schema table given without its prefix."""
        if name not in BASE_NAMES:
            raise KeyError(f"not a table of the schema: {name}")
        return self.prefix + name

    def all(self) -> list[str]:
        """Every table of the latest schema, parents before children, then schema_version."""
        return [*(self.prefix + name for name in table_names()), self.schema_version]


ID = "VARCHAR(64) NOT NULL"

TABLES_V1 = [
    Table(
        "users",
        [f"id {ID}", "role VARCHAR(16) NOT NULL", "name VARCHAR(255) NULL", "active SMALLINT NOT NULL DEFAULT 1",
         "max_chats INTEGER NULL", "created_ms BIGINT NOT NULL", "updated_ms BIGINT NOT NULL", "PRIMARY KEY (id)"],
        [("ix_users_role", "role")],
    ),
    Table(
        "customer_contacts",
        [f"id {ID}", f"user_id {ID}", "name VARCHAR(255) NULL", "email VARCHAR(255) NULL", "phone VARCHAR(64) NULL",
         "metadata TEXT NULL", "created_ms BIGINT NOT NULL", "PRIMARY KEY (id)"],
        [("ix_contacts_user", "user_id")],
    ),
    Table(
        "teams",
        [f"id {ID}", "name VARCHAR(191) NOT NULL", "description TEXT NULL", "created_ms BIGINT NOT NULL",
         "updated_ms BIGINT NOT NULL", "PRIMARY KEY (id)", "UNIQUE (name)"],
    ),
    Table(
        "team_members",
        [f"team_id {ID}", f"user_id {ID}", "created_ms BIGINT NOT NULL", "PRIMARY KEY (team_id, user_id)"],
        [("ix_team_members_user", "user_id")],
        [("team_id", "teams")],
    ),
    Table(
        "labels",
        [f"id {ID}", "title VARCHAR(191) NOT NULL", "description TEXT NULL", "color VARCHAR(16) NULL",
         "created_ms BIGINT NOT NULL", "PRIMARY KEY (id)", "UNIQUE (title)"],
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
        [f"conversation_id {ID}", f"label_id {ID}", "PRIMARY KEY (conversation_id, label_id)"],
        [("ix_conversation_labels_label", "label_id")],
        [("conversation_id", "conversations"), ("label_id", "labels")],
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
        ],
        [("ix_messages_created", "created_ms")],
        [("conversation_id", "conversations")],
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
        ],
        [("ix_events_created", "created_ms"), ("ix_events_trigger", "trigger_name, created_ms")],
        [("conversation_id", "conversations")],
    ),
]


@dataclass(frozen=True)
class AddColumn:
    """A nullable column a later version adds to an existing table (ALTER TABLE ... ADD COLUMN)."""

    table: str  # without the prefix
    column: str  # a column line as in Table.columns: `password_hash VARCHAR(255) NULL`

    @property
    def name(self) -> str:
        """The column's name."""
        return self.column.split()[0]


@dataclass(frozen=True)
class ExactColumn:
    """A column whose values compare exactly in MySQL too (ALTER TABLE ... MODIFY to a NO PAD binary
    collation): under the tables' utf8mb4_bin, a PAD SPACE collation, `k1` and `k1 ` are one value in a
    comparison and in a unique key, while SQLite and the protocol hold them apart. Nothing in SQLite."""

    table: str  # without the prefix
    column: str  # the column line as declared in Table.columns: `client_msg_id VARCHAR(64) NULL`

    @property
    def name(self) -> str:
        """The column's name."""
        return self.column.split()[0]


Step = Table | AddColumn | ExactColumn

STEPS_V2: list[Step] = [
    # staff accounts (PROTOCOL 2.1): an argon2id hash in PHC form; NULL: the user cannot log in
    AddColumn("users", "password_hash VARCHAR(255) NULL"),
    Table(
        "refresh_tokens",
        [
            "token_hash CHAR(64) NOT NULL",  # hex SHA-256 of the token: the token itself is never stored
            f"family_id {ID}",  # every token rotated from one login shares it
            f"user_id {ID}",
            "created_ms BIGINT NOT NULL",
            "expires_ms BIGINT NOT NULL",
            "used_ms BIGINT NULL",  # exchanged for its successor: presenting it again revokes the family
            "revoked_ms BIGINT NULL",
            "PRIMARY KEY (token_hash)",
        ],
        [("ix_refresh_tokens_family", "family_id"), ("ix_refresh_tokens_user", "user_id, revoked_ms")],
        [("user_id", "users")],
    ),
]


TABLES_V3 = [
    Table(
        # one rating per close: a close is the conversation's version when it closed (PROTOCOL 3.4)
        "csat_responses",
        [
            f"id {ID}",
            f"conversation_id {ID}",
            "close_version INTEGER NOT NULL",
            f"user_id {ID}",
            "agent_id VARCHAR(64) NULL",  # who held it at the close (null: the AI, or nobody)
            "team_id VARCHAR(64) NULL",
            "score SMALLINT NOT NULL",
            "comment TEXT NULL",
            "closed_ms BIGINT NOT NULL",
            "created_ms BIGINT NOT NULL",
            "PRIMARY KEY (id)",
            "UNIQUE (conversation_id, close_version)",
        ],
        [("ix_csat_created", "created_ms, id"), ("ix_csat_closed", "closed_ms")],
        [("conversation_id", "conversations")],
    ),
    Table(
        "canned_responses",
        [f"id {ID}", "short_code VARCHAR(64) NOT NULL", "content TEXT NOT NULL", "created_ms BIGINT NOT NULL",
         "updated_ms BIGINT NOT NULL", "PRIMARY KEY (id)", "UNIQUE (short_code)"],
    ),
]

# The event log's entries that are not transitions (PROTOCOL 4.1: `sla_breached`): at most one of a
# kind per conversation and version, so a timer claimed twice could not log twice either.
TABLES_V4 = [
    Table(
        "conversation_marks",
        [f"id {ID}", f"conversation_id {ID}", "version INTEGER NOT NULL", "kind VARCHAR(32) NOT NULL",
         "state VARCHAR(16) NOT NULL", "agent_id VARCHAR(64) NULL", "team_id VARCHAR(64) NULL",
         "created_ms BIGINT NOT NULL", "PRIMARY KEY (id)", "UNIQUE (conversation_id, version, kind)"],
        [("ix_marks_kind", "kind, created_ms")],
        [("conversation_id", "conversations")],
    ),
]

TABLES_V5 = [
    Table(
        # webhook subscriptions (PROTOCOL 6.1); the secret signs the deliveries, so it is kept as given
        "webhooks",
        [f"id {ID}", "url VARCHAR(2048) NOT NULL", "events VARCHAR(255) NOT NULL", "secret VARCHAR(255) NOT NULL",
         "created_ms BIGINT NOT NULL", "PRIMARY KEY (id)"],
    ),
    Table(
        # the outbox: one row per (event, subscription), written in the transaction of the change;
        # `position` orders a conversation's events, `body` is what every attempt sends byte for byte
        "webhook_deliveries",
        [
            f"id {ID}", f"webhook_id {ID}", f"event_id {ID}", "event_type VARCHAR(32) NOT NULL",
            "conversation_id VARCHAR(64) NOT NULL", "position BIGINT NOT NULL", "body MEDIUMTEXT NOT NULL",
            "status VARCHAR(16) NOT NULL", "attempts INTEGER NOT NULL DEFAULT 0", "next_ms BIGINT NOT NULL",
            "lease_ms BIGINT NULL", "lease_owner VARCHAR(64) NULL", "window_ms BIGINT NOT NULL",
            "last_attempt_ms BIGINT NULL", "response_status INTEGER NULL", "response_excerpt VARCHAR(512) NULL",
            "error VARCHAR(255) NULL", "delivered_ms BIGINT NULL", "created_ms BIGINT NOT NULL", "PRIMARY KEY (id)",
        ],
        [("ix_webhook_deliveries_due", "status, next_ms"),
         ("ix_webhook_deliveries_line", "webhook_id, conversation_id, status, position"),
         ("ix_webhook_deliveries_conversation", "conversation_id, position"),
         ("ix_webhook_deliveries_webhook", "webhook_id, created_ms")],
        [("webhook_id", "webhooks")],
    ),
    Table(
        # when retention or an erasure last scrubbed a conversation's words (PROTOCOL 6)
        "conversation_purges",
        [f"conversation_id {ID}", "purged_ms BIGINT NOT NULL", "PRIMARY KEY (conversation_id)"],
        references=[("conversation_id", "conversations")],
    ),
]

# Each schema version is a list of steps: tables to create, columns to add to existing tables.
MIGRATIONS: list[tuple[int, list[Step]]] = [
    (1, list(TABLES_V1)), (2, STEPS_V2), (3, list(TABLES_V3)), (4, list(TABLES_V4)), (5, list(TABLES_V5)),
    # a resend is told by its exact client_msg_id (PROTOCOL 3.4): `k1 ` is not a resend of `k1`
    (6, [ExactColumn("messages", "client_msg_id VARCHAR(64) NULL")]),
    # when the account was last deactivated or given a new password: its access tokens issued before that
    # second are refused (PROTOCOL 2.1); NULL: never, every token counts
    (7, [AddColumn("users", "tokens_after_ms BIGINT NULL")]),
]
LATEST_VERSION = MIGRATIONS[-1][0]

MYSQL_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

SCHEMA_VERSION = Table(
    "schema_version", ["version INTEGER NOT NULL", "applied_ms BIGINT NOT NULL", "PRIMARY KEY (version)"]
)


def render(table: Table, dialect: str, tables: Tables | None = None) -> list[str]:
    """CREATE statements for one table in `mysql` or `sqlite` under `tables`' prefix, each safe to run again."""
    t = tables or Tables()
    body = ",\n  ".join(
        [*table.columns, *(f"FOREIGN KEY ({column}) REFERENCES {t.of(parent)} (id) ON DELETE CASCADE"
                           for column, parent in table.references)]
    )
    name = t.of(table.name)
    # index names are per database in SQLite: prefixed too, so they never meet another system's
    indexes = [(t.prefix + index, cols) for index, cols in table.indexes]
    if dialect == "mysql":
        inline = "".join(f",\n  INDEX {index} ({cols})" for index, cols in indexes)
        return [f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}{inline}\n) {MYSQL_TABLE_OPTIONS}"]
    statements = [f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}\n)"]
    statements += [f"CREATE INDEX IF NOT EXISTS {index} ON {name} ({cols})" for index, cols in indexes]
    return statements


def table_names() -> list[str]:
    """Every table of the latest schema (without a prefix), parents before children."""
    return [step.name for _, steps in MIGRATIONS for step in steps if isinstance(step, Table)]


def added_columns() -> dict[str, set[str]]:
    """{table: the columns later versions add to it}: a database not yet upgraded lacks them."""
    added: dict[str, set[str]] = {}
    for _, steps in MIGRATIONS:
        for step in steps:
            if isinstance(step, AddColumn):
                added.setdefault(step.table, set()).add(step.name)
    return added


def schema_tables() -> list[Table]:
    """Every table of the latest schema (added columns included), schema_version first: what must
    match where it exists."""
    tables = {step.name: step for _, steps in MIGRATIONS for step in steps if isinstance(step, Table)}
    for _, steps in MIGRATIONS:
        for step in steps:
            if isinstance(step, AddColumn):
                table = tables[step.table]
                first_constraint = next((i for i, line in enumerate(table.columns) if _CONSTRAINT.match(line)),
                                        len(table.columns))
                columns = [*table.columns[:first_constraint], step.column, *table.columns[first_constraint:]]
                tables[step.table] = Table(table.name, columns, table.indexes, table.references)
    return [SCHEMA_VERSION, *tables.values()]


BASE_NAMES = frozenset(t.name for t in schema_tables())
