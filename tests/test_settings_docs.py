"""The README's settings table and docs/settings.md are generated from the settings table."""

from pathlib import Path

import pytest

from chat.settings import settings_table
from chat.settings_docs import END, PAGE, README, START, main, readme_table, settings_page, stale_files, write

ROOT = Path(__file__).resolve().parent.parent


def test_readme_and_docs_agree_with_the_table():
    assert stale_files(ROOT) == [], "run: python -m chat.settings_docs --write"


def test_every_variable_is_documented_with_its_default():
    table, page = readme_table(), settings_page()
    for row in settings_table():
        assert f"| `{row.spec.env}` |" in table and f"| `{row.spec.env}` | `{row.attribute}` |" in page
    assert "| `PORT` | listen port (`serve --port` overrides it) | `8000` |" in table
    assert "| `WS_MAX_FRAME_BYTES` | `ws_max_frame_bytes` | largest frame | `65536` | integer ≥ 1024 |" in page


@pytest.fixture
def checkout(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / README).write_text(f"# x\n\nbefore\n{START}\n| old |\n{END}\nafter\n", encoding="utf-8")
    return tmp_path


def test_write_replaces_only_the_region_and_check_then_passes(checkout, capsys):
    assert stale_files(checkout) == [README, PAGE]
    assert main(["--root", str(checkout), "--check"]) == 1
    assert "README.md is stale" in capsys.readouterr().err
    write(checkout)
    text = (checkout / README).read_text(encoding="utf-8")
    assert text == f"# x\n\nbefore\n{START}\n{readme_table()}\n{END}\nafter\n"
    assert (checkout / PAGE).read_text(encoding="utf-8") == settings_page()
    assert main(["--root", str(checkout), "--check"]) == 0


def test_a_readme_without_markers_is_an_error(checkout):
    (checkout / README).write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="settings:start"):
        stale_files(checkout)


def test_without_options_it_prints_the_readme_table(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == readme_table() + "\n"
