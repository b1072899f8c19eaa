"""`chat-api export --since --until --out FILE`: the bulk NDJSON export of GET
/api/v1/export/conversations written to a file, with progress on stderr."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from marshmallow import ValidationError

if TYPE_CHECKING:
    from chat.settings import Settings

PROGRESS_EVERY_S = 2.0


def add_to(sub: Any) -> None:
    """Add the `export` command to chat-api's subcommands."""
    export = sub.add_parser("export", help="write the conversations created in a window as NDJSON "
                                           "(the same lines as GET /api/v1/export/conversations)")
    export.add_argument("--since", help="created at or after (ISO 8601; no offset means UTC); default: the first")
    export.add_argument("--until", help="created before (ISO 8601); default: now")
    export.add_argument("--out", required=True, help="the file to write (written beside as FILE.partial, renamed "
                                                     "when complete); - for stdout")
    export.set_defaults(func=cmd_export)


def _window(args: argparse.Namespace) -> dict[str, Any]:
    """The window as the REST endpoint reads it (the same checks and messages)."""
    from chat.api.export import ExportQuery

    given = {name: getattr(args, name) for name in ("since", "until") if getattr(args, name) is not None}
    window: dict[str, Any] = ExportQuery().load(given)
    return window


async def _export(settings: Settings, window: dict[str, Any], out: BinaryIO) -> int:
    from chat.export import NdjsonExport
    from chat.store import Store, connect
    from states.clock import now_ms

    db = await connect(settings.database)
    try:
        export = NdjsonExport(Store(db), since_ms=window.get("since"), until_ms=window.get("until", now_ms()))
        last = time.monotonic()
        async for chunk in export.chunks():
            out.write(chunk)
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                print(f"  {export.conversations} conversations...", file=sys.stderr, flush=True)
        return export.conversations
    finally:
        await db.close()


def cmd_export(args: argparse.Namespace) -> int:
    """Write the export; exit 1 (and no FILE) when it fails, 2 on a bad window or configuration."""
    from chat.cli import _settings
    from chat.store import DatabaseError

    try:
        window = _window(args)
    except ValidationError as exc:
        print(f"chat-api export: {exc.messages}", file=sys.stderr)
        return 2
    settings = _settings(args)  # a configuration error ends here (exit 2), before any file is made
    started = time.monotonic()
    if args.out == "-":
        target, partial = None, None
        out = sys.stdout.buffer
    else:
        target = Path(args.out)
        partial = target.with_name(target.name + ".partial")
        try:
            out = partial.open("wb")
        except OSError as exc:  # no such directory, no permission
            print(f"chat-api export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    try:
        count = asyncio.run(_export(settings, window, out))
        out.flush()
    except (DatabaseError, OSError) as exc:
        print(f"chat-api export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if partial is not None:
            out.close()
            partial.unlink(missing_ok=True)
        return 1
    if partial is not None and target is not None:
        os.fsync(out.fileno())
        out.close()
        partial.replace(target)
    where = "stdout" if target is None else str(target)
    print(f"exported {count} conversations to {where} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0
