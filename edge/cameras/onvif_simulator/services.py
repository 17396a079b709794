"""The simulated camera's ONVIF operations (Device, Media, PTZ, Events): request element in, reply XML out."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from xml.sax.saxutils import escape, quoteattr

from lxml import etree  # type: ignore[import-untyped]

from varta.aio import wait_for

from .config import SimulatorConfig
from .soap import NS, SoapFault, child_local, iso, local_text, parse_duration_s, parse_time_or_duration
from .state import CameraState

Handler = Callable[[etree._Element, str], Awaitable[str]]

#: Operations a camera answers without authentication (ONVIF "PRE_AUTH" class, as far as we simulate it).
UNAUTHENTICATED = frozenset({"GetSystemDateAndTime"})

_PROFILES = (  # token, name, width, height, fps, bitrate (kbit/s)
    ("main", "MainStream", 1920, 1080, 25, 4096),
    ("sub", "SubStream", 640, 360, 10, 512),
)
_SERVICE_PATHS = {
    "device": "/onvif/device_service",
    "media": "/onvif/media_service",
    "ptz": "/onvif/ptz_service",
    "events": "/onvif/events_service",
}
SNAPSHOT_PATH = "/onvif/snapshot.jpg"


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def _vector(pan: float, tilt: float, zoom: float) -> str:
    return f'<tt:PanTilt x="{pan:.4f}" y="{tilt:.4f}"/><tt:Zoom x="{zoom:.4f}"/>'


class Services:
    """Answers ONVIF operations for one simulated camera."""

    def __init__(self, config: SimulatorConfig, state: CameraState, base_url: Callable[[], str]) -> None:
        self.config = config
        self.state = state
        self._base_url = base_url
        self._handlers: dict[str, Handler] = {
            _camel(name.removeprefix("_op_")): getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }
        self.on_keyframe: Callable[[str], None] | None = None
        """Called with the profile token when a client asks for a keyframe (Media ``SetSynchronizationPoint``)."""

    def knows(self, operation: str) -> bool:
        """True if the simulator implements *operation*."""
        return operation in self._handlers

    async def handle(self, operation: str, body: etree._Element, path: str) -> str:
        """Reply XML for *operation* (raises :class:`SoapFault`)."""
        handler = self._handlers.get(operation)
        if handler is None:
            raise SoapFault(
                f"operation {operation} is not supported", code="s:Receiver", subcode="ter:ActionNotSupported"
            )
        self.state.counters[f"op_{operation}"] += 1
        return await handler(body, path)

    def _url(self, service: str) -> str:
        return self._base_url() + _SERVICE_PATHS[service]

    # Device ---------------------------------------------------------------------------------------------------
    async def _op_get_device_information(self, body: etree._Element, path: str) -> str:
        c = self.config
        return (
            f"<tds:GetDeviceInformationResponse><tds:Manufacturer>{escape(c.manufacturer)}</tds:Manufacturer>"
            f"<tds:Model>{escape(c.model)}</tds:Model><tds:FirmwareVersion>{escape(c.firmware)}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(c.serial)}</tds:SerialNumber>"
            f"<tds:HardwareId>{escape(c.hardware_id)}</tds:HardwareId></tds:GetDeviceInformationResponse>"
        )

    async def _op_get_system_date_and_time(self, body: etree._Element, path: str) -> str:
        now = self.state.now()
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time><tt:Date><tt:Year>{now.year}</tt:Year>"
            f"<tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    async def _op_set_system_date_and_time(self, body: etree._Element, path: str) -> str:
        utc = child_local(body, "UTCDateTime")
        if utc is None:
            raise SoapFault("UTCDateTime is required for a manual clock", subcode="ter:InvalidArgVal")
        try:
            moment = dt.datetime(
                int(local_text(utc, "Year")),
                int(local_text(utc, "Month")),
                int(local_text(utc, "Day")),
                int(local_text(utc, "Hour")),
                int(local_text(utc, "Minute")),
                int(local_text(utc, "Second")),
                tzinfo=dt.UTC,
            )
        except ValueError:
            raise SoapFault("invalid date or time", subcode="ter:InvalidDateTime") from None
        self.state.clock_offset_s = (moment - dt.datetime.now(dt.UTC)).total_seconds()
        self.state.last_time_set = moment
        self.state.counters["time_set"] += 1
        return "<tds:SetSystemDateAndTimeResponse/>"

    async def _op_system_reboot(self, body: etree._Element, path: str) -> str:
        self.state.counters["reboots"] += 1
        self.state.forget_subscriptions()
        self.state.ptz.stop()
        return "<tds:SystemRebootResponse><tds:Message>Rebooting in 30 seconds</tds:Message></tds:SystemRebootResponse>"

    async def _op_get_scopes(self, body: etree._Element, path: str) -> str:
        scopes = [
            "onvif://www.onvif.org/Profile/Streaming",
            "onvif://www.onvif.org/type/video_encoder",
            f"onvif://www.onvif.org/hardware/{self.config.model}",
            f"onvif://www.onvif.org/name/{self.config.manufacturer}",
        ]
        items = "".join(
            f"<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{escape(s)}</tt:ScopeItem></tds:Scopes>"
            for s in scopes
        )
        return f"<tds:GetScopesResponse>{items}</tds:GetScopesResponse>"

    async def _op_get_services(self, body: etree._Element, path: str) -> str:
        entries = [(NS["tds"], "device"), (NS["trt"], "media")]
        if self.config.ptz and self.config.ptz_listed_in in {"both", "services"}:
            entries.append((NS["tptz"], "ptz"))
        if self.config.events:
            entries.append((NS["tev"], "events"))
        services = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{self._url(name)}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, name in entries
        )
        return f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"

    async def _op_get_capabilities(self, body: etree._Element, path: str) -> str:
        parts = [
            f"<tt:Device><tt:XAddr>{self._url('device')}</tt:XAddr></tt:Device>",
        ]
        if self.config.events:
            parts.append(
                f"<tt:Events><tt:XAddr>{self._url('events')}</tt:XAddr>"
                "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
                "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
                "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
                "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
            )
        parts.append(
            f"<tt:Media><tt:XAddr>{self._url('media')}</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
            "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
        )
        if self.config.ptz and self.config.ptz_listed_in in {"both", "capabilities"}:
            parts.append(f"<tt:PTZ><tt:XAddr>{self._url('ptz')}</tt:XAddr></tt:PTZ>")
        caps = "".join(parts)
        return f"<tds:GetCapabilitiesResponse><tds:Capabilities>{caps}</tds:Capabilities></tds:GetCapabilitiesResponse>"

    # Media ----------------------------------------------------------------------------------------------------
    async def _op_get_profiles(self, body: etree._Element, path: str) -> str:
        profiles = []
        for token, name, width, height, fps, kbps in _PROFILES:
            ptz = (
                '<tt:PTZConfiguration token="ptz0"><tt:Name>PTZ</tt:Name><tt:UseCount>2</tt:UseCount>'
                "<tt:NodeToken>ptznode0</tt:NodeToken></tt:PTZConfiguration>"
                if self.config.ptz
                else ""
            )
            profiles.append(
                f'<trt:Profiles fixed="true" token="{token}"><tt:Name>{name}</tt:Name>'
                '<tt:VideoSourceConfiguration token="vsconf0"><tt:Name>VideoSource</tt:Name>'
                "<tt:UseCount>2</tt:UseCount>"
                '<tt:SourceToken>VideoSourceToken</tt:SourceToken><tt:Bounds x="0" y="0" width="1920" height="1080"/>'
                "</tt:VideoSourceConfiguration>"
                f'<tt:VideoEncoderConfiguration token="venc_{token}"><tt:Name>{name}</tt:Name>'
                "<tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
                f"<tt:Resolution><tt:Width>{width}</tt:Width><tt:Height>{height}</tt:Height></tt:Resolution>"
                "<tt:Quality>5</tt:Quality>"
                f"<tt:RateControl><tt:FrameRateLimit>{fps}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>"
                f"<tt:BitrateLimit>{kbps}</tt:BitrateLimit></tt:RateControl>"
                f"<tt:H264><tt:GovLength>{fps}</tt:GovLength><tt:H264Profile>Main</tt:H264Profile></tt:H264>"
                "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address>"
                "<tt:Port>0</tt:Port><tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
                "<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>"
                f"{ptz}</trt:Profiles>"
            )
        return f"<trt:GetProfilesResponse>{''.join(profiles)}</trt:GetProfilesResponse>"

    def _profile(self, body: etree._Element) -> str:
        token = local_text(body, "ProfileToken")
        if token not in {p[0] for p in _PROFILES}:
            raise SoapFault(f"no profile {token!r}", subcode="ter:NoProfile")
        return token

    @staticmethod
    def _media_uri(uri: str) -> str:
        return (
            f"<trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri>"
        )

    async def _op_get_stream_uri(self, body: etree._Element, path: str) -> str:
        token = self._profile(body)
        uri = self.config.rtsp_uri if token == "main" else (self.config.sub_rtsp_uri or self.config.rtsp_uri)
        return f"<trt:GetStreamUriResponse>{self._media_uri(uri)}</trt:GetStreamUriResponse>"

    async def _op_get_snapshot_uri(self, body: etree._Element, path: str) -> str:
        self._profile(body)
        uri = self._base_url() + SNAPSHOT_PATH
        return f"<trt:GetSnapshotUriResponse>{self._media_uri(uri)}</trt:GetSnapshotUriResponse>"

    # PTZ ------------------------------------------------------------------------------------------------------
    def _require_ptz(self, body: etree._Element) -> None:
        if not self.config.ptz:
            raise SoapFault("PTZ is not supported", code="s:Receiver", subcode="ter:ActionNotSupported")
        self._profile(body)

    async def _op_continuous_move(self, body: etree._Element, path: str) -> str:
        self._require_ptz(body)
        velocity = child_local(body, "Velocity")
        pan = tilt = zoom = 0.0
        try:
            if velocity is not None:
                pan_tilt, zoom_el = child_local(velocity, "PanTilt"), child_local(velocity, "Zoom")
                if pan_tilt is not None:
                    pan, tilt = float(pan_tilt.get("x", "0")), float(pan_tilt.get("y", "0"))
                if zoom_el is not None:
                    zoom = float(zoom_el.get("x", "0"))
        except ValueError:
            raise SoapFault("invalid velocity", subcode="ter:InvalidArgVal") from None
        if any(abs(v) > 1.0 for v in (pan, tilt, zoom)):
            raise SoapFault("velocity outside [-1, 1]", subcode="ter:InvalidVelocity")
        timeout = parse_duration_s(local_text(body, "Timeout")) if local_text(body, "Timeout") else None
        self.state.ptz.move((pan, tilt, zoom), timeout)
        return "<tptz:ContinuousMoveResponse/>"

    async def _op_stop(self, body: etree._Element, path: str) -> str:
        self._require_ptz(body)
        self.state.ptz.stop()
        return "<tptz:StopResponse/>"

    async def _op_get_status(self, body: etree._Element, path: str) -> str:
        self._require_ptz(body)
        ptz = self.state.ptz
        moving = "MOVING" if ptz.moving else "IDLE"
        return (
            f"<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>{_vector(ptz.pan, ptz.tilt, ptz.zoom)}</tt:Position>"
            f"<tt:MoveStatus><tt:PanTilt>{moving}</tt:PanTilt><tt:Zoom>{moving}</tt:Zoom></tt:MoveStatus>"
            f"<tt:UtcTime>{iso(self.state.now())}</tt:UtcTime></tptz:PTZStatus></tptz:GetStatusResponse>"
        )

    async def _op_get_presets(self, body: etree._Element, path: str) -> str:
        self._require_ptz(body)
        presets = "".join(
            f"<tptz:Preset token={quoteattr(token)}><tt:Name>{escape(name)}</tt:Name>"
            f"<tt:PTZPosition>{_vector(p, t, z)}</tt:PTZPosition></tptz:Preset>"
            for token, (name, p, t, z) in self.state.ptz.presets.items()
        )
        return f"<tptz:GetPresetsResponse>{presets}</tptz:GetPresetsResponse>"

    async def _op_set_preset(self, body: etree._Element, path: str) -> str:
        self._require_ptz(body)
        ptz = self.state.ptz
        ptz.settle()
        token = local_text(body, "PresetToken") or f"preset{len(ptz.presets) + 1}"
        name = local_text(body, "PresetName") or token
        if len(ptz.presets) >= 64 and token not in ptz.presets:
            raise SoapFault("too many presets", code="s:Receiver", subcode="ter:TooManyPresets")
        ptz.presets[token] = (name[:64], ptz.pan, ptz.tilt, ptz.zoom)
        return f"<tptz:SetPresetResponse><tptz:PresetToken>{escape(token)}</tptz:PresetToken></tptz:SetPresetResponse>"

    async def _op_goto_preset(self, body: etree._Element, path: str) -> str:
        self._require_ptz(body)
        token = local_text(body, "PresetToken")
        preset = self.state.ptz.presets.get(token)
        if preset is None:
            raise SoapFault(f"no preset {token!r}", subcode="ter:NoToken")
        ptz = self.state.ptz
        ptz.stop()
        _, ptz.pan, ptz.tilt, ptz.zoom = preset
        return "<tptz:GotoPresetResponse/>"

    # Events ---------------------------------------------------------------------------------------------------
    def _require_events(self) -> None:
        if not self.config.events:
            raise SoapFault("events are not supported", code="s:Receiver", subcode="ter:ActionNotSupported")

    async def _op_get_event_properties(self, body: etree._Element, path: str) -> str:
        self._require_events()
        return (
            "<tev:GetEventPropertiesResponse>"
            "<tev:TopicNamespaceLocation>http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>"
            "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet>"
            '<wstop:TopicSet><tns1:RuleEngine wstop:topic="false"><CellMotionDetector><Motion wstop:topic="true"/>'
            '</CellMotionDetector><TamperDetector><Tamper wstop:topic="true"/></TamperDetector></tns1:RuleEngine>'
            '<tns1:VideoSource><GlobalSceneChange><ImagingService wstop:topic="true"/></GlobalSceneChange>'
            "</tns1:VideoSource></wstop:TopicSet>"
            "<wsnt:TopicExpressionDialect>http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
            "</wsnt:TopicExpressionDialect>"
            "<tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
            "</tev:MessageContentFilterDialect>"
            "<tev:MessageContentSchemaLocation>http://www.onvif.org/onvif/ver10/schema/onvif.xsd"
            "</tev:MessageContentSchemaLocation></tev:GetEventPropertiesResponse>"
        )

    def _termination(self, requested: str) -> dt.datetime:
        now = self.state.now()
        longest = now + dt.timedelta(seconds=self.config.max_subscription_s)
        wanted = parse_time_or_duration(requested, now) if requested else None
        return longest if wanted is None or wanted > longest or wanted <= now else wanted

    async def _op_create_pull_point_subscription(self, body: etree._Element, path: str) -> str:
        self._require_events()
        sub = self.state.new_subscription(self._termination(local_text(body, "InitialTerminationTime")))
        return (
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa:Address>{self._base_url()}/onvif/subscription/{sub.ident}</wsa:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{iso(self.state.now())}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{iso(sub.terminates)}</wsnt:TerminationTime>"
            "</tev:CreatePullPointSubscriptionResponse>"
        )

    def _subscription_of(self, path: str) -> str:
        ident = path.rsplit("/", 1)[-1]
        if self.state.live(ident) is None:
            raise SoapFault("the subscription is unknown or has expired", subcode="wsrf-rw:ResourceUnknownFault")
        return ident

    async def _op_renew(self, body: etree._Element, path: str) -> str:
        self._require_events()
        self.state.counters["renew_requests"] += 1
        ident = self._subscription_of(path)
        sub = self.state.subscriptions[ident]
        sub.terminates = self._termination(local_text(body, "TerminationTime"))
        self.state.counters["renewals"] += 1
        return (
            f"<wsnt:RenewResponse><wsnt:TerminationTime>{iso(sub.terminates)}</wsnt:TerminationTime>"
            f"<wsnt:CurrentTime>{iso(self.state.now())}</wsnt:CurrentTime></wsnt:RenewResponse>"
        )

    async def _op_unsubscribe(self, body: etree._Element, path: str) -> str:
        ident = self._subscription_of(path)
        self.state.subscriptions.pop(ident, None)
        self.state.counters["unsubscribes"] += 1
        return "<wsnt:UnsubscribeResponse/>"

    async def _op_set_synchronization_point(self, body: etree._Element, path: str) -> str:
        if "/subscription/" in path:  # Events: send the current state again
            self._subscription_of(path)
            return "<tev:SetSynchronizationPointResponse/>"
        token = self._profile(body)  # Media: a keyframe on that profile's stream now
        self.state.counters["keyframes_requested"] += 1
        if self.on_keyframe is not None:
            self.on_keyframe(token)
        return "<trt:SetSynchronizationPointResponse/>"

    async def _op_pull_messages(self, body: etree._Element, path: str) -> str:
        ident = self._subscription_of(path)
        sub = self.state.subscriptions[ident]
        wait = min(parse_duration_s(local_text(body, "Timeout", "PT1S")) or 1.0, self.config.max_pull_wait_s)
        try:
            limit = max(1, min(int(local_text(body, "MessageLimit", "100")), 1000))
        except ValueError:
            limit = 100
        if not sub.queue:
            sub.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await wait_for(sub.wakeup.wait(), timeout=wait)
        if self.state.live(ident) is None:
            raise SoapFault("the subscription is unknown or has expired", subcode="wsrf-rw:ResourceUnknownFault")
        messages = [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]
        self.state.counters["messages_delivered"] += len(messages)
        return (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{iso(self.state.now())}</tev:CurrentTime>"
            f"<tev:TerminationTime>{iso(sub.terminates)}</tev:TerminationTime>{''.join(messages)}"
            "</tev:PullMessagesResponse>"
        )
