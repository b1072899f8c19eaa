"""Passwords: argon2id through argon2-cffi, hashed and verified off the event loop.

A hash costs tens of milliseconds and 64 MiB (argon2-cffi's RFC 9106 low-memory profile), so it
runs on a small thread pool of its own: the event loop keeps serving, and a flood of logins waits
for a thread instead of taking memory without bound. A login for a user that does not exist, or
has no password, verifies against a dummy hash, so it costs what a wrong password costs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_CHARS = 1
MAX_PASSWORD_CHARS = 1024  # a 10,000-character "password" is refused before it costs a hash

_hasher = PasswordHasher()  # argon2id
_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="argon2")


def password_problem(password: str) -> str | None:
    """Why `password` cannot be one (its length), or None."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        return f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
    return None


async def _run(func: functools.partial[str] | functools.partial[bool]) -> object:
    return await asyncio.get_running_loop().run_in_executor(_pool, func)


async def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of a password."""
    return str(await _run(functools.partial(_hasher.hash, password)))


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):  # a mismatch, or a hash that is not argon2's
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Does `password` match? With no hash (no such user, no password) a dummy is verified: False, at the same cost."""
    return bool(await _run(functools.partial(_verify, password_hash, password)))


def needs_rehash(password_hash: str) -> bool:
    """Was the hash made with other parameters than today's (rehash it after a successful login)?"""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False
