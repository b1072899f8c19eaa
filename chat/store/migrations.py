"""Schema upgrades: apply the versions of chat.store.schema that the database does not have yet.

Before anything is written, every table with one of the service's (prefixed) names that already
exists is compared with the schema: another system's table of the same name (the old system's
`conversations`, say) stops the upgrade with the differences listed, and nothing is changed.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chat.store.db import Database, DatabaseError, DuplicateKey
from chat.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AddColumn,
    ExactColumn,
    Table,
    Tables,
    added_columns,
    render,
    schema_tables,
)
from states.clock import now_ms

log = logging.getLogger(__name__)

# The NO PAD binary collations of utf8mb4: MariaDB's, MySQL 8's.
NO_PAD_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")

_SAME_TYPES = {"integer": "int"}  # SQLite's spelling of MySQL's INT


def type_family(declared: str) -> str:
    """`VARCHAR(64)` -> `varchar`, `bigint(20) unsigned` -> `bigint`, `INTEGER` -> `int`: what is compared."""
    family = re.split(r"[\s(]", declared.strip().lower(), maxsplit=1)[0]
    return _SAME_TYPES.get(family, family)


@dataclass(frozen=True)
class TableDifference:
    """How an existing table differs from the one the service would create under that name."""

    table: str
    missing: list[str]
    extra: list[str]
    mismatched: list[tuple[str, str, str]]  # (column, the schema's type, the table's type)

    @property
    def foreign(self) -> bool:
        """True when the service cannot use the table (a column it writes is absent or of another type)."""
        return bool(self.missing or self.mismatched)

    def describe(self) -> str:
        """One line: `conversations: missing state, ...; extra status, ...; id is int (expected VARCHAR(64))`."""
        parts = []
        if self.missing:
            parts.append("missing column(s) " + ", ".join(self.missing))
        if self.extra:
            parts.append("extra column(s) " + ", ".join(self.extra))
        parts += [f"{column} is {found} (expected {wanted})" for column, wanted, found in self.mismatched]
        return f"{self.table}: " + "; ".join(parts)


class ForeignSchema(DatabaseError):
    """Tables with the service's names but another shape exist; nothing was written."""

    def __init__(self, differences: list[TableDifference], prefix: str):
        self.differences = differences
        self.prefix = prefix
        super().__init__(self.explain())

    def explain(self) -> str:
        """The differences and what to do, one table per line."""
        lines = [
            f"{len(self.differences)} existing table(s) named like the service's have another shape "
            "(another system's tables?); nothing was written:",
            *(f"  {d.describe()}" for d in self.differences),
        ]
        hint = "another" if self.prefix else "a"
        lines.append(
            f"Set {hint} DB_TABLE_PREFIX (e.g. DB_TABLE_PREFIX=chat_) so the service's tables live beside them; "
            "`chat-api db import-legacy --mapping FILE` then copies their rows (docs/cutover.md)."
        )
        return "\n".join(lines)


def compare(table: Table, name: str, found: dict[str, str], optional: set[str] | None = None) -> TableDifference:
    """The difference between the schema's `table` and an existing table's {column: declared type};
    an `optional` column (one a later version adds, which the upgrade will) may be missing."""
    wanted = table.column_types()
    found_lower = {column.lower(): declared for column, declared in found.items()}
    missing = [column for column in wanted if column.lower() not in found_lower and column not in (optional or set())]
    extra = [column for column in found if column.lower() not in {w.lower() for w in wanted}]
    mismatched = [
        (column, declared, found_lower[column.lower()])
        for column, declared in wanted.items()
        if column.lower() in found_lower and type_family(declared) != type_family(found_lower[column.lower()])
    ]
    return TableDifference(name, missing, extra, mismatched)


