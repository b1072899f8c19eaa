"""Convert the old Node.js session records in Redis into the chat-api live record (PROTOCOL 5).

Each key keeps its remaining TTL; records that cannot be converted go to a JSON-lines report
and make the exit code non-zero. states/legacy.py does the conversion; here are the Redis
side (wire), the passes (migrate, verify) and the command line (cli).
"""

from chat.cutover.migrate_redis.cli import main

__all__ = ["main"]
