"""Convert the old Node.js session records in Redis into the chat-api record (docs/migration.md).

The program is chat.cutover.migrate_redis; `chat-api migrate-redis` runs the same one. Run from the
repository root with the project installed (`pip install -e .`): python scripts/migrate_redis.py --help
"""

import sys

from chat.cutover.migrate_redis import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