def mysql_columns_sql(count: int) -> str:
    """MySQL: (table, column, declared type) of `count` tables named by the parameters, in table order."""
    return ("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            f"DATABASE() AND TABLE_NAME IN ({', '.join(['%s'] * count)}) ORDER BY TABLE_NAME, ORDINAL_POSITION")


def columns_by_table(rows: Iterable[Sequence[Any]]) -> dict[str, dict[str, str]]:
    """{table: {column: declared type}} of mysql_columns_sql's rows."""
    found: dict[str, dict[str, str]] = {}
    for table, column, declared in rows:
        found.setdefault(table, {})[column] = declared
    return found


def foreign_tables(existing: dict[str, dict[str, str]], tables: Tables) -> list[TableDifference]:
    """Of the existing tables ({table: {column: declared type}}), those under the service's names (`tables`)
    that the service could not use: another system's tables."""
    added = added_columns()
    found = []
    for table in schema_tables():
        name = tables.of(table.name)
        if name in existing:
            difference = compare(table, name, existing[name], added.get(table.name))
            if difference.foreign:
                found.append(difference)
    return found


class Migrations:
    """The schema_version table and the upgrade that fills it."""

    def __init__(self, db: Database):
        self.db = db
        self.tables = db.tables

    async def existing_columns(self) -> dict[str, dict[str, str]]:
        """{table: {column: declared type}} of the tables that exist under the service's names."""
        names = {self.tables.of(t.name) for t in schema_tables()}
        if self.db.dialect == "mysql":
            return columns_by_table(await self.db.fetchall(mysql_columns_sql(len(names)), sorted(names)))
        present = await self.db.fetchall(
            f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({', '.join(['%s'] * len(names))})",
            sorted(names),
        )
        return {
            name: {r[1]: r[2] for r in await self.db.fetchall(f'PRAGMA table_info("{name}")')}
            for (name,) in present
        }

    async def differences(self) -> list[TableDifference]:
        """Every existing table under the service's names that the service could not use."""
        return foreign_tables(await self.existing_columns(), self.tables)

    async def check(self) -> None:
        """Raise ForeignSchema (before anything is written) when a table of another shape has one of our names."""
        differences = await self.differences()
        if differences:
            raise ForeignSchema(differences, self.tables.prefix)

    async def upgrade(self) -> list[int]:
        """Create or upgrade the schema; return the versions applied (none when current).

        ForeignSchema, with nothing written, when a table of another shape holds one of the names."""
        await self.check()
        with warnings.catch_warnings():  # MySQL warns "already exists" on every later run
            warnings.simplefilter("ignore")
            for statement in render(SCHEMA_VERSION, self.db.dialect, self.tables):
                await self.db.execute(statement)
        # every version not recorded yet, not only those above the highest: two branches' versions may
        # land in either order, and each step is safe to run again
        done = {int(r[0]) for r in await self.db.fetchall(f"SELECT version FROM {self.tables.schema_version}")}
        with warnings.catch_warnings():
            # A version not recorded over tables that exist (a rollback empties the tables, the record
            # of versions with them) makes MySQL warn "Table ... already exists" per CREATE TABLE IF NOT
            # EXISTS: expected, and not the operator's concern. Every other warning still shows.
            warnings.filterwarnings("ignore", message=r".*\balready exists\b")
            return await self._apply(done)

    async def _apply(self, done: set[int]) -> list[int]:
        """Run every version not in ``done``; the versions applied."""
        applied = []
        for version, steps in MIGRATIONS:
            if version in done:
                continue
            for step in steps:
                if isinstance(step, AddColumn):
                    await self._add_column(step)
                    continue
                if isinstance(step, ExactColumn):
                    await self._exact_column(step)
                    continue
                for statement in render(step, self.db.dialect, self.tables):
                    await self.db.execute(statement)
            try:
                await self.db.execute(
                    f"INSERT INTO {self.tables.schema_version} (version, applied_ms) VALUES (%s, %s)",
                    (version, now_ms()),
                )
            except DuplicateKey:  # another instance upgraded at the same moment
                continue
            applied.append(version)
        return applied

    async def _add_column(self, step: AddColumn) -> None:
        """ALTER TABLE ... ADD COLUMN unless the column is there (a rerun after a crash, another instance)."""
        name = self.tables.of(step.table)

        async def present() -> bool:
            return step.name.lower() in {c.lower() for c in (await self.existing_columns()).get(name, {})}

        if await present():
            return
        try:
            await self.db.execute(f"ALTER TABLE {name} ADD COLUMN {step.column}")
        except DatabaseError:
            if not await present():  # not a race with another instance adding it
                raise

    async def _exact_column(self, step: ExactColumn) -> None:
        """MySQL: MODIFY the column to a NO PAD binary collation unless it has one (a rerun, another instance)."""
        if self.db.dialect != "mysql":
            return  # SQLite compares text exactly
        rows = await self.db.fetchall(
            "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (%s, %s)",
            NO_PAD_COLLATIONS)
        if not rows:
            log.warning("the server has no NO PAD binary collation (%s): %s keeps trailing spaces insignificant",
                        " or ".join(NO_PAD_COLLATIONS), step.name)
            return
        collation = str(rows[0][0])
        name = self.tables.of(step.table)
        current = await self.db.fetchone(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = %s", (name, step.name))
        if current is not None and current[0] in NO_PAD_COLLATIONS:
            return
        await self.db.execute(f"ALTER TABLE {name} MODIFY {step.column} COLLATE {collation}")

    async def version(self) -> int:
        """The applied schema version (0 before the first upgrade)."""
        row = await self.db.fetchone(f"SELECT MAX(version) FROM {self.tables.schema_version}")
        return int(row[0] or 0) if row else 0
