"""One bounded HTTP GET for the alert feeds: a deadline for the whole exchange, a size limit, typed errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from central.alerts.feed import FeedError
from varta import __version__
from varta.aio import wait_for

#: Largest feed document read (the alerts.in.ua active list is a few tens of kB; a CAP feed a few hundred).
MAX_BYTES: Final = 2 * 1024 * 1024
#: Longest Retry-After honoured (a wrong header must not silence a source for a day).
MAX_RETRY_AFTER_S: Final = 3600.0
USER_AGENT: Final = f"varta-central/{__version__}"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A reply that was read whole: status 200 or 304, its headers, and its body (empty for 304)."""

    status: int
    headers: httpx.Headers
    body: bytes


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped; None when unreadable."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None = None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def make_client() -> httpx.AsyncClient:
    """The HTTP client the alert sources share (no proxies from the environment, a few redirects at most)."""
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=True,
        max_redirects=3,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
    )


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    timeout_s: float,
    max_bytes: int = MAX_BYTES,
) -> FetchResult:
    """GET *url*; 200 and 304 are returned, everything else raises :class:`FeedError` with a reason.

    *timeout_s* bounds the whole exchange (connect, headers and the body, however slowly it drips).
    """
    try:
        return await wait_for(_fetch(client, url, headers, timeout_s, max_bytes), timeout_s)
    except TimeoutError:
        raise FeedError("timeout", f"no complete answer within {timeout_s:g} s") from None
    except httpx.TimeoutException as exc:
        raise FeedError("timeout", type(exc).__name__) from None
    except httpx.TooManyRedirects:
        raise FeedError("redirects", "too many redirects") from None
    except (httpx.TransportError, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise FeedError("connect", f"{type(exc).__name__}: {exc}") from None
    except httpx.HTTPError as exc:
        raise FeedError("http_error", f"{type(exc).__name__}: {exc}") from None


async def _fetch(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], timeout_s: float, max_bytes: int
) -> FetchResult:
    async with client.stream("GET", url, headers=headers, timeout=timeout_s) as response:
        code = response.status_code
        if code == 304:
            return FetchResult(304, response.headers, b"")
        if code == 429:
            raise FeedError("rate_limited", "HTTP 429", retry_after_s=retry_after(response.headers.get("retry-after")))
        if code in (401, 403):
            raise FeedError("unauthorized", f"HTTP {code}: check the token")
        if code >= 500:
            raise FeedError("http_5xx", f"HTTP {code}", retry_after_s=retry_after(response.headers.get("retry-after")))
        if code != 200:
            raise FeedError("http_status", f"HTTP {code}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FeedError("too_large", f"Content-Length {declared} > {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FeedError("too_large", f"body over {max_bytes} bytes")
            chunks.append(chunk)
        return FetchResult(200, response.headers, b"".join(chunks))
