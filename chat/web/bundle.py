"""The widget as one classic script, made at serve time from the ES modules it imports.

A site embeds `/widget.js` with a plain `<script>` tag (an async classic script, so it runs on any
page and `document.currentScript` names its tag), while the console imports the same modules as ES
modules. The modules follow one convention that makes this a few lines instead of a bundler: imports
are named, `import { a, b } from "./x.js";` at the start of a line, and exports are `export function`,
`export class`, `export const` or `export let` declarations. Each module becomes a function scope
returning its exports, so module-private names never collide.
"""

from __future__ import annotations

import re
from pathlib import Path

IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";?\s*$', re.MULTILINE)
EXPORT = re.compile(r"^export\s+(?:async\s+)?(function\*?|class|const|let)\s+([A-Za-z_$][\w$]*)", re.MULTILINE)
STRAY_MODULE_SYNTAX = re.compile(r"^\s*(import\s|export\s)", re.MULTILINE)


class BundleError(ValueError):
    """A module outside the convention the bundler understands."""


def _module_var(path: Path) -> str:
    return "__m_" + re.sub(r"\W", "_", path.stem)


def bundle(entry: Path) -> str:
    """The entry module and everything it imports (depth first, each once) as one classic script."""
    order: list[Path] = []
    _visit(entry.resolve(), order, set())
    parts = ["/* chat-api widget: bundled from ES modules by chat/web/bundle.py */", "(function () {", '"use strict";']
    parts += [_wrap(path) for path in order]
    parts.append("})();\n")
    return "\n".join(parts)


def _visit(path: Path, order: list[Path], visiting: set[Path]) -> None:
    if path in order:
        return
    if path in visiting:
        raise BundleError(f"{path.name}: import cycle")
    visiting.add(path)
    for _, target in IMPORT.findall(path.read_text(encoding="utf-8")):
        _visit((path.parent / target).resolve(), order, visiting)
    order.append(path)


def _wrap(path: Path) -> str:
    source = path.read_text(encoding="utf-8")

    def imported(match: re.Match[str]) -> str:
        names = ", ".join(name.strip() for name in match.group(1).split(",") if name.strip())
        return f"const {{ {names} }} = {_module_var((path.parent / match.group(2)).resolve())};"

    body = IMPORT.sub(imported, source)
    exported = [name for _, name in EXPORT.findall(body)]
    body = EXPORT.sub(lambda m: m.group(0).removeprefix("export").lstrip(), body)
    stray = STRAY_MODULE_SYNTAX.search(body)
    if stray:  # `import * as`, `export default`, `export { x }`: outside the convention
        line = body[: stray.start()].count("\n") + 1
        raise BundleError(f"{path.name}:{line}: module syntax the bundler does not understand")
    return (f"const {_module_var(path)} = (function () {{ /* {path.name} */\n{body}\n"
            f"return {{ {', '.join(exported)} }};\n}})();")
