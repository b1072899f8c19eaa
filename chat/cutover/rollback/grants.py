"""May the database account run the SQL restore? Checked in the preflight, before anything is changed.

The privileges each method uses on the target database (what its statements need):

- logical: ``DELETE`` (every table emptied, children first), ``INSERT`` (the backed-up rows), ``SELECT``
  (the row counts, and the plan's reads);
- mysqldump: the ``mysql`` client runs the file: ``DROP TABLE IF EXISTS``, ``CREATE TABLE``,
  ``LOCK TABLES ... WRITE`` (``LOCK TABLES`` and ``SELECT``), ``ALTER TABLE ... DISABLE KEYS``, ``INSERT``;
  views in the file add ``CREATE VIEW``, triggers ``TRIGGER``; a view or trigger whose ``DEFINER`` is
  another account needs ``SET USER`` (or ``SUPER``) on ``*.*``; on MySQL (not MariaDB) the tables'
  foreign keys need ``REFERENCES``.

The account's grants are read with ``SHOW GRANTS`` (on MariaDB it lists the enabled roles' grants too):
grants on ``*.*``, on the database or a pattern matching it (``%``, ``_``), and on its tables. Of the
database-level grants of one account or role that match, the server uses one, not their sum: the one
without a wildcard (``chat\\_api``) when there is one; otherwise which one depends on the server's
ordering, so only what they all grant is certain. A privilege missing from what is certain refuses the
run when nothing else could give it; when something might (a grant on single tables, several matching
patterns, a role whose grants are not shown, a partial revoke), the plan says it cannot tell rather
than refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)

from chat.cutover.rollback.checks import Backup

ALL = "ALL PRIVILEGES"
LOGICAL = ("SELECT", "INSERT", "DELETE")
MYSQLDUMP = ("SELECT", "INSERT", "CREATE", "DROP", "ALTER", "LOCK TABLES")
SET_USER = ("SET USER", "SUPER", "SET_USER_ID")  # any of them: another account as a DEFINER
KNOWN = {*MYSQLDUMP, *LOGICAL, "CREATE VIEW", "TRIGGER", "REFERENCES"}  # every privilege looked for here

_NAME = r"(?:`(?:[^`]|``)*`|'(?:[^'\\]|\\.)*'|[^\s`'@,]+)"
_ACCOUNT = rf"{_NAME}(?:@{_NAME})?"
_ON = re.compile(rf"^(GRANT|REVOKE) (.+?) ON (\*|`(?:[^`]|``)*`)\.(\*|`(?:[^`]|``)*`) (?:TO|FROM) ({_ACCOUNT})")
_ROLES = re.compile(rf"^GRANT ((?:{_ACCOUNT}\s*,\s*)*{_ACCOUNT}) TO ({_ACCOUNT})")
_VIEW = re.compile(rb"^/\*!50001 (?:CREATE|DROP VIEW|VIEW)")
_TRIGGER = re.compile(rb"^/\*!50003 CREATE\*/.*/\*!50003 TRIGGER")
_DEFINER = re.compile(rb"/\*!50\d\d\d DEFINER=((?:`(?:[^`]|``)*`|'[^']*')@(?:`(?:[^`]|``)*`|'[^']*'))")


def _unquote(name: str) -> str:
    if name[:1] == "`":
        return name[1:-1].replace("``", "`")
    if name[:1] == "'":
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def account_name(text: str) -> str:
    """``user@host`` (or a role's name) of a quoted account: how CURRENT_USER() spells it."""
    parts = re.findall(_NAME, text.strip())
    return "@".join(_unquote(part) for part in parts[:2])


def _privileges(text: str) -> set[str]:
    """The privileges of a GRANT's list, column lists left out: ``SELECT (a, b), DROP`` -> SELECT, DROP;
    ALL PRIVILEGES with each privilege looked for here spelled out."""
    names = {" ".join(p.split()).upper() for p in re.sub(r"\([^)]*\)", "", text).split(",")}
    names = {ALL if name == "ALL" else name for name in names if name and name != "USAGE"}
    return names | KNOWN if ALL in names else names


def _pattern(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A grant's database name (``%`` and ``_`` wildcards, ``\\`` escaping) as a regex, and whether it
    has no wildcard (of the patterns that match, the server takes such a one first)."""
    parts = re.findall(r"\\.|[%_]|[^\\%_]+", pattern)
    regex = "".join(
        re.escape(part[1:]) if part.startswith("\\") else ".*" if part == "%" else "." if part == "_"
        else re.escape(part)
        for part in parts
    )
    return re.compile(regex, re.DOTALL), not any(part in ("%", "_") for part in parts)


@dataclass
class Granted:
    """What SHOW GRANTS says the account may do on one database."""

    certain: set[str] = field(default_factory=set)  # on the whole database, surely
    maybe: set[str] = field(default_factory=set)  # on it or on some of its tables, perhaps
    global_certain: set[str] = field(default_factory=set)  # on *.*
    unknown: list[str] = field(default_factory=list)  # why more may be granted than is shown

    def has(self, privilege: str) -> bool:
        return privilege in self.certain or ALL in self.certain

    def may_have(self, privilege: str) -> bool:
        return bool(self.unknown) or privilege in self.maybe or ALL in self.maybe


def read_grants(lines: list[str], database: str) -> Granted:
    """Parse SHOW GRANTS lines for the privileges on ``database`` (see the module's docstring)."""
    granted = Granted()
    patterns: dict[str, list[tuple[bool, set[str]]]] = {}  # grantee -> (no wildcard, privileges) of those matching
    grantees: set[str] = set()
    roles: set[str] = set()
    revoked: set[str] = set()
    for line in lines:
        match = _ON.match(line)
        if match is None:
            role_grant = _ROLES.match(line)
            if role_grant is not None and " ON " not in line:
                roles.update(account_name(r) for r in re.findall(_ACCOUNT, role_grant.group(1)))
            continue
        verb, privileges, db, table, grantee = match.groups()
        privileges_set = _privileges(privileges)
        grantees.add(account_name(grantee))
        if verb == "REVOKE":  # MySQL's partial revokes take global privileges away from one database
            revoked |= privileges_set if _unquote(db) == database else set()
        elif db == "*":
            granted.global_certain |= privileges_set
        else:
            regex, exact = _pattern(_unquote(db))
            if regex.fullmatch(database) is None:
                continue
            if table == "*":
                patterns.setdefault(account_name(grantee), []).append((exact, privileges_set))
            else:
                granted.maybe |= privileges_set
    granted.certain = set(granted.global_certain)
    for matching in patterns.values():  # per grantee the server takes one: the exact name, else unsure which
        first = [privileges for exact, privileges in matching if exact] or [p for _, p in matching]
        granted.certain |= set.intersection(*first)
        granted.maybe |= set.union(*first)
    if revoked:
        granted.unknown.append(f"a partial revoke of {', '.join(sorted(revoked))}")
        granted.certain -= {ALL, *revoked}
    granted.maybe |= granted.global_certain
    granted.unknown += [f"role {role}, whose grants are not shown" for role in sorted(roles - grantees)]
    return granted


@dataclass
class DumpNeeds:
    """What a mysqldump file runs besides its tables: views, triggers and their DEFINERs."""

    views: bool = False
    triggers: bool = False
    definers: set[str] = field(default_factory=set)


def scan_dump(path: Path) -> DumpNeeds:
    """One read of the file; only lines of views and triggers (``/*!50...``) are looked at."""
    needs = DumpNeeds()
    with open(path, "rb") as fh:
        for line in fh:
            if line.startswith(b"/*!50"):
                needs.views = needs.views or _VIEW.match(line) is not None
                needs.triggers = needs.triggers or _TRIGGER.match(line) is not None
                needs.definers.update(account_name(m.decode("utf-8", "replace")) for m in _DEFINER.findall(line))
    return needs


def needed(part: dict[str, Any], dump: DumpNeeds | None, *, mariadb: bool) -> list[str]:
    """The privileges on the database the restore of the backup's ``part`` uses."""
    if part["method"] == "logical":
        return list(LOGICAL)
    assert dump is not None
    extra = [("CREATE VIEW", dump.views), ("TRIGGER", dump.triggers), ("REFERENCES", not mariadb)]
    return [*MYSQLDUMP, *(name for name, used in extra if used)]


def check_grants(
    granted: Granted, privileges: list[str], database: str, account: str, definers: set[str]
) -> tuple[list[str], list[str]]:
    """``(problems, plan lines)``: privileges surely missing refuse the run; those that might be granted
    in a way SHOW GRANTS does not show are a warning in the plan; else the plan says the account may."""
    missing = [(p, p) for p in privileges if not granted.has(p)]  # (what is named, the privilege)
    others = sorted(d for d in definers if d != account)
    if others and not any(p in granted.global_certain or ALL in granted.global_certain for p in SET_USER):
        missing.append((f"SET USER on *.* (views or triggers in the dump name the DEFINER {', '.join(others)})",
                        SET_USER[0]))
    surely = [named for named, privilege in missing if not granted.may_have(privilege)]
    unsure = [named for named, privilege in missing if granted.may_have(privilege)]
    uses = f"the restore uses {', '.join(privileges)} on `{database}`"
    if surely:
        return [
            f"database: the account {account} may not {', '.join(surely)} ({uses}): run the rollback "
            "with --database-url naming an account that may (docs/backup.md, Rolling back)"
        ], []
    if unsure:
        why = "; ".join(granted.unknown) or "grants on single tables, or several database patterns that match"
        return [], [
            f"warning: cannot tell whether the account {account} may {', '.join(unsure)} ({why}); "
            f"{uses}: if it may not, the restore stops there, with Redis already restored"
        ]
    return [], [f"account {account} may {', '.join(privileges)} on `{database}` (what the restore uses)"]


def check_account(cur: Any, backup: Backup, database: str) -> tuple[list[str], list[str]]:
    """Whether the connected account may run the restore of ``backup`` into ``database``: the problems
    that refuse the run, and the plan's lines about it."""
    part = backup.database
    assert part is not None
    try:
        cur.execute("SELECT CURRENT_USER(), VERSION()")
        account, version = cur.fetchone()
        cur.execute("SHOW GRANTS")
        lines = [row[0] for row in cur.fetchall()]
    except pymysql.MySQLError as exc:
        return [], [f"warning: cannot read the account's grants ({exc}): not checked that it may run the restore"]
    dump = scan_dump(backup.path(part["file"])) if part["method"] == "mysqldump" else None
    privileges = needed(part, dump, mariadb="mariadb" in str(version).lower())
    definers = dump.definers if dump is not None else set()
    return check_grants(read_grants(lines, database), privileges, database, str(account), definers)
