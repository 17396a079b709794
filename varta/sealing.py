"""Secrets for one node only: NaCl sealed boxes to the node's X25519 key.

Every edge node keeps a private X25519 key (``box.key`` in its data directory, mode 0600) and announces the public
half in its birth message (``Birth.box_public_key``). Central seals camera credentials to that public key; only the
node can open them. Central never stores or returns the plaintext, the node stores it only on its own disk.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import orjson
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError


class SealingError(ValueError):
    """A key or sealed text that cannot be used (wrong key, corrupt, not base64, bad content)."""


class Credentials(BaseModel):
    """A camera's user name and password (the password never appears in logs or reprs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(max_length=128)
    password: SecretStr = Field(max_length=256)


def public_key_text(key: PrivateKey | PublicKey) -> str:
    """The public key as standard base64 (44 characters), as the birth message carries it."""
    public = key.public_key if isinstance(key, PrivateKey) else key
    return base64.b64encode(bytes(public)).decode()


def load_public_key(text: str) -> PublicKey:
    """Parse a base64 X25519 public key."""
    raw = _unb64(text)
    if len(raw) != 32:
        raise SealingError(f"an X25519 public key has 32 bytes, got {len(raw)}")
    return PublicKey(raw)


def load_box_key(path: Path) -> PrivateKey:
    """The node's private key from *path* (base64 of 32 bytes)."""
    raw = _unb64(path.read_text(encoding="ascii"))
    if len(raw) != 32:
        raise SealingError(f"{path}: an X25519 private key has 32 bytes, got {len(raw)}")
    return PrivateKey(raw)


def load_or_create_box_key(path: Path) -> PrivateKey:
    """The node's private key from *path*, created (mode 0600) on first use."""
    if path.exists():
        return load_box_key(path)
    key = PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(bytes(key)).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return key


def seal_credentials(public_key: str | PublicKey, credentials: Credentials) -> str:
    """Seal *credentials* to a node's public key; returns base64 text for ``sealed_credentials``."""
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    plain = orjson.dumps({"username": credentials.username, "password": credentials.password.get_secret_value()})
    return base64.b64encode(SealedBox(key).encrypt(plain)).decode()


def open_credentials(private_key: PrivateKey, sealed: str) -> Credentials:
    """Open credentials sealed to this node; :class:`SealingError` if they were not, or are damaged."""
    try:
        plain = SealedBox(private_key).decrypt(_unb64(sealed))
    except CryptoError:
        raise SealingError("cannot open the sealed credentials (sealed to another key, or damaged)") from None
    try:
        return Credentials.model_validate_json(plain)
    except ValidationError:
        raise SealingError("the sealed credentials are not a {username, password} object") from None


def _unb64(text: str) -> bytes:
    text = text.strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SealingError("not base64") from None
