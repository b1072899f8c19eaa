"""Restore a backup taken by scripts/backup.py, optionally reverse-migrating sessions (docs/backup.md).

The program is chat.cutover.rollback; `chat-api rollback` runs the same one. Run from the
repository root with the project installed (`pip install -e .`): python scripts/rollback.py --help
"""

import sys

from chat.cutover.rollback import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
