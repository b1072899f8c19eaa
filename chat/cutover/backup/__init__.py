"""Back up what the cut-over touches: Redis keys with their TTLs, the SQL database, the .env files.

The backup directory (docs/backup.md) holds ``redis/keys.jsonl`` (a DUMP payload and the
absolute expiry of every key), ``database/`` (a mysqldump file, one JSON-lines file per table,
or an SQLite copy), ``config/`` (the files as they are) and, written last, ``manifest.json``
with the counts and a SHA-256 of every file. The rollback (chat.cutover.rollback) restores it.
"""

from chat.cutover.backup.cli import main

__all__ = ["main"]
