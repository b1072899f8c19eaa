"""`chat-api db import-legacy --mapping FILE`: the old system's rows copied into the service's tables.

The old tables are read in key order, a batch at a time; each row becomes a service row by the
mapping (chat.store.legacy_mapping) with an id derived from its old key, so rows already there are
left alone and a second run adds nothing. Conversations and their messages go together, batch by
batch: messages get their seq per conversation in the old order, the conversation's last_seq follows,
and an imported conversation is like any other to the service (its live Redis record is rebuilt from
the row on first access, so its customer can resume it). A dry run reads and converts everything and
writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat.settings import DatabaseConfig
from chat.store.db import Database, DatabaseError, DuplicateKey, IntegrityError, connect, marks
from chat.store.legacy_mapping import Mapping, MappingError, OldRow, Rule, Section, ValueProblem, convert, load_mapping
from chat.store.migrations import ForeignSchema, Migrations
from chat.store.models import SENDER_TYPES, STATES
from states.machine import AgentType, State

NewRow = dict[str, Any]
ROLES = ("customer", "agent", "admin")
SHOWN_PROBLEMS = 10  # per table; the count says how many there were


def quoted(name: str) -> str:
    """A checked identifier, backquoted (MySQL's quoting; SQLite accepts it too)."""
    return f"`{name}`"


@dataclass
class Counts:
    """What happened to one table's rows."""

    read: int = 0
    added: int = 0
    present: int = 0
    invalid: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self, target: str, *, dry_run: bool) -> str:
        """`conversations: 3 read, 3 added, 0 already there, 0 invalid, 0 refused`."""
        added = "to add" if dry_run else "added"
        return (f"{target}: {self.read} read, {self.added} {added}, {self.present} already there, "
                f"{self.invalid} invalid, {self.refused} refused")

    def problem(self, text: str) -> None:
        """Keep the first few problems to show."""
        if len(self.problems) < SHOWN_PROBLEMS:
            self.problems.append(text)


