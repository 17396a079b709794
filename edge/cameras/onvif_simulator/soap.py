"""SOAP 1.2 plumbing of the simulator: safe request parsing, envelopes, faults, WS-UsernameToken checks."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

from lxml import etree  # type: ignore[import-untyped]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
_DIGEST_TYPE = "PasswordDigest"

#: The reply of a camera under attack or broken firmware: a "billion laughs" entity bomb (about 3 GB if expanded).
ENTITY_BOMB = (
    '<?xml version="1.0"?>\n'
    '<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + "]>\n"
    f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:tds="{NS["tds"]}"><s:Body>'
    "<tds:GetDeviceInformationResponse><tds:Manufacturer>&lol9;</tds:Manufacturer>"
    "</tds:GetDeviceInformationResponse></s:Body></s:Envelope>"
).encode()

#: A reply cut off in the middle of an element, as from a crashing web server.
MALFORMED = (
    f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{NS["s"]}" xmlns:tds="{NS["tds"]}">'
    "<s:Body><tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>Man"
).encode()


class SoapFault(Exception):
    """A SOAP fault the simulator answers with (never crashes the server)."""

    def __init__(self, reason: str, *, code: str = "s:Sender", subcode: str = "ter:InvalidArgVal", status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.subcode = subcode
        self.status = status


@dataclass(frozen=True)
class SoapRequest:
    """One parsed SOAP request: the operation (local name of the body's first child) and its element."""

    operation: str
    body: etree._Element
    header: etree._Element | None


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def parse_request(data: bytes) -> SoapRequest:
    """Parse a SOAP request safely (no DTDs, no entities, no network); :class:`SoapFault` if it is not one."""
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapFault(f"malformed XML: {exc}", subcode="ter:WellFormed") from None
    if root.getroottree().docinfo.doctype:
        raise SoapFault("DTDs are not allowed", subcode="ter:WellFormed")
    body = root.find("s:Body", NS)
    if body is None or len(body) == 0:
        raise SoapFault("not a SOAP 1.2 envelope", code="s:Sender", subcode="ter:WellFormed")
    operation = etree.QName(body[0]).localname
    return SoapRequest(operation=operation, body=body[0], header=root.find("s:Header", NS))


def text(element: etree._Element, path: str, default: str = "") -> str:
    """Text of the first element matching *path* (namespace prefixes from :data:`NS`; ``*`` for any)."""
    found = element.find(path, NS)
    if found is None or found.text is None:
        return default
    return str(found.text).strip()


def child_local(element: etree._Element, name: str) -> etree._Element | None:
    """First descendant whose local name is *name* (any namespace): clients differ in prefixes."""
    for candidate in element.iter():
        if isinstance(candidate.tag, str) and etree.QName(candidate).localname == name:
            return candidate
    return None


def local_text(element: etree._Element, name: str, default: str = "") -> str:
    """Text of the first descendant with local name *name*."""
    found = child_local(element, name)
    if found is None or found.text is None:
        return default
    return str(found.text).strip()


def envelope(body: str) -> bytes:
    """A SOAP 1.2 envelope around *body* with every namespace the simulator uses declared."""
    decls = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NS.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope {decls}><s:Body>{body}</s:Body></s:Envelope>'.encode()


def fault(err: SoapFault) -> bytes:
    """The SOAP 1.2 fault envelope for *err*."""
    return envelope(
        f"<s:Fault><s:Code><s:Value>{err.code}</s:Value><s:Subcode><s:Value>{err.subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">{escape(err.reason)}</s:Text></s:Reason></s:Fault>'
    )


def iso(moment: dt.datetime) -> str:
    """``2026-01-02T03:04:05Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time_or_duration(value: str, now: dt.datetime) -> dt.datetime | None:
    """An absolute xsd:dateTime or a relative xsd:duration (``PT60S``) as an absolute time; None if neither."""
    value = value.strip()
    if not value:
        return None
    if value.startswith(("P", "-P")):
        seconds = parse_duration_s(value)
        return None if seconds is None else now + dt.timedelta(seconds=seconds)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def parse_duration_s(value: str) -> float | None:
    """Seconds of a simple xsd:duration (``PT1H2M3.5S``, ``P1D``); None if unreadable."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", value.strip())
    if not match or value.strip() in {"P", "PT"}:
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def check_username_token(
    header: etree._Element | None, username: str, password: str, now: dt.datetime, max_skew_s: float
) -> None:
    """Verify a WS-Security UsernameToken (digest or text) against *now*; :class:`SoapFault` NotAuthorized if not."""
    denied = SoapFault("Sender not authorized", code="s:Sender", subcode="ter:NotAuthorized")
    token = None if header is None else header.find("wsse:Security/wsse:UsernameToken", NS)
    if token is None:
        raise denied
    given_user = text(token, "wsse:Username")
    pw = token.find("wsse:Password", NS)
    if pw is None or pw.text is None or not hmac.compare_digest(given_user.encode(), username.encode()):
        raise denied
    if pw.get("Type", "").endswith(_DIGEST_TYPE):
        nonce_text, created = text(token, "wsse:Nonce"), text(token, "wsu:Created")
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
            moment = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            raise denied from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        if abs((moment - now).total_seconds()) > max_skew_s:
            raise SoapFault("Sender not authorized (timestamp outside the allowed window)", subcode="ter:NotAuthorized")
        sha1 = hashlib.sha1(nonce + created.encode() + password.encode(), usedforsecurity=False)
        expected = base64.b64encode(sha1.digest()).decode()
        if not hmac.compare_digest(expected.encode(), pw.text.strip().encode()):
            raise denied
    elif not hmac.compare_digest(pw.text.encode(), password.encode()):
        raise denied
