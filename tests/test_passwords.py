"""Passwords (chat/passwords.py): argon2id, verified off the loop, a dummy hash when there is none."""

from __future__ import annotations

import threading

import pytest

from chat import passwords
from chat.passwords import hash_password, needs_rehash, password_problem, verify_password


async def test_hash_and_verify():
    hashed = await hash_password("s3cret pässword")
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed
    assert await verify_password(hashed, "s3cret pässword") is True
    assert await verify_password(hashed, "s3cret password") is False
    assert await verify_password("not-a-hash", "x") is False  # a foreign value in the column is no crash
    assert needs_rehash(hashed) is False and needs_rehash("not-a-hash") is False
    assert await hash_password("same") != await hash_password("same")  # salted


async def test_no_hash_costs_a_verification_of_the_dummy(monkeypatch):
    """No user (or no password): a real argon2 verification runs all the same, off the event loop."""
    calls: list[tuple[str, str]] = []
    real = passwords._hasher

    class Spy:
        hash = staticmethod(real.hash)

        @staticmethod
        def verify(password_hash: str, password: str) -> bool:
            calls.append((password_hash, threading.current_thread().name))
            return real.verify(password_hash, password)

    monkeypatch.setattr(passwords, "_hasher", Spy())
    assert await verify_password(None, "anything") is False
    hashed = await hash_password("anything")
    assert await verify_password(hashed, "wrong") is False
    assert len(calls) == 2
    assert calls[0][0].startswith("$argon2id$") and calls[0][0] != hashed  # the dummy
    assert all(name.startswith("argon2") for _, name in calls)  # the pool, not the loop's thread


@pytest.mark.parametrize(("password", "ok"), [("", False), ("x", True), ("x" * 1024, True), ("x" * 1025, False),
                                              ("x" * 10_000, False), ("密码", True)])
def test_password_length(password, ok):
    assert (password_problem(password) is None) is ok