class LegacyImport:
    """One run of the import on one database (the old tables and the service's in it)."""

    def __init__(self, db: Database, mapping: Mapping, *, dry_run: bool = False, batch: int = 500,
                 tables_exist: bool = True, progress: Callable[[str], None] = lambda _line: None):
        self.db = db
        self.mapping = mapping
        self.dry_run = dry_run
        self.batch = batch
        self.tables_exist = tables_exist  # False on a dry run before the first upgrade: nothing is there yet
        self.progress = progress
        self.counts = {target: Counts() for target in mapping.sections}
        self.old_keys: dict[tuple[str, str], Any] = {}  # (target, new id) -> old key: problems name the old row

    async def run(self) -> dict[str, Counts]:
        """Import every mapped table, parents first; the counts per table."""
        for target in ("users", "customer_contacts", "teams", "labels"):
            if target in self.mapping.sections:
                await self._plain(self.mapping.sections[target])
        if "conversations" in self.mapping.sections:
            await self._conversations()
            if "messages" in self.mapping.sections:
                await self._orphan_messages()
        return self.counts

    # --- reading the old tables --------------------------------------------------------------

    async def _old_batches(self, section: Section) -> AsyncIterator[list[OldRow]]:
        columns = section.reads()
        select = f"SELECT {', '.join(quoted(c) for c in columns)} FROM {quoted(section.source)}"
        last: object = None
        while True:
            where = "" if last is None else f" WHERE {quoted(section.key)} > %s"
            params: list[Any] = [] if last is None else [last]
            rows = await self.db.fetchall(f"{select}{where} ORDER BY {quoted(section.key)} LIMIT %s",
                                          [*params, self.batch])
            if not rows:
                return
            yield [dict(zip(columns, row, strict=True)) for row in rows]
            last = rows[-1][0]

    async def _lookups(self, section: Section, rows: list[OldRow]) -> dict[str, dict[Any, Any]]:
        """For each lookup rule: {old value: the looked-up column} of this batch's rows."""
        found: dict[str, dict[Any, Any]] = {}
        for name, rule in section.columns.items():
            if rule.kind != "lookup":
                continue
            keys = sorted({r[rule.column] for r in rows if r[rule.column] is not None}, key=str)
            by = self._key_of(rule.table)
            found[name] = {}
            if keys:
                result = await self.db.fetchall(
                    f"SELECT {quoted(by)}, {quoted(rule.lookup_column)} FROM {quoted(rule.table)} "
                    f"WHERE {quoted(by)} IN ({marks(keys)})", keys)
                found[name] = {str(k): v for k, v in result}
        return found

    def _key_of(self, old_table: str) -> str:
        for section in self.mapping.sections.values():
            if section.source == old_table:
                return section.key
        return "id"

    # --- converting ----------------------------------------------------------------------------

    def _value(self, name: str, rule: Rule, old: OldRow, looked: dict[str, dict[Any, Any]]) -> Any:
        if rule.kind == "value":
            return rule.constant
        if rule.kind == "template":
            return rule.template.format_map({k: "" if v is None else v for k, v in old.items()})
        if rule.kind == "ref":
            return self.mapping.ref_id(rule.table, old[rule.column])
        if rule.kind == "lookup":
            value = old[rule.column]
            return None if value is None else looked[name].get(str(value))
        return convert(rule, old[rule.column], self.mapping.timezone)

    def _convert(self, section: Section, old: OldRow, looked: dict[str, dict[Any, Any]]) -> NewRow:
        row: NewRow = {"id": self.mapping.new_id(section.target, old)}
        for name, rule in section.columns.items():
            row[name] = self._value(name, rule, old, looked)
        _check(section.target, row, old[section.key])
        return row

    async def _rows(self, section: Section, old_rows: list[OldRow]) -> list[NewRow]:
        """The batch converted; the rows that cannot be are counted and reported."""
        counts = self.counts[section.target]
        counts.read += len(old_rows)
        looked = await self._lookups(section, old_rows)
        rows = []
        for old in old_rows:
            try:
                rows.append(self._convert(section, old, looked))
                self.old_keys[section.target, rows[-1]["id"]] = old[section.key]
            except (ValueProblem, KeyError, TypeError, ValueError) as exc:
                counts.invalid += 1
                counts.problem(f"{section.source} {section.key}={old[section.key]!r}: {exc}")
        return rows

    # --- writing --------------------------------------------------------------------------------

    async def _plain(self, section: Section) -> None:
        async for old_rows in self._old_batches(section):
            await self._store(section.target, await self._rows(section, old_rows))
            self.progress(self.counts[section.target].line(section.target, dry_run=self.dry_run))

    async def _store(self, target: str, rows: list[NewRow]) -> list[NewRow]:
        """Insert the rows not there yet; return the ones added (on a dry run: that would be)."""
        counts = self.counts[target]
        table = self.db.tables.of(target)
        present = await self._present(target, rows)
        new = [r for r in rows if r["id"] not in present]
        counts.present += len(present)
        if self.dry_run or not new:
            counts.added += len(new)
            return new
        columns = list(new[0])
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(columns)})"
        try:
            async with self.db.transaction() as tx:
                await tx.executemany(sql, [[r[c] for c in columns] for r in new])
            counts.added += len(new)
            return new
        except IntegrityError:  # one row breaks a constraint (a label title taken, say): one by one
            return await self._one_by_one(target, sql, columns, new)

    async def _one_by_one(self, target: str, sql: str, columns: list[str], rows: list[NewRow]) -> list[NewRow]:
        counts = self.counts[target]
        added = []
        for row in rows:
            try:
                await self.db.execute(sql, [row[c] for c in columns])
            except IntegrityError as exc:
                counts.refused += 1
                what = "a unique value is taken" if isinstance(exc, DuplicateKey) else "a parent row is missing"
                counts.problem(f"{self._old_row(target, row)}: refused ({what}: {exc})")
                continue
            counts.added += 1
            added.append(row)
        return added

    async def _conversations(self) -> None:
        """Conversations and their messages, one batch of conversations at a time."""
        section = self.mapping.sections["conversations"]
        async for old_rows in self._old_batches(section):
            rows = await self._rows(section, old_rows)
            await self._store("conversations", rows)
            if "messages" in self.mapping.sections:
                await self._messages([r[section.key] for r in old_rows], {r["id"]: r for r in rows})
            for target in ("conversations", "messages"):
                if target in self.counts:
                    self.progress(self.counts[target].line(target, dry_run=self.dry_run))

    async def _messages(self, old_keys: list[Any], conversations: dict[str, NewRow]) -> None:
        """The messages of these old conversations, numbered per conversation in the old order."""
        section = self.mapping.sections["messages"]
        link = section.columns["conversation_id"]
        if link.kind != "ref" or link.table != "conversations":
            raise ValueProblem("[messages].columns.conversation_id must be a ref to conversations")
        columns = section.reads()
        order = [link.column, *section.order_by, section.key]
        old_rows = [dict(zip(columns, r, strict=True)) for r in await self.db.fetchall(
            f"SELECT {', '.join(quoted(c) for c in columns)} FROM {quoted(section.source)} "
            f"WHERE {quoted(link.column)} IN ({marks(old_keys)}) ORDER BY {', '.join(quoted(c) for c in order)}",
            old_keys)] if old_keys else []
        rows = await self._rows(section, old_rows)
        # a run after one that refused some rows: those already stored keep their seqs, the others follow them
        present, last_seq = await self._stored_messages(rows)
        for row in rows:
            if row["id"] not in present:
                last_seq[row["conversation_id"]] = row["seq"] = last_seq.get(row["conversation_id"], 0) + 1
            owner = conversations.get(row["conversation_id"])
            if row["sender_type"] == "customer" and row.get("sender_id") is None and owner is not None:
                row["sender_id"] = owner["user_id"]
        await self._store("messages", rows)
        if not self.dry_run and last_seq:
            table = self.db.tables.conversations
            async with self.db.transaction() as tx:
                await tx.executemany(f"UPDATE {table} SET last_seq = %s WHERE id = %s AND last_seq < %s",
                                     [(seq, cid, seq) for cid, seq in last_seq.items()])

    def _old_row(self, target: str, row: NewRow) -> str:
        """`labels id=7 (new id …)`: the old row a new one came from, as the operator knows it."""
        section = self.mapping.sections[target]
        return f"{section.source} {section.key}={self.old_keys.get((target, row['id']))!r} (new id {row['id']})"

    async def _orphan_messages(self) -> None:
        """Old messages whose conversation is not in the old conversations table: no batch reads them, so
        they are counted here as read and invalid, by their old key, never skipped quietly."""
        section, parent = self.mapping.sections["messages"], self.mapping.sections["conversations"]
        link = quoted(section.columns["conversation_id"].column)
        orphans = await self.db.fetchall(
            f"SELECT m.{quoted(section.key)}, m.{link} FROM {quoted(section.source)} m WHERE m.{link} IS NULL OR "
            f"NOT EXISTS (SELECT 1 FROM {quoted(parent.source)} c WHERE c.{quoted(parent.key)} = m.{link}) "
            f"ORDER BY m.{quoted(section.key)}")
        counts = self.counts["messages"]
        for key, conversation in orphans:
            counts.read += 1
            counts.invalid += 1
            counts.problem(f"{section.source} {section.key}={key!r}: its conversation "
                           f"{conversation!r} is not in {parent.source} (not imported)")
        if orphans:
            self.progress(counts.line("messages", dry_run=self.dry_run))

    async def _present(self, target: str, rows: list[NewRow]) -> set[str]:
        """The ids of these rows stored already."""
        if not rows or not self.tables_exist:
            return set()
        ids = [r["id"] for r in rows]
        return {r[0] for r in await self.db.fetchall(
            f"SELECT id FROM {self.db.tables.of(target)} WHERE id IN ({marks(ids)})", ids)}

    async def _stored_messages(self, rows: list[NewRow]) -> tuple[set[str], dict[str, int]]:
        """Which of these messages are stored already, and the highest seq stored per conversation."""
        if not rows or not self.tables_exist:
            return set(), {}
        table = self.db.tables.messages
        conversation_ids = list({r["conversation_id"] for r in rows})
        present = await self._present("messages", rows)
        stored = await self.db.fetchall(
            f"SELECT conversation_id, MAX(seq) FROM {table} WHERE conversation_id IN ({marks(conversation_ids)}) "
            "GROUP BY conversation_id", conversation_ids)
        return present, {cid: int(seq) for cid, seq in stored}


