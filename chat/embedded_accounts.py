"""The embedded mode's first accounts: an admin `admin` and an agent `agent` with random passwords,
so someone trying the service can log in to the console at once.

They are made on the first start and their passwords kept in `$CHAT_DATA_DIR/staff-passwords`
(0600, beside the JWT secret), so every later start prints them again. A password that no longer
verifies (changed with `chat-api users passwd` or over REST), or an account deactivated, is not
printed: the banner says it was changed instead of showing a stale one.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from chat.passwords import hash_password, verify_password
from chat.settings import Settings

FILE_NAME = "staff-passwords"
FIRST_ACCOUNTS = (("admin", "admin"), ("agent", "agent"))  # (user id, role)


@dataclass(frozen=True)
class FirstAccount:
    """One of the first accounts as the banner shows it."""

    user_id: str
    role: str
    password: str | None  # None: changed since the first start (or the account is deactivated)


def _read(path: Path) -> dict[str, str]:
    try:
        value = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):  # none yet, or a torn file: new passwords replace it
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(value, dict) \
        else {}


def _write(path: Path, passwords: dict[str, str]) -> None:
    """A private temporary file (0600 from its first byte) put in place whole."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, orjson.dumps(passwords))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def ensure_first_accounts(settings: Settings) -> list[FirstAccount]:
    """Create the first accounts when they do not exist; what the banner prints for each."""
    from chat.store import DuplicateKey, Store, connect

    path = settings.data_dir / FILE_NAME
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stored = _read(path)
    shown: list[FirstAccount] = []
    db = await connect(settings.database)
    try:
        store = Store(db)
        await store.migrations.upgrade()
        for user_id, role in FIRST_ACCOUNTS:
            credentials = await store.accounts.credentials(user_id)
            if credentials is None:
                new = secrets.token_urlsafe(12)
                try:
                    await store.accounts.create(user_id, role, name=user_id.capitalize(),
                                                password_hash=await hash_password(new))
                except DuplicateKey:  # the id is a customer's: leave it alone
                    continue
                stored[user_id] = new
                _write(path, stored)
                shown.append(FirstAccount(user_id, role, new))
                continue
            kept = stored.get(user_id)
            works = kept is not None and credentials.active and await verify_password(credentials.password_hash, kept)
            shown.append(FirstAccount(user_id, credentials.role, kept if works else None))
    finally:
        await db.close()
    return shown
