"""Turn the old Node.js .env into the chat-api one (docs/migration.md).

The program is chat.cutover.migrate_config; `chat-api migrate-config` runs the same one. Run from the
repository root with the project installed (`pip install -e .`): python scripts/migrate_config.py --help
"""

import sys

from chat.cutover.migrate_config import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
