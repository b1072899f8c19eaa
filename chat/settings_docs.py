"""The settings tables of README.md and docs/settings.md, generated from the table in chat.settings.

`python -m chat.settings_docs` prints the README's table; `--write` rewrites the README's
region (between the marker comments) and docs/settings.md; `--check` exits 1 when either is
stale. tests/test_settings.py holds the files to the table the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from chat.settings import settings_table
from chat.settings_parse import Group, Row

README = Path("README.md")
PAGE = Path("docs/settings.md")
START = "<!-- settings:start -->"
END = "<!-- settings:end -->"
GENERATED = "<!-- generated from chat/settings.py by `python -m chat.settings_docs --write`: do not edit -->"

PAGE_INTRO = f"""# Settings

{GENERATED}

Every setting is an environment variable, read and checked once when a command starts
(`Settings.from_env` in `chat/settings.py`, where each one is declared once). A bad value makes
the command print `chat-api: configuration error: <VARIABLE>: <problem>` and exit 2. An unset,
empty or blank value means the default, except for `HANDOFF_PHRASES`, where an empty value
means no phrases.

**Embedded mode** applies when neither `DATABASE_URL` nor `REDIS_URL` is set: SQLite under
`CHAT_DATA_DIR`, the in-process Redis and a generated secret, and `serve` prints development
tokens. With `DATABASE_URL` but no `REDIS_URL`, Redis is still the in-process one (a single
instance) and `JWT_SECRET_KEY` is required.
"""


def _shown(row: Row) -> str:
    """The default as the docs show it."""
    if row.spec.shown_default is not None:
        return row.spec.shown_default
    value = row.default
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    if value in ("", None):
        return "unset"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _by_group(rows: list[Row]) -> list[Row]:
    order = list(Group)
    return sorted(rows, key=lambda row: order.index(row.spec.group))


def readme_table() -> str:
    """The README's table: variable, meaning, default; details in docs/settings.md."""
    lines = [
        "| variable | meaning | default |",
        "|---|---|---|",
        *(
            f"| `{row.spec.env}` | {_cell(row.spec.doc)} | {_cell(_shown(row))} |"
            for row in _by_group(settings_table())
        ),
        "",
        "Their checks, groups and `Settings` attributes: [docs/settings.md](docs/settings.md).",
    ]
    return "\n".join(lines)


def settings_page() -> str:
    """docs/settings.md: the rules above, then one table per group."""
    parts = [PAGE_INTRO]
    rows = settings_table()
    for group in Group:
        parts.append(f"\n## {group.value}\n\n| variable | `Settings` attribute | meaning | default | check |\n")
        parts.append("|---|---|---|---|---|\n")
        for row in rows:
            if row.spec.group is group:
                cells = (f"`{row.spec.env}`", f"`{row.attribute}`", row.spec.doc, _shown(row), row.spec.check)
                parts.append("| " + " | ".join(_cell(cell) for cell in cells) + " |\n")
    return "".join(parts)


def with_readme_table(readme: str) -> str:
    """The README's text with the region between the markers replaced by the generated table."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md needs the markers {START} and {END}")
    return f"{head}{START}\n{readme_table()}\n{END}{tail}"


def stale_files(root: Path) -> list[Path]:
    """The generated files under `root` that disagree with the settings table."""
    stale = []
    readme = (root / README).read_text(encoding="utf-8")
    if with_readme_table(readme) != readme:
        stale.append(README)
    page = root / PAGE
    if not page.exists() or page.read_text(encoding="utf-8") != settings_page():
        stale.append(PAGE)
    return stale


def write(root: Path) -> None:
    """Rewrite the README's region and docs/settings.md from the table."""
    readme = root / README
    readme.write_text(with_readme_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (root / PAGE).write_text(settings_page(), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the README table, or --write / --check the generated files."""
    parser = argparse.ArgumentParser(prog="python -m chat.settings_docs", description="The docs' settings tables.")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: here)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite README.md's region and docs/settings.md")
    action.add_argument("--check", action="store_true", help="exit 1 when either file is stale")
    args = parser.parse_args(argv)
    if args.write:
        write(args.root)
    elif args.check:
        stale = stale_files(args.root)
        for path in stale:
            print(f"{path} is stale: run python -m chat.settings_docs --write", file=sys.stderr)
        return 1 if stale else 0
    else:
        print(readme_table())
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
