"""The column mapping of `chat-api db import-legacy`: a TOML file saying which old table and column
each of the service's columns comes from (docs/legacy-mapping.example.toml, docs/cutover.md).

Each service table (`users`, `customer_contacts`, `teams`, `labels`, `conversations`, `messages`)
has a section naming its old table (`from`), the old primary key (`key`) and the new id, a template
over the old row (`id = "{id}"`, or hashed into a uuid5 with `uuid5 = true`): the same old row always
gets the same new id, which is what makes a second run add nothing. Each column rule is one of

    name = "old_column"                                    the value as it is
    name = { column = "c", convert = "ms" | "text" | "int" | "bool", map = {old = new}, default = v }
    name = { value = v }                                   a constant
    name = { template = "cust-{contact_id}" }              text from the old row's columns
    name = { ref = "teams", column = "team_id" }           the new id of the old row it points to
    name = { lookup = "customer_contacts.external_id", column = "contact_id" }   a column of that row
"""

from __future__ import annotations

import datetime as dt
import re
import string
import tomllib
import uuid
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat.store.schema import schema_tables

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
DEFAULT_NAMESPACE = uuid.UUID("0b6a3a8e-54f1-4c1e-9d43-7d1f1b0e5c21")  # uuid5 ids: any fixed namespace
TARGETS = ("users", "customer_contacts", "teams", "labels", "conversations", "messages")  # parents first
# what each target needs from the mapping (the importer fills the rest: version, seq, agent_type...)
REQUIRED = {
    "users": ("role", "created_ms", "updated_ms"),
    "customer_contacts": ("user_id", "created_ms"),
    "teams": ("name", "created_ms", "updated_ms"),
    "labels": ("title", "created_ms"),
    "conversations": ("user_id", "state", "created_ms", "updated_ms"),
    "messages": ("conversation_id", "sender_type", "content", "created_ms"),
}
CONVERTS = ("ms", "text", "int", "bool")
OldRow = dict[str, Any]


class MappingError(Exception):
    """The mapping file cannot be used (the message names the section and key)."""


def identifier(name: object, where: str) -> str:
    """A plain table or column name (it is pasted into SQL, backquoted)."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise MappingError(f"{where}: {name!r} is not a plain table or column name")
    return name


def template_fields(template: str, where: str) -> list[str]:
    """The old columns a `{column}` template reads (nothing but plain names)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise MappingError(f"{where}: bad template {template!r}: {exc}") from None
    return [identifier(name, where) for name in names]


@dataclass(frozen=True)
class Rule:
    """How one column of the service's row is made from an old row."""

    kind: str  # column | value | template | ref | lookup
    column: str = ""
    convert: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    default: Any = None
    constant: Any = None
    template: str = ""
    table: str = ""  # ref: the target table; lookup: the old table
    lookup_column: str = ""

    def reads(self) -> list[str]:
        """The old columns this rule reads."""
        if self.kind == "template":
            return template_fields(self.template, "template")
        return [self.column] if self.column else []


def parse_rule(raw: object, where: str) -> Rule:  # noqa: C901, PLR0911 - one branch per rule kind
    """One column rule of the mapping file."""
    if isinstance(raw, str):
        return Rule("column", column=identifier(raw, where))
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: a column rule is an old column name or a table, got {raw!r}")
    if "value" in raw:
        return Rule("value", constant=raw["value"])
    if "template" in raw:
        template_fields(str(raw["template"]), where)
        return Rule("template", template=str(raw["template"]))
    column = identifier(raw.get("column"), f"{where}.column")
    if "ref" in raw:
        if raw["ref"] not in TARGETS:
            raise MappingError(f"{where}.ref: {raw['ref']!r} is not one of {', '.join(TARGETS)}")
        return Rule("ref", column=column, table=raw["ref"])
    if "lookup" in raw:
        table, _, looked = str(raw["lookup"]).partition(".")
        return Rule("lookup", column=column, table=identifier(table, f"{where}.lookup"),
                    lookup_column=identifier(looked, f"{where}.lookup"))
    convert = raw.get("convert", "")
    if convert and convert not in CONVERTS:
        raise MappingError(f"{where}.convert: {convert!r} is not one of {', '.join(CONVERTS)}")
    values = raw.get("map", {})
    if not isinstance(values, dict):
        raise MappingError(f"{where}.map: a table of old value = new value")
    return Rule("column", column=column, convert=convert, values=values, default=raw.get("default"))


