"""Password policy and argon2id hashing, run in a worker thread (argon2 is deliberately slow)."""

from __future__ import annotations

import asyncio
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 256

_hasher = PasswordHasher()


class PasswordPolicyError(ValueError):
    """A password the policy refuses; the message says why in plain words, ``code`` for translations."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def validate_password(password: str, *, username: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` unless *password* is acceptable."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError("password_too_short", f"the password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError("password_too_long", f"the password must be at most {MAX_LENGTH} characters long")
    if not password.strip():
        raise PasswordPolicyError("password_blank", "the password must not be only spaces")
    if username is not None and password.strip().casefold() == username.casefold():
        raise PasswordPolicyError("password_is_username", "the password must not be the username")


async def hash_password(password: str) -> str:
    """An argon2id hash of *password* (PHC string)."""
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    """True when *password* matches *password_hash*."""
    return await asyncio.to_thread(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


async def burn_verify_time(password: str) -> None:
    """Spend as long as a real verification, so unknown usernames cannot be told apart by timing."""
    dummy = await asyncio.to_thread(_dummy_hash)
    await verify_password(dummy, password)
