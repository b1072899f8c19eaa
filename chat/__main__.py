"""`python -m chat ...` is the same as `chat-api ...`."""

import sys

from chat.cli import main

sys.exit(main())