def _check(target: str, row: NewRow, old_key: object) -> None:
    """The service's rules on a converted row (ValueProblem when it breaks one); conversations and
    messages get the columns the service derives."""
    if target == "users" and row.get("role") not in ROLES:
        raise ValueProblem(f"role {row.get('role')!r} is not one of {', '.join(ROLES)}")
    if target == "conversations":
        _conversation(row, old_key)
    if target == "messages":
        if row["sender_type"] not in SENDER_TYPES:
            raise ValueProblem(f"sender_type {row['sender_type']!r} is not one of {', '.join(SENDER_TYPES)}")
        row.setdefault("sender_id", None)
        row["private"] = 1 if row.get("private") else 0
        row.setdefault("client_msg_id", None)
    for name in ("id", "user_id", "conversation_id", "title", "name", "content"):
        if name in row and row[name] in (None, ""):
            raise ValueProblem(f"{name} is empty")


def _conversation(row: NewRow, old_key: object) -> None:
    """A conversation row the state machine can carry on from: `ai` with an agent is that agent's
    (`human`), `human` needs an agent (else it waits in `handoff`), `handoff` has none; agent_type
    follows the state; version 0."""
    state = row["state"]
    if state not in STATES:
        raise ValueProblem(f"state {state!r} is not one of {', '.join(STATES)}")
    row.setdefault("agent_id", None)
    row.setdefault("team_id", None)
    if state == State.AI and row["agent_id"] is not None:  # an open conversation an agent held: still theirs
        state = row["state"] = State.HUMAN.value
    if state == State.HUMAN and row["agent_id"] is None:
        state = row["state"] = State.HANDOFF.value
    if state in (State.AI, State.HANDOFF):
        row["agent_id"] = None
    human = state in (State.HANDOFF, State.HUMAN) or (state == State.CLOSED and row["agent_id"] is not None)
    row["agent_type"] = (AgentType.HUMAN if human else AgentType.AI).value
    row["handoff_ms"] = row["updated_ms"] if state == State.HANDOFF else None
    row["version"] = 0
    row["last_seq"] = 0
    metadata = row.get("metadata")
    if not isinstance(metadata, str):
        row["metadata"] = json.dumps({"legacy_id": old_key} if metadata is None else metadata, default=str)


