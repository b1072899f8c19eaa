"""The widget's serve-time bundle (chat/web/bundle.py): ES modules in one classic script, each in its
own scope, imports as the exporting module's names; module syntax outside the convention refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.web.bundle import BundleError, bundle


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_modules_become_scopes_in_dependency_order(tmp_path: Path) -> None:
    write(tmp_path, "lib/a.js",
          'const secret = 1;\nexport function twice(x) { return 2 * x; }\nexport const ONE = 1;\n')
    write(tmp_path, "b.js", 'import { twice } from "./lib/a.js";\nexport class B { run() { return twice(2); } }\n')
    write(tmp_path, "main.js", 'import { B } from "./b.js";\nimport { ONE, twice } from "./lib/a.js";\n'
                               "const secret = new B().run() + ONE + twice(1);\n")

    script = bundle(tmp_path / "main.js")

    assert script.index("/* a.js */") < script.index("/* b.js */") < script.index("/* main.js */")
    assert script.count("/* a.js */") == 1  # imported twice, included once
    assert "return { twice, ONE };" in script
    assert "const { twice } = __m_a;" in script and "const { ONE, twice } = __m_a;" in script
    assert "\nexport " not in script and "\nimport " not in script
    assert script.count("const secret") == 2  # each module's private names stay in its own scope


@pytest.mark.parametrize("source", [
    "export default function () {}\n",
    "const x = 1;\nexport { x };\n",
    'import * as a from "./a.js";\n',
])
def test_syntax_outside_the_convention_is_refused(tmp_path: Path, source: str) -> None:
    write(tmp_path, "a.js", "export const a = 1;\n")
    write(tmp_path, "main.js", source)
    with pytest.raises(BundleError, match="main.js"):
        bundle(tmp_path / "main.js")


def test_an_import_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.js", 'import { b } from "./b.js";\nexport const a = 1;\n')
    write(tmp_path, "b.js", 'import { a } from "./a.js";\nexport const b = 2;\n')
    with pytest.raises(BundleError, match="cycle"):
        bundle(tmp_path / "a.js")
