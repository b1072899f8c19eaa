"""`chat-api users add | passwd | deactivate | activate | list`: staff accounts from the command line.

A password is read from a prompt (asked twice) or, with `--password-stdin`, from standard input
(one trailing newline dropped), never from an argument: arguments show in `ps` and shell history.
Each command upgrades the schema first, so `users add` works on a new database before `serve`.
Exit codes: 0 done, 1 the database refused (an unknown or duplicate id, a database error), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from chat.settings import Settings

Command = Callable[[argparse.Namespace, Settings], int]


class UsageError(Exception):
    """Bad input: the message is printed and the exit code is 2."""


class Refused(Exception):
    """The database refused (unknown id, duplicate id): the message is printed and the exit code is 1."""


def read_password(args: argparse.Namespace) -> str:
    """The new password from stdin (`--password-stdin`) or a prompt asked twice; UsageError when unusable."""
    from chat.passwords import password_problem

    if args.password_stdin:
        password = sys.stdin.readline()
        password = password[:-1] if password.endswith("\n") else password
        password = password[:-1] if password.endswith("\r") else password
    else:
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Password (again): ")
        except EOFError:  # no terminal, and nothing on stdin (getpass's fallback)
            raise UsageError("no password given (without a terminal, use --password-stdin)") from None
        if again != password:
            raise UsageError("the two passwords differ")
    problem = password_problem(password)
    if problem:
        raise UsageError(problem)
    return password


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    """The account fields checked by the REST schema (the same rules for the id, role, name, max_chats)."""
    from marshmallow import ValidationError

    from chat.api.users import UserBody

    try:
        data: dict[str, Any] = UserBody().load({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = exc.messages if isinstance(exc.messages, dict) else {"": exc.messages}
        raise UsageError("; ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in problems.items())) from None
    return data


async def _with_store(settings: Settings, work: Callable[[Any], Awaitable[int]], upgrade: bool) -> int:
    from chat.store import Store, connect

    db = await connect(settings.database)
    try:
        store = Store(db)
        if upgrade:
            await store.migrations.upgrade()
        return await work(store)
    finally:
        await db.close()


def run_on_store(settings: Settings, work: Callable[[Any], Awaitable[int]], *, upgrade: bool = True) -> int:
    """Run work(store) on the configured database (its schema upgraded first, unless told not to); the
    database's refusals become one line on stderr and the exit code (2 for another system's tables)."""
    from chat.store import DatabaseError
    from chat.store.migrations import ForeignSchema

    try:
        return asyncio.run(_with_store(settings, work, upgrade))
    except Refused as exc:
        print(f"chat-api: {exc}", file=sys.stderr)
        return 1
    except ForeignSchema as exc:
        print(f"chat-api: {settings.database.describe()}: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(f"chat-api: database error on {settings.database.describe()}: {exc}", file=sys.stderr)
        return 1


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Create an account."""
    from chat.passwords import hash_password
    from chat.store import DuplicateKey

    data = _checked({"id": args.id, "role": args.role, "name": args.name, "max_chats": args.max_chats})
    password = read_password(args)

    async def work(store: Any) -> int:
        try:
            await store.accounts.create(data["id"], data["role"], name=data["name"], max_chats=data["max_chats"],
                                        password_hash=await hash_password(password))
        except DuplicateKey:
            raise Refused(f"the user id {data['id']!r} is already in use") from None
        print(f"added {data['role']} {data['id']}")
        return 0

    return run_on_store(settings, work)


async def _announced(settings: Settings, user_id: str) -> str:
    """Tell the running instances that the account changed (after the commit: SQL is the truth); when
    they act on it, for the line printed."""
    from chat.revocation import announce_changed

    if await announce_changed(settings, user_id):
        return "running instances were told"
    return "running instances see it within ACTIVE_CHECK_S"


def cmd_passwd(args: argparse.Namespace, settings: Settings) -> int:
    """Set a new password; the user's refresh tokens are revoked, its access tokens issued before now refused."""
    from chat.passwords import hash_password

    password = read_password(args)

    async def work(store: Any) -> int:
        user = await store.accounts.update(args.id, {"password_hash": await hash_password(password)})
        if user is None:
            raise Refused(f"no agent or admin {args.id!r}")
        print(f"new password set for {args.id}; its refresh tokens are revoked, its access tokens issued until now "
              f"refused and its sockets with one closed; {await _announced(settings, user['id'])}")
        return 0

    return run_on_store(settings, work)


def _set_active(active: bool) -> Command:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        async def work(store: Any) -> int:
            user = await store.accounts.update(args.id, {"active": active})
            if user is None:
                raise Refused(f"no agent or admin {args.id!r}")
            if active:
                print(f"{args.id} is active")
                return 0
            print(f"{args.id} is deactivated; its refresh tokens are revoked, its tokens refused (those issued until "
                  f"now also once it is active again) and its sockets closed; {await _announced(settings, user['id'])}")
            return 0

        return run_on_store(settings, work)

    command.__doc__ = "Activate an account." if active else "Deactivate an account (its tokens stop working)."
    return command


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Every account, one line each."""

    async def work(store: Any) -> int:
        users = await store.accounts.all()
        rows = [("id", "role", "active", "password", "max_chats", "teams", "name")]
        rows += [(u["id"], u["role"], "yes" if u["active"] else "no", "set" if u["has_password"] else "none",
                  "-" if u["max_chats"] is None else str(u["max_chats"]), ",".join(u["teams"]) or "-",
                  u["name"] or "-") for u in users]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]))
        return 0

    return run_on_store(settings, work)


def add_to(sub: Any, run: Callable[[argparse.Namespace], int]) -> None:
    """Add `users ...` to the chat-api parser; `run(args)` reads the settings and calls `args.users_func`."""
    users = sub.add_parser("users", help="staff accounts: add, passwd, deactivate, activate, list")
    users_sub = users.add_subparsers(dest="users_command", required=True)

    add = users_sub.add_parser("add", help="create an agent or admin account")
    add.add_argument("--id", required=True, help="user id (1-64 characters, no control characters)")
    add.add_argument("--role", required=True, choices=["agent", "admin"])
    add.add_argument("--name", help="display name")
    add.add_argument("--max-chats", type=int, metavar="N", help="the agent's capacity (default AGENT_MAX_CHATS)")
    add.set_defaults(users_func=cmd_add)

    passwd = users_sub.add_parser("passwd", help="set a new password (revokes the user's refresh tokens and "
                                                 "refuses its access tokens issued before)")
    passwd.add_argument("id", help="user id")
    passwd.set_defaults(users_func=cmd_passwd)

    for command in (add, passwd):
        command.add_argument("--password-stdin", action="store_true",
                             help="read the password from standard input instead of a prompt")

    deactivate = users_sub.add_parser("deactivate", help="deactivate (its tokens stop working, its sockets close)")
    deactivate.add_argument("id", help="user id")
    deactivate.set_defaults(users_func=_set_active(False))
    activate = users_sub.add_parser("activate", help="activate again")
    activate.add_argument("id", help="user id")
    activate.set_defaults(users_func=_set_active(True))
    listing = users_sub.add_parser("list", help="list the accounts")
    listing.set_defaults(users_func=cmd_list)
    users.set_defaults(func=run)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Call the chosen `users` command; bad input is one line on stderr and exit 2."""
    func: Command = args.users_func
    try:
        return func(args, settings)
    except UsageError as exc:
        print(f"chat-api: {exc}", file=sys.stderr)
        return 2
