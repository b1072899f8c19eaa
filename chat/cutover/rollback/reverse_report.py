"""What the reverse migration leaves out and deletes in the old services' database, on stdout
(the plan's and the summary's other lines: report.py)."""

from __future__ import annotations

from collections import Counter

from chat.cutover.common import mask_url
from chat.cutover.rollback.forgotten import ERASED, PURGED
from chat.cutover.rollback.redis_apply import RedisDone
from chat.cutover.rollback.redis_plan import CLOSED, RedisPlan
from chat.cutover.rollback.report import REVERSE_LABELS, plan_row

SHOWN_KEYS = 20  # per reason; the count says how many there are
WHY = {
    CLOSED: "closed on chat-api since the backup (the old services have no closed session)",
    ERASED: "customer erased on chat-api since the backup",
    PURGED: "contents purged by retention since the backup",
}


def print_reverse_plan(plan: RedisPlan | None, reverse_url: str | None, *, database_read: bool) -> None:
    """The plan's lines about the old copies deleted and the records not written back (none
    without --reverse-migrate)."""
    if plan is None or reverse_url is None:
        return
    target = mask_url(reverse_url)
    reasons = Counter(why for _, why in plan.end)
    for why in (CLOSED, ERASED, PURGED):
        plan_row(f"delete {why}", reasons[why], f"old session copies in {target}: {WHY[why]}", 4, REVERSE_LABELS)
        shown = [key for key, reason in plan.end if reason == why]
        for key in shown[:SHOWN_KEYS]:
            print(f"      {key.decode('utf-8', 'backslashreplace')}")
        if len(shown) > SHOWN_KEYS:
            print(f"      ... and {len(shown) - SHOWN_KEYS:,} more")
    plan_row("not written back", plan.left_out, "live records that are no live old session: closed (no old copy "
         "to delete), or only rebuilt from SQL on a read (no old original, times not after the backup)", 4,
         REVERSE_LABELS)
    if not database_read:
        print("    warning: the database is not read (--skip-database): conversations erased or purged since "
              "the backup are not found, their old copies are not deleted")


def print_reverse_done(done: RedisDone | None, plan: RedisPlan | None, reverse_url: str | None) -> None:
    """After the Redis part: how many old copies were deleted."""
    if done is not None and plan is not None and reverse_url is not None and plan.end:
        print(f"reverse target {mask_url(reverse_url)}: {done.ended:,} old session cop(ies) deleted "
              f"({len(plan.end):,} planned: closed, erased or purged since the backup)", flush=True)
