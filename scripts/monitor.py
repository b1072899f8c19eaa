"""Poll the chat-api health endpoint against the cut-over thresholds (docs/migration.md).

The program is chat.cutover.monitor; `chat-api monitor` runs the same one. Run from the
repository root with the project installed (`pip install -e .`): python scripts/monitor.py --help
"""

import sys

from chat.cutover.monitor import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
