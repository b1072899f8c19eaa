"""Restore a backup taken by chat.cutover.backup: Redis keys with their TTLs, the SQL tables, the .env files.

The backup is checked first (manifest, every SHA-256, every count): anything off and nothing
is touched. Then the plan is shown and confirmed. With ``--reverse-migrate`` the sessions
created or changed since the backup are not lost: they are turned back into the old Node.js
record (states/legacy.py) so the old services can carry them on.
"""

from chat.cutover.rollback.cli import main

__all__ = ["main"]
