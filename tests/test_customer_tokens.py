"""docs/customers.md: its Python and Node.js snippets, taken from the page as they are, mint tokens
the service's verifier accepts as customers (and the Node one needs nothing but node itself)."""

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from chat.auth import AuthError, verify_token

PAGE = Path(__file__).resolve().parent.parent / "docs" / "customers.md"
SECRET = "site-shared-secret-0123456789abcdef01"
CUSTOMER = "shop-客户-42"  # not ASCII: both snippets must sign the UTF-8 of the payload


def _snippet(language: str, first_line: str) -> str:
    """The fenced block of `language` whose first line starts with `first_line`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", PAGE.read_text(encoding="utf-8"), flags=re.M | re.S)
    (found,) = [block for block in blocks if block.startswith(first_line)]
    return found


def _check(token: str, name: str | None) -> None:
    identity = verify_token(SECRET, token)
    assert (identity.user_id, identity.role, identity.name) == (CUSTOMER, "customer", name)
    assert type(identity.exp) is int and 3500 < identity.exp - time.time() <= 3600
    with pytest.raises(AuthError, match="Signature"):
        verify_token("another-secret-0123456789abcdef0123", token)


def test_the_python_snippet_mints_a_customer_token():
    namespace: dict = {}
    exec(compile(_snippet("python", "# customer_token.py"), str(PAGE), "exec"), namespace)  # the page's own code
    _check(namespace["customer_token"](SECRET, CUSTOMER, "Ada"), "Ada")
    _check(namespace["customer_token"](SECRET, CUSTOMER), None)


def test_the_node_snippet_mints_a_customer_token(tmp_path):
    node = shutil.which("node")
    assert node, "node is needed for this test (./dev test installs nodejs)"
    script = tmp_path / "customer-token.js"
    script.write_text(_snippet("js", "// customer-token.js"), encoding="utf-8")
    run = (f"const {{ customerToken }} = require({str(script)!r});"
           "const [secret, sub, name] = process.argv.slice(1);"
           "process.stdout.write(customerToken(secret, sub, name ? { name } : {}));")
    for name in ("Ada Lovelace", None):
        proc = subprocess.run([node, "-e", run, SECRET, CUSTOMER, name or ""], capture_output=True, text=True,
                              timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        _check(proc.stdout, name)
