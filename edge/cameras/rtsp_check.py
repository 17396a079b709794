"""An asyncio RTSP pre-check (OPTIONS + DESCRIBE, with Basic or Digest auth) that names why a camera fails.

OpenCV only says "could not open"; this check tells ``unreachable`` (refused, no route, no answer to the TCP
handshake), ``timeout`` (the TCP connection opens but RTSP never answers), ``auth_failed`` (401 with our
credentials) and ``stream_error`` (404, garbage, no video in the SDP) apart. It never raises for what the camera
does, and it never puts credentials into the result.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from varta.aio import wait_for
from varta.contract import CameraReason
from varta.sealing import Credentials

MAX_HEADER_BYTES = 16_384
MAX_BODY_BYTES = 65_536
USER_AGENT = "varta-edge"


@dataclass(frozen=True)
class RtspCheck:
    """Outcome of the pre-check: ``reason`` is None when the stream can be opened."""

    reason: CameraReason | None
    detail: str
    connect_ms: float | None = None
    video_codec: str | None = None


def strip_credentials(uri: str) -> str:
    """*uri* without any ``user:password@`` part (safe to log)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class _Protocol(Exception):
    """The peer does not speak RTSP (internal)."""


async def check_rtsp(uri: str, credentials: Credentials | None, timeout_s: float) -> RtspCheck:
    """Connect to *uri*, send OPTIONS and DESCRIBE (answering a 401 challenge once) within *timeout_s* each step."""
    uri = strip_credentials(uri)
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
        return RtspCheck(CameraReason.STREAM_ERROR, "not an rtsp:// address")
    if parts.scheme.lower() == "rtsps":
        return RtspCheck(None, "rtsps: pre-check skipped")
    try:
        port = parts.port or 554
    except ValueError:
        return RtspCheck(CameraReason.STREAM_ERROR, "bad port in the stream address")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        reader, writer = await wait_for(asyncio.open_connection(parts.hostname, port), timeout_s)
    except TimeoutError:
        return RtspCheck(CameraReason.UNREACHABLE, f"no answer from {parts.hostname}:{port} (TCP)")
    except OSError as exc:
        return RtspCheck(CameraReason.UNREACHABLE, f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}")
    connect_ms = (loop.time() - started) * 1000
    try:
        session = _Session(reader, writer, uri, credentials, timeout_s)
        status, _, _ = await session.request("OPTIONS")
        status, headers, body = await session.request("DESCRIBE", {"Accept": "application/sdp"})
        if status == 401 and credentials is not None and session.answer_challenge(headers):
            status, headers, body = await session.request("DESCRIBE", {"Accept": "application/sdp"})
        if status == 401:
            what = "wrong user name or password" if credentials is not None else "credentials required"
            return RtspCheck(CameraReason.AUTH_FAILED, f"RTSP 401: {what}", connect_ms)
        if status != 200:
            return RtspCheck(CameraReason.STREAM_ERROR, f"RTSP DESCRIBE answered {status}", connect_ms)
        codec = _video_codec(body)
        if codec is None:
            return RtspCheck(CameraReason.STREAM_ERROR, "the stream has no video", connect_ms)
        return RtspCheck(None, "", connect_ms, codec)
    except TimeoutError:
        return RtspCheck(CameraReason.TIMEOUT, f"no RTSP answer within {timeout_s:g} s", connect_ms)
    except _Protocol as exc:
        return RtspCheck(CameraReason.STREAM_ERROR, f"not an RTSP answer: {exc}", connect_ms)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return RtspCheck(CameraReason.UNREACHABLE, "connection closed by the camera", connect_ms)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await wait_for(writer.wait_closed(), 1)


class _Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        uri: str,
        credentials: Credentials | None,
        timeout_s: float,
    ) -> None:
        self.reader, self.writer, self.uri = reader, writer, uri
        self.credentials, self.timeout_s = credentials, timeout_s
        self.cseq = 0
        self.challenge: tuple[str, dict[str, str]] | None = None

    async def request(self, method: str, extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        self.cseq += 1
        lines = [f"{method} {self.uri} RTSP/1.0", f"CSeq: {self.cseq}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        auth = self._authorization(method)
        if auth:
            lines.append(f"Authorization: {auth}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await wait_for(self._response(), self.timeout_s)

    async def _response(self) -> tuple[int, dict[str, str], str]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        if len(raw) > MAX_HEADER_BYTES:
            raise _Protocol("header too long")
        head = raw.decode("latin-1").split("\r\n")
        m = re.match(r"RTSP/1\.\d (\d{3})", head[0])
        if not m:
            raise _Protocol(repr(head[0][:40]))
        headers: dict[str, str] = {}
        for line in head[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                headers[key] = f"{headers[key]}\n{value.strip()}" if key in headers else value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _Protocol("bad Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _Protocol("body too long")
        body = (await self.reader.readexactly(length)).decode("utf-8", "replace") if length else ""
        return int(m.group(1)), headers, body

    def answer_challenge(self, headers: dict[str, str]) -> bool:
        """Remember the strongest challenge we can answer; False if none."""
        challenges = [_parse_challenge(c) for c in headers.get("www-authenticate", "").split("\n") if c]
        for scheme in ("digest", "basic"):
            for found in challenges:
                if found[0] == scheme:
                    self.challenge = found
                    return True
        return False

    def _authorization(self, method: str) -> str:
        if self.challenge is None or self.credentials is None:
            return ""
        scheme, params = self.challenge
        user = self.credentials.username
        password = self.credentials.password.get_secret_value()
        if scheme == "basic":
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        ha1 = _md5(f"{user}:{realm}:{password}")
        ha2 = _md5(f"{method}:{self.uri}")
        fields = {"username": user, "realm": realm, "nonce": nonce, "uri": self.uri}
        if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
            cnonce, nc = secrets.token_hex(8), "00000001"
            fields |= {"qop": "auth", "nc": nc, "cnonce": cnonce}
            response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        else:
            response = _md5(f"{ha1}:{nonce}:{ha2}")
        fields["response"] = response
        if "opaque" in params:
            fields["opaque"] = params["opaque"]
        return "Digest " + ", ".join(f"{k}={v}" if k in ("qop", "nc") else f'{k}="{v}"' for k, v in fields.items())


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _parse_challenge(text: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = text.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)\s*=\s*"?([^",]*)"?', rest)}
    return scheme.lower(), params


def _video_codec(sdp: str) -> str | None:
    """The first video codec named in an SDP (``H264``, ``H265``, ``JPEG`` …), ``unknown`` if unnamed, else None."""
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
            if in_video and line.split()[-1:] == ["26"]:
                return "JPEG"
        elif in_video and line.startswith("a=rtpmap:"):
            m = re.match(r"a=rtpmap:\d+\s+([\w.-]+)/", line)
            if m:
                return m.group(1).upper()
    return "unknown" if "m=video" in sdp else None
