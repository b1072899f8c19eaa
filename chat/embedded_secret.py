"""The embedded mode's JWT secret: generated once per install and kept private in the data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from chat.settings_parse import SettingsError


def embedded_secret(data_dir: Path) -> str:
    """A per-install random secret kept in the data directory, so dev tokens survive restarts.

    The directory is made 0700 and the file 0600 from its first byte. An empty or blank file (an
    older version crashing between creating and writing it) is replaced by a new secret: no token
    can have been signed with it. An unreadable one is a SettingsError (one line, exit 2)."""
    path = data_dir / "jwt-secret"
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            secret = path.read_text().strip()
        except FileNotFoundError:
            return _new_secret_file(path, replace=False)
        return secret or _new_secret_file(path, replace=True)
    except OSError as exc:
        raise SettingsError("CHAT_DATA_DIR", f"cannot keep the JWT secret in {path}: {exc.strerror or exc}") from None


def _new_secret_file(path: Path, *, replace: bool) -> str:
    """Write a new secret to a private temporary file (O_CREAT|O_EXCL, 0600), then put it in place
    whole: no reader ever sees the file empty, half-written or readable by others."""
    secret = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError: another process made it meanwhile; theirs wins
    except FileExistsError:
        return path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return secret
