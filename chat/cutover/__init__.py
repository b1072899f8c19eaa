"""The cut-over programs: Redis migration, config migration, backup, rollback, health monitor.

Each program is a module (or a package) with ``main(argv) -> exit code``; ``scripts/X.py`` and
``chat-api X`` both call it (docs/migration.md, docs/backup.md). No I/O at import.
"""
