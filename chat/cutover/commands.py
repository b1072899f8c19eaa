"""The cut-over programs as `chat-api` subcommands: the same main(argv) as scripts/X.py.

`chat-api migrate-redis --source ... --target ...` runs chat.cutover.migrate_redis.main with
the arguments after the subcommand's name, so options, output and exit codes are the script's.
A program's modules are imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Protocol


class Program(Protocol):
    """What each cut-over program module offers."""

    def __call__(self, argv: list[str] | None = None, *, prog: str = ...) -> int: ...


# subcommand -> (module with main(argv, prog=...), one line of help)
PROGRAMS = {
    "migrate-redis": ("chat.cutover.migrate_redis", "convert the old Node.js session records in Redis"),
    "migrate-config": ("chat.cutover.migrate_config", "turn the old .env into the chat-api one"),
    "backup": ("chat.cutover.backup", "back up Redis keys, the SQL database and .env files"),
    "rollback": ("chat.cutover.rollback", "restore a backup, optionally reverse-migrating new sessions"),
    "monitor": ("chat.cutover.monitor", "poll /health against the cut-over thresholds"),
}


def add_to(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """List the programs in `chat-api --help` (their own --help has the options)."""
    for name, (_module, text) in PROGRAMS.items():
        sub = subparsers.add_parser(name, help=f"{text} (see chat-api {name} --help)", add_help=False)
        sub.add_argument("args", nargs=argparse.REMAINDER)


def run(argv: list[str]) -> int | None:
    """Run the program ``argv[0]`` names with the rest of ``argv``; None when it names none.

    chat-api's own ``--env-file PATH`` before the name goes to the program (backup and rollback read
    their URLs from it), so ``chat-api --env-file .env rollback ...`` reads what serve would."""
    env_file: list[str] = []
    if len(argv) > 2 and argv[0] == "--env-file":
        env_file, argv = argv[:2], argv[2:]
    elif argv and argv[0].startswith("--env-file="):
        env_file, argv = ["--env-file", argv[0].partition("=")[2]], argv[1:]
    if not argv or argv[0] not in PROGRAMS:
        return None
    module = importlib.import_module(PROGRAMS[argv[0]][0])
    main: Program = module.main
    return main([*argv[1:], *env_file], prog=f"chat-api {argv[0]}")
