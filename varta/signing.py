"""Ed25519 keys and command signatures (central signs, edge verifies).

Keys are stored as base64 text files (private keys created with mode 0600). A command's signature covers
:func:`varta.contract.signing_bytes`, i.e. every field but ``sig`` — so the target node, the request id and the
deadline cannot be altered without breaking it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from varta.contract import Command, signing_bytes


class KeyFileError(ValueError):
    """A key file or key text that cannot be used."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"not base64: {exc}") from None


def generate_signing_key() -> SigningKey:
    """A fresh random Ed25519 signing key."""
    return SigningKey.generate()


def key_id(verify_key: VerifyKey) -> str:
    """Short stable fingerprint of a public key (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(bytes(verify_key)).hexdigest()[:16]


def public_key_text(verify_key: VerifyKey) -> str:
    """The public key as base64url text, as edge configs carry it."""
    return _b64(bytes(verify_key))


def load_verify_key(text: str) -> VerifyKey:
    """Parse a base64url public key."""
    raw = _unb64(text)
    if len(raw) != 32:
        raise KeyFileError(f"an Ed25519 public key has 32 bytes, got {len(raw)}")
    return VerifyKey(raw)


def save_signing_key(key: SigningKey, path: Path) -> None:
    """Write *key* to *path* (mode 0600), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(_b64(bytes(key)) + "\n")


def load_signing_key(path: Path) -> SigningKey:
    """Read a signing key written by :func:`save_signing_key`."""
    try:
        raw = _unb64(path.read_text())
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) != 32:
        raise KeyFileError(f"{path}: an Ed25519 seed has 32 bytes, got {len(raw)}")
    return SigningKey(raw)


def load_or_create_signing_key(path: Path) -> SigningKey:
    """Load the key at *path*, generating and saving a new one if the file does not exist."""
    if path.exists():
        return load_signing_key(path)
    key = generate_signing_key()
    save_signing_key(key, path)
    return key


def sign_command(command: Command, key: SigningKey) -> Command:
    """Return *command* with ``key_id`` set and signed by *key*."""
    unsigned = command.model_copy(update={"key_id": key_id(key.verify_key), "sig": None})
    signature = key.sign(signing_bytes(unsigned)).signature
    return unsigned.model_copy(update={"sig": _b64(signature)})


def verify_command(command: Command, keys: list[VerifyKey]) -> bool:
    """True when *command* carries a valid signature by one of *keys* (several allow key rotation)."""
    if not command.sig:
        return False
    try:
        signature = _unb64(command.sig)
    except KeyFileError:
        return False
    if len(signature) != 64:
        return False
    message = signing_bytes(command)
    for key in keys:
        if command.key_id and command.key_id != key_id(key):
            continue
        try:
            key.verify(message, signature)
        except BadSignatureError:
            continue
        return True
    return False
