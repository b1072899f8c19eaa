"""The web routes (chat/web/routes.py): the widget bundle, the pages with their CSP, shared assets;
no directory listing, no way out of the package's folders, validators and cache headers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from chat.web import routes
from chat.web.routes import PAGE_CSP, SHARED, _inside


@pytest.fixture
async def client(aiohttp_client):
    app = web.Application()
    routes.register(app)
    return await aiohttp_client(app)


async def test_the_widget_is_one_classic_script(client) -> None:
    response = await client.get("/widget.js")
    body = await response.text()
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=" in response.headers["Cache-Control"]
    assert body.startswith("/* chat-api widget") and "attachShadow" in body
    assert "\nimport " not in body and "\nexport " not in body  # module syntax would not run in a classic script

    again = await client.get("/widget.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304
    assert await again.read() == b""


async def test_the_demo_page_has_a_csp_without_inline_script(client) -> None:
    response = await client.get("/demo/")
    body = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert csp == PAGE_CSP
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert '<script src="/widget.js" async></script>' in body
    assert "data-token" not in body.split("<body>")[1]  # the demo uses an anonymous visitor token
    assert "<script>" not in body and not re.search(r"\son\w+\s*=", body)  # nothing inline for the CSP to block


async def test_folders_redirect_to_their_slash(client) -> None:
    for folder in ("/demo", "/console"):
        response = await client.get(folder, allow_redirects=False)
        assert response.status == 301
        assert response.headers["Location"] == folder + "/"


async def test_shared_assets_are_served_with_their_type(client) -> None:
    response = await client.get("/web/client.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "export class ChatClient" in await response.text()
    css = await client.get("/demo/demo.css")
    assert css.status == 200 and css.content_type == "text/css"


@pytest.mark.parametrize("path", [
    "/web/", "/web/.", "/web/..", "/web/%2e%2e/routes.py", "/web/..%2froutes.py", "/web/%2e%2e%2f%2e%2e%2fapp.py",
    "/web/%2e%2e/%2e%2e/settings.py", "/web/..%5croutes.py", "/web//etc/passwd", "/web/%2fetc%2fpasswd",
    "/console/%2e%2e/routes.py", "/demo/%2e%2e/web/routes.py", "/web/__init__.py", "/web/.hidden",
    "/demo/%2e%2e/demo/index.html", "/web/no-such-file.js", "/widget.js/x",
])
async def test_nothing_outside_the_folders_nor_a_listing(client, path: str) -> None:
    response = await client.get(URL(path, encoded=True), allow_redirects=False)
    assert response.status == 404, path
    assert "ChatClient" not in await response.text()


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.js").write_text("secret")
    (root / "inside.js").write_text("ok")
    (root / "link.js").symlink_to(tmp_path / "secret.js")
    assert _inside(root, "inside.js") == root / "inside.js"
    with pytest.raises(web.HTTPNotFound):
        _inside(root, "link.js")
    with pytest.raises(web.HTTPNotFound):
        _inside(root, "../secret.js")


def test_the_package_data_ships_the_web_files() -> None:
    """pyproject's package-data globs cover every file under chat/web/ (so `pip install` serves them)."""
    import tomllib

    patterns = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["chat.web"]
    web_root = SHARED.parent
    files = {p for p in web_root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    shipped = {p for pattern in patterns for p in web_root.glob(pattern)}
    assert files
    assert sorted(str(p.relative_to(web_root)) for p in files - shipped) == []
