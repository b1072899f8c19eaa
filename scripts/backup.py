"""Back up Redis, the SQL database and the .env files before the cut-over (docs/backup.md).

The program is chat.cutover.backup; `chat-api backup` runs the same one. Run from the
repository root with the project installed (`pip install -e .`): python scripts/backup.py --help
"""

import sys

from chat.cutover.backup import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
