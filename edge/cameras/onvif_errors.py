"""ONVIF failures as reason codes: every exception from a camera call becomes one :class:`OnvifError`."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from lxml import etree  # type: ignore[import-untyped]
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError  # type: ignore[import-untyped]
from zeep.exceptions import (
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
    Fault,
    TransportError,
    XMLParseError,
    XMLSyntaxError,
)

from varta.contract import CameraReason

_MAX_DETAIL = 300
_AUTH_CODES = re.compile(r"NotAuthori[sz]ed|Unauthori[sz]ed|FailedAuthentication|InvalidSecurity", re.IGNORECASE)


class ReplyTooLarge(Exception):
    """A camera's reply exceeded the size we accept (memory stays bounded)."""


class OnvifError(Exception):
    """A failed ONVIF call: a reason code and a short detail that never contains credentials."""

    def __init__(self, reason: CameraReason, detail: str, *, soap_fault: bool = False) -> None:
        self.reason = reason
        self.detail = detail[:_MAX_DETAIL]
        self.soap_fault = soap_fault  # the camera answered with a SOAP fault (it speaks ONVIF, but said no)
        super().__init__(f"{reason.value}: {self.detail}")


def _fault_text(fault: Fault) -> str:
    parts = [str(fault.message or "SOAP fault")]
    subcodes = fault.subcodes if isinstance(fault.subcodes, list) else [fault.subcodes] if fault.subcodes else []
    names = [getattr(code, "text", None) or str(code) for code in subcodes]
    if names:
        parts.append(f"subcode {','.join(names)}")
    return "; ".join(parts)


def _is_auth_fault(fault: Fault) -> bool:
    text = f"{fault.message} {fault.code} {fault.subcodes}"
    return bool(_AUTH_CODES.search(text)) or "not authorized" in text.lower()


def classify(exc: BaseException, action: str) -> OnvifError:
    """Map any exception raised while doing *action* to an :class:`OnvifError` (reason + safe detail)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # look through onvif's ONVIFError(wrapped) chains
        seen.add(id(current))
        result = _classify_one(current, action)
        if result is not None:
            return result
        current = current.__cause__ or current.__context__
    return OnvifError(CameraReason.ONVIF_ERROR, f"{action}: {type(exc).__name__}")


def _classify_one(exc: BaseException, action: str) -> OnvifError | None:
    reason: CameraReason | None = None
    detail = ""
    if isinstance(exc, Fault):
        auth = _is_auth_fault(exc)
        return OnvifError(
            CameraReason.AUTH_FAILED if auth else CameraReason.ONVIF_ERROR,
            f"{action}: {'the camera refused the credentials' if auth else 'SOAP fault'} ({_fault_text(exc)})",
            soap_fault=True,
        )
    if isinstance(exc, OnvifError):
        return exc
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ONVIFTimeoutError | aiohttp.ServerTimeoutError):
        reason, detail = CameraReason.TIMEOUT, "no reply in time"
    elif isinstance(exc, ONVIFAuthError):
        reason, detail = CameraReason.AUTH_FAILED, "the camera refused the credentials"
    elif isinstance(exc, TransportError):
        if exc.status_code in (401, 403):
            reason, detail = CameraReason.AUTH_FAILED, f"HTTP {exc.status_code}"
        elif isinstance(exc.__cause__, XMLSyntaxError) or "invalid XML" in str(exc.message):
            reason, detail = CameraReason.ONVIF_ERROR, "malformed XML in the reply"
        else:
            reason, detail = CameraReason.ONVIF_ERROR, f"HTTP {exc.status_code}"
    elif isinstance(exc, ReplyTooLarge):
        reason, detail = CameraReason.ONVIF_ERROR, str(exc)
    elif isinstance(exc, DTDForbidden | EntitiesForbidden | ExternalReferenceForbidden):
        reason, detail = CameraReason.ONVIF_ERROR, f"refused XML with a DTD or entities ({type(exc).__name__})"
    elif isinstance(exc, XMLSyntaxError | XMLParseError | etree.LxmlError):
        reason, detail = CameraReason.ONVIF_ERROR, "malformed XML in the reply"
    elif isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError | aiohttp.ServerDisconnectedError):
        reason, detail = CameraReason.UNREACHABLE, type(exc).__name__
    elif isinstance(exc, aiohttp.ClientResponseError):
        if exc.status in (401, 403):
            reason, detail = CameraReason.AUTH_FAILED, f"HTTP {exc.status}"
        else:
            reason, detail = CameraReason.ONVIF_ERROR, f"HTTP {exc.status}"
    elif isinstance(exc, aiohttp.ClientError | OSError):
        reason, detail = CameraReason.UNREACHABLE, type(exc).__name__
    elif isinstance(exc, ValueError | TypeError | AttributeError | KeyError | IndexError | LookupError):
        reason, detail = CameraReason.ONVIF_ERROR, f"unexpected reply ({type(exc).__name__})"
    elif isinstance(exc, ONVIFError):
        return None  # look at what it wraps
    if reason is None:
        return None
    return OnvifError(reason, f"{action}: {detail}")