async def import_legacy(config: DatabaseConfig, mapping: Mapping, *, dry_run: bool = False, batch: int = 500,
                        progress: Callable[[str], None] = lambda _line: None) -> dict[str, Counts]:
    """Upgrade the schema (a dry run only checks it) and import; the counts per table.

    ForeignSchema when the service's tables would collide with the old ones (set DB_TABLE_PREFIX)."""
    db = await connect(config)
    try:
        migrations = Migrations(db)
        if dry_run:
            await migrations.check()
            exist = bool(await migrations.existing_columns())
        else:
            await migrations.upgrade()
            exist = True
        run = LegacyImport(db, mapping, dry_run=dry_run, batch=batch, tables_exist=exist, progress=progress)
        return await run.run()
    finally:
        await db.close()


def summary(counts: dict[str, Counts], *, dry_run: bool) -> list[str]:
    """The closing lines: one per table, then the problems found."""
    lines = ["dry run, nothing written:" if dry_run else "imported:"]
    lines += [f"  {c.line(t, dry_run=dry_run)}" for t, c in counts.items()]
    for target, c in counts.items():
        lines += [f"  {problem}" for problem in c.problems]
        hidden = c.invalid + c.refused - len(c.problems)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more in {target}")
    return lines


def run_command(config: DatabaseConfig, mapping_path: Path, *, dry_run: bool, batch: int) -> int:
    """`chat-api db import-legacy`: progress on stderr, the summary on stdout; 0 when every row was
    imported (or already there), 1 when some were invalid or refused, 2 when it cannot start."""
    try:
        mapping = load_mapping(mapping_path)
    except MappingError as exc:
        print(f"chat-api: db import-legacy: {exc}", file=sys.stderr)
        print(f"result: FAILED (the mapping {mapping_path}: see the error above; nothing read or written)")
        return 2
    print(f"chat-api: importing into {config.describe()} (tables {config.table_prefix or '(no prefix)'}*) by "
          f"{mapping_path}{' -- dry run, nothing is written' if dry_run else ''}", file=sys.stderr, flush=True)
    try:
        counts = asyncio.run(import_legacy(config, mapping, dry_run=dry_run, batch=batch,
                                           progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True)))
    except ForeignSchema as exc:
        print(f"chat-api: {config.describe()}: {exc}", file=sys.stderr)
        print("result: FAILED (the service's tables collide with others: see above; nothing written)")
        return 2
    except DatabaseError as exc:  # an old table or column the mapping names is not there, say
        print(f"chat-api: db import-legacy failed on {config.describe()}: {exc}", file=sys.stderr)
        print("result: FAILED (a database error: see the error above; rows imported before it stay, "
              "a new run adds only the rest)")
        return 1
    print("\n".join(summary(counts, dry_run=dry_run)))
    print(result_line(counts, dry_run=dry_run))
    return 1 if any(c.invalid or c.refused for c in counts.values()) else 0


def result_line(counts: dict[str, Counts], *, dry_run: bool) -> str:
    """`result: OK (...)` when every row was imported or already there, else `result: FAILED (...)`."""
    added, present = sum(c.added for c in counts.values()), sum(c.present for c in counts.values())
    invalid, refused = sum(c.invalid for c in counts.values()), sum(c.refused for c in counts.values())
    done = f"{added} row(s) {'to add' if dry_run else 'added'}, {present} already there"
    if invalid or refused:
        return (f"result: FAILED ({invalid} invalid, {refused} refused: the rows listed above; {done}; fix the "
                "mapping or the data and run again)")
    return f"result: OK ({done}{'; dry run, nothing written' if dry_run else ''})"