@dataclass(frozen=True)
class Section:
    """One service table and where its rows come from."""

    target: str
    source: str
    key: str
    id_template: str
    uuid5: bool
    columns: dict[str, Rule]
    order_by: tuple[str, ...] = ()  # messages: the order of seq inside a conversation (after the key)

    def reads(self) -> list[str]:
        """Every old column the section reads, the key first."""
        names = [self.key, *template_fields(self.id_template, self.target)]
        names += [c for rule in self.columns.values() for c in rule.reads()]
        names += list(self.order_by)
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Mapping:
    """The whole mapping file."""

    sections: dict[str, Section]
    namespace: uuid.UUID
    timezone: dt.tzinfo

    def new_id(self, target: str, old: OldRow) -> str:
        """The new id of an old row of `target`'s section (the same every run)."""
        section = self.sections[target]
        text = section.id_template.format_map(_Strings(old))
        return str(uuid.uuid5(self.namespace, f"{target}:{text}")) if section.uuid5 else text

    def ref_id(self, target: str, old_key: object) -> str | None:
        """The new id of the row of `target` whose old key is `old_key` (None stays None)."""
        if old_key is None:
            return None
        return self.new_id(target, {self.sections[target].key: old_key})


class _Strings(dict[str, Any]):
    def __missing__(self, name: str) -> str:
        raise MappingError(f"the id template needs column {name!r}")


def _section(target: str, raw: dict[str, Any]) -> Section:
    where = f"[{target}]"
    key = identifier(raw.get("key", "id"), f"{where}.key")
    id_template = str(raw.get("id", "{" + key + "}"))
    if template_fields(id_template, f"{where}.id") != [key]:
        raise MappingError(f"{where}.id: the id template must use the key column {{{key}}} (and only it)")
    columns = {identifier(name, where): parse_rule(rule, f"{where}.columns.{name}")
               for name, rule in raw.get("columns", {}).items()}
    known = next(t for t in schema_tables() if t.name == target).column_types()
    unknown = [c for c in columns if c not in known or c == "id"]
    if unknown:
        raise MappingError(f"{where}.columns: {', '.join(unknown)} not a column the mapping can set "
                           f"(the id comes from `id`; columns: {', '.join(c for c in known if c != 'id')})")
    missing = [c for c in REQUIRED[target] if c not in columns]
    if missing:
        raise MappingError(f"{where}.columns: no rule for {', '.join(missing)}")
    order_by = tuple(identifier(c, f"{where}.order_by") for c in raw.get("order_by", []))
    return Section(target, identifier(raw.get("from", target), f"{where}.from"), key, id_template,
                   bool(raw.get("uuid5", False)), columns, order_by)


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file; MappingError saying what is wrong."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: {exc}") from None
    unknown = sorted(set(raw) - {*TARGETS, "namespace", "timezone"})
    if unknown:
        raise MappingError(f"{path}: unknown section(s) {', '.join(unknown)}; the tables are {', '.join(TARGETS)}")
    sections = {t: _section(t, raw[t]) for t in TARGETS if t in raw}
    if "messages" in sections and "conversations" not in sections:
        raise MappingError("[messages] needs a [conversations] section (the messages' seq is per conversation)")
    for section in sections.values():
        for name, rule in section.columns.items():
            if rule.kind == "ref" and rule.table not in sections:
                raise MappingError(f"[{section.target}].columns.{name}: refers to [{rule.table}], which is not mapped")
    try:
        namespace = uuid.UUID(str(raw.get("namespace", DEFAULT_NAMESPACE)))
        timezone = zoneinfo.ZoneInfo(str(raw.get("timezone", "UTC")))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise MappingError(f"{path}: namespace/timezone: {exc}") from None
    return Mapping(sections, namespace, timezone)


class ValueProblem(ValueError):
    """An old value the mapping cannot convert (the row is reported and skipped)."""


def to_ms(value: Any, tz: dt.tzinfo) -> int:
    """Epoch milliseconds of a DATETIME (naive ones read in `tz`), an ISO text or an epoch number."""
    if isinstance(value, bool):
        raise ValueProblem(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return int(value if value > 1e11 else value * 1000)  # seconds unless it is already milliseconds
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueProblem(f"not a time: {value!r}") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return int(value.timestamp() * 1000)
    raise ValueProblem(f"not a time: {value!r}")


def convert(rule: Rule, value: Any, tz: dt.tzinfo) -> Any:
    """A column rule applied to the old value."""
    if rule.values:
        key = str(value) if value is not None else None
        if key in rule.values:
            value = rule.values[key]
        elif rule.default is not None:
            value = rule.default
        else:
            raise ValueProblem(f"{rule.column} = {value!r} is not in its map")
    elif value is None:
        value = rule.default
    if value is None or not rule.convert:
        return value
    if rule.convert == "ms":
        return to_ms(value, tz)
    if rule.convert == "int":
        return int(value)
    if rule.convert == "bool":
        return 1 if value in (1, True, "1", "true", "yes") else 0
    return str(value)
