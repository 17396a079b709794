"""HTTP Digest authentication (RFC 7616, MD5, qop=auth) for the simulator's snapshot URI, as cameras do it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict

REALM = "varta-onvif-simulator"
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class DigestVerifier:
    """Issues nonces and checks ``Authorization: Digest`` headers."""

    def __init__(self, max_nonces: int = 256) -> None:
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._max = max_nonces

    def challenge(self) -> str:
        """A fresh ``WWW-Authenticate`` value."""
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = None
        while len(self._nonces) > self._max:
            self._nonces.popitem(last=False)
        return f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'

    def verify(self, header: str | None, method: str, username: str, password: str) -> bool:
        """True if *header* proves knowledge of *password* for a nonce we issued."""
        if not header or not header.lower().startswith("digest "):
            return False
        params = {
            m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(header)
        }
        nonce = params.get("nonce", "")
        if nonce not in self._nonces or params.get("username") != username or params.get("realm") != REALM:
            return False
        ha1 = _md5(f"{username}:{REALM}:{password}")
        ha2 = _md5(f"{method}:{params.get('uri', '')}")
        if params.get("qop") == "auth":
            expected = _md5(f"{ha1}:{nonce}:{params.get('nc', '')}:{params.get('cnonce', '')}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        return hmac.compare_digest(expected, params.get("response", ""))
