"""The rollback's preflight checks that the database account may run the SQL restore
(chat/cutover/rollback/grants.py): real MariaDB accounts with limited grants, then SHOW GRANTS
lines and mysqldump files on their own.

Before, the account of docs/deploying.md section 1 passed the dry-run, and `--yes` restored Redis,
wrote the saved-rows file and then stopped on `DROP command denied`: Redis at the backup, SQL not.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pymysql
import pytest

from chat.cutover.rollback.grants import MYSQLDUMP, check_grants, needed, read_grants, scan_dump
from chat.settings import parse_database_url
from tests.cutover.backups import (
    LIVE,
    change_sql,
    manifest,
    redis_snapshot,
    run_backup,
    run_rollback,
    seed_redis,
    seed_sql,
    sql_snapshot,
)

DEPLOYING = "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, REFERENCES"  # docs/deploying.md section 1
MAY = "SELECT, INSERT, CREATE, DROP, ALTER, LOCK TABLES"  # what restoring a mysqldump file uses
CANNOT_TELL = "grants on single tables, or several database patterns that match"


class Accounts:
    """Accounts (and roles) with limited grants on the test database, dropped at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.config = parse_database_url(url)
        self.db = self.config.database
        self.exact = self.db.replace("_", "\\_")  # the name in a GRANT without a wildcard (`_` is one)
        self.pattern = self.db[:-3] + "%"  # a wildcard pattern that matches the test database
        self.users: list[str] = []
        self.roles: list[str] = []

    def admin(self, *statements: str) -> None:
        """Run statements as the test server's admin, then FLUSH PRIVILEGES."""
        conn = pymysql.connect(host=self.config.host, port=self.config.port, user=self.config.user,
                               password=self.config.password, autocommit=True)
        try:
            with conn.cursor() as cur:
                for sql in (*statements, "FLUSH PRIVILEGES"):
                    cur.execute(sql)
        finally:
            conn.close()

    def create(self, *grants: str) -> tuple[str, str]:
        """A new account with ``grants`` ({db}, {exact}, {pattern}, {who} filled in): (its name, its URL)."""
        user = f"rbg_{uuid.uuid4().hex[:10]}"
        password = uuid.uuid4().hex
        self.users.append(user)
        self.admin(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'", *self.fill(grants, user))
        url = f"mysql://{user}:{password}@{self.config.host}:{self.config.port}/{self.db}"
        return user, url

    def role(self) -> str:
        name = f"rbg_role_{uuid.uuid4().hex[:10]}"
        self.roles.append(name)
        self.admin(f"CREATE ROLE {name}")
        return name

    def fill(self, statements: tuple[str, ...], user: str) -> list[str]:
        return [s.format(db=self.db, exact=self.exact, pattern=self.pattern, who=f"'{user}'@'%'") for s in statements]

    def drop(self) -> None:
        self.admin(*(f"DROP USER IF EXISTS '{u}'@'%'" for u in self.users),
                   *(f"DROP ROLE IF EXISTS {r}" for r in self.roles))


@pytest.fixture
def accounts(mysql_url):
    made = Accounts(mysql_url)
    yield made
    made.drop()


def backup_then_changes(dbs, mysql_url: str, tmp_path: Path, *args: str) -> tuple[Path, dict, dict]:
    """A backup (mysqldump unless --no-mysqldump is given) of seeded Redis and SQL, then changes to
    both: the backup, the rows as backed up, the rows now."""
    seed_redis(dbs[LIVE])
    seed_sql(mysql_url)
    rows_backed_up = sql_snapshot(mysql_url)
    assert run_backup(tmp_path / "bk", *args, database_url=mysql_url) == 0
    dbs[LIVE].set("session:new", "new")
    change_sql(mysql_url, manifest(tmp_path / "bk")["backup_ms"])
    return tmp_path / "bk", rows_backed_up, sql_snapshot(mysql_url)


def test_the_deploying_account_is_refused_before_anything_changes_until_it_may(
    dbs, mysql_url, tmp_path, capsys, accounts
):
    bk, rows_backed_up, rows_now = backup_then_changes(dbs, mysql_url, tmp_path)
    assert manifest(bk)["database"]["method"] == "mysqldump"
    user, url = accounts.create(f"GRANT {DEPLOYING} ON `{{db}}`.* TO {{who}}")
    keys = redis_snapshot(dbs[LIVE])
    capsys.readouterr()

    runs = []
    for mode in ("--dry-run", "--yes"):
        assert run_rollback(bk, mode, database_url=url) == 1
        runs.append(capsys.readouterr())

    for run in runs:
        assert f"error: database: the account {user}@% may not DROP, LOCK TABLES (the restore uses SELECT, " \
               f"INSERT, CREATE, DROP, ALTER, LOCK TABLES on `{accounts.db}`): run the rollback with " \
               "--database-url naming an account that may" in run.err
        assert "result: REFUSED (nothing was changed)" in run.out
    assert redis_snapshot(dbs[LIVE]) == keys
    assert dbs[LIVE].get("session:new") == b"new"
    assert sql_snapshot(mysql_url) == rows_now
    assert not list(bk.glob("saved-since-backup-*"))

    accounts.admin(*accounts.fill(("GRANT DROP, LOCK TABLES ON `{db}`.* TO {who}",), user))  # as the docs say
    assert run_rollback(bk, "--dry-run", database_url=url) == 0
    assert f"    account {user}@% may {MAY} on `{accounts.db}` (what the restore uses)\n" in capsys.readouterr().out
    assert run_rollback(bk, "--yes", database_url=url) == 0
    assert sql_snapshot(mysql_url) == rows_backed_up
    assert not dbs[LIVE].exists("session:new")


GRANTS = {
    # name: (grants, dry-run exit code, what is said of the account after its name)
    "all on the database": (["GRANT ALL ON `{db}`.* TO {who}"], 0, f"may {MAY} on"),
    "all on a pattern": (["GRANT ALL ON `{pattern}`.* TO {who}"], 0, f"may {MAY} on"),
    # of the patterns that match, the server takes the one without a wildcard: no DROP
    "the database's own grant first": (
        [f"GRANT {DEPLOYING} ON `{{exact}}`.* TO {{who}}", "GRANT ALL ON `{pattern}`.* TO {who}"],
        1, "may not DROP, LOCK TABLES"),
    # `_` is a wildcard too: two patterns, and which one the server takes depends on its version
    "two patterns": (
        [f"GRANT {DEPLOYING} ON `{{db}}`.* TO {{who}}", "GRANT ALL ON `{pattern}`.* TO {who}"],
        0, f"may DROP, LOCK TABLES ({CANNOT_TELL})"),
    "drop on single tables": (
        [f"GRANT {DEPLOYING}, LOCK TABLES ON `{{db}}`.* TO {{who}}", "GRANT DROP ON `{db}`.`users` TO {who}"],
        0, f"may DROP ({CANNOT_TELL})"),
    "read only": (["GRANT SELECT ON `{db}`.* TO {who}"], 1, "may not INSERT, CREATE, DROP, ALTER, LOCK TABLES"),
}


@pytest.mark.parametrize("name", list(GRANTS))
def test_dry_run_reads_the_grants(dbs, tmp_path, capsys, accounts, name):
    grants, code, said = GRANTS[name]
    mysql_url = accounts.url
    bk, _, rows_now = backup_then_changes(dbs, mysql_url, tmp_path)
    user, url = accounts.create(*grants)
    capsys.readouterr()

    assert run_rollback(bk, "--dry-run", database_url=url) == code

    out = capsys.readouterr()
    assert sql_snapshot(mysql_url) == rows_now
    if code:
        assert f"error: database: the account {user}@% {said} " in out.err
        assert "result: REFUSED (nothing was changed)" in out.out
    elif "(" in said:
        assert f"\n    warning: cannot tell whether the account {user}@% {said}; " in out.out
        assert "result: OK (dry run: nothing changed)" in out.out
    else:
        assert f"\n    account {user}@% {said} `{accounts.db}` (what the restore uses)\n" in out.out


def test_a_logical_backup_needs_delete(dbs, mysql_url, tmp_path, capsys, accounts):
    bk, _, rows_now = backup_then_changes(dbs, mysql_url, tmp_path, "--no-mysqldump")
    keys = redis_snapshot(dbs[LIVE])
    user, url = accounts.create("GRANT SELECT, INSERT, UPDATE, CREATE, ALTER ON `{db}`.* TO {who}")
    capsys.readouterr()

    assert run_rollback(bk, "--yes", database_url=url) == 1

    assert f"the account {user}@% may not DELETE (the restore uses SELECT, INSERT, DELETE on" in capsys.readouterr().err
    assert redis_snapshot(dbs[LIVE]) == keys
    assert sql_snapshot(mysql_url) == rows_now


def test_privileges_of_a_role(dbs, mysql_url, tmp_path, capsys, accounts):
    bk, rows_backed_up, _ = backup_then_changes(dbs, mysql_url, tmp_path)
    role = accounts.role()
    user, url = accounts.create(f"GRANT {DEPLOYING} ON `{{db}}`.* TO {{who}}",
                                f"GRANT DROP, LOCK TABLES ON `{{db}}`.* TO {role}", f"GRANT {role} TO {{who}}")
    capsys.readouterr()

    # Granted but not enabled at login: SHOW GRANTS does not show what it gives, so no refusal, a warning.
    assert run_rollback(bk, "--dry-run", database_url=url) == 0
    assert (f"    warning: cannot tell whether the account {user}@% may DROP, LOCK TABLES "
            f"(role {role}, whose grants are not shown)") in capsys.readouterr().out

    accounts.admin(*accounts.fill((f"SET DEFAULT ROLE {role} FOR {{who}}",), user))
    assert run_rollback(bk, "--dry-run", database_url=url) == 0
    assert f"    account {user}@% may {MAY} on" in capsys.readouterr().out
    assert run_rollback(bk, "--yes", database_url=url) == 0
    assert sql_snapshot(mysql_url) == rows_backed_up


# --------------------------------------------------------------------------- SHOW GRANTS on its own


def verdict(lines: list[str], privileges=MYSQLDUMP, definers=frozenset()) -> tuple[list[str], str]:
    """(problems, the plan's line: "may" or "cannot tell") for account u@% on database chat_api."""
    problems, plan = check_grants(read_grants(lines, "chat_api"), list(privileges), "chat_api", "u@%", set(definers))
    return problems, "" if problems else ("may" if plan[0].startswith("account u@% may") else plan[0])


def test_global_grants_and_escaped_patterns():
    assert verdict(["GRANT ALL PRIVILEGES ON *.* TO `u`@`%` WITH GRANT OPTION"]) == ([], "may")
    assert verdict([f"GRANT {MAY} ON *.* TO 'u'@'%'"]) == ([], "may")  # MySQL 5.7 quotes
    assert verdict([r"GRANT ALL ON `chat\_api`.* TO `u`@`%`"]) == ([], "may")
    problems, _ = verdict([r"GRANT ALL ON `chat\_ap`.* TO `u`@`%`", "GRANT ALL ON `chatXapi`.* TO `u`@`%`"])
    assert "may not SELECT, INSERT, CREATE, DROP, ALTER, LOCK TABLES" in problems[0]
    problems, plan = verdict(["GRANT SELECT (id), INSERT ON `chat_api`.`users` TO `u`@`%`"], privileges=["SELECT"])
    assert problems == [] and "cannot tell" in plan  # a column's or a table's grant: not refused


def test_mysql_roles_and_partial_revokes_are_doubts_not_refusals():
    # MySQL 8: a role's privileges are not listed without USING
    problems, plan = verdict(["GRANT USAGE ON *.* TO `u`@`%`", "GRANT `admin`@`%` TO `u`@`%`"])
    assert problems == [] and "role admin@%, whose grants are not shown" in plan
    problems, plan = verdict(["GRANT ALL PRIVILEGES ON *.* TO `u`@`%`", "REVOKE DROP ON `chat_api`.* FROM `u`@`%`"])
    assert problems == [] and "may DROP (a partial revoke of DROP)" in plan


def test_views_triggers_and_definers_of_a_dump(tmp_path):
    dump = tmp_path / "mysqldump.sql"
    dump.write_bytes(
        b"DROP TABLE IF EXISTS `p`;\nCREATE TABLE `p` (\n  `id` int(11) NOT NULL\n);\n"
        b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER t BEFORE INSERT ON p "
        b"FOR EACH ROW SET NEW.id = NEW.id \n*/;;\n"
        b"/*!50001 DROP VIEW IF EXISTS `v`*/;\n/*!50001 CREATE ALGORITHM=UNDEFINED */\n"
        b"/*!50013 DEFINER=`u`@`%` SQL SECURITY DEFINER */\n/*!50001 VIEW `v` AS select 1 AS `id` */;\n"
    )
    needs = scan_dump(dump)
    assert (needs.views, needs.triggers, needs.definers) == (True, True, {"root@localhost", "u@%"})
    privileges = needed({"method": "mysqldump"}, needs, mariadb=False)
    assert privileges == [*MYSQLDUMP, "CREATE VIEW", "TRIGGER", "REFERENCES"]  # REFERENCES: MySQL's foreign keys
    problems, _ = verdict([f"GRANT {', '.join(privileges)} ON `chat_api`.* TO `u`@`%`"], privileges, needs.definers)
    assert "may not SET USER on *.* (views or triggers in the dump name the DEFINER root@localhost)" in problems[0]
    assert verdict(["GRANT ALL ON *.* TO `u`@`%`"], privileges, needs.definers) == ([], "may")
