"""Live-view sessions of one node (:class:`LiveManager`): WebRTC passthrough of camera streams to viewers.

``start`` answers a viewer's SDP offer (relayed by central from the browser's WHEP request): it joins or opens the
camera's shared RTSP pull (:mod:`~edge.cameras.live.source`), chooses the offer's H.264 format for the camera's real
profile (:mod:`~edge.cameras.live.sdp`), and lets aiortc build the answer around one
:class:`~edge.cameras.live.track.PassthroughTrack` per viewer. No ICE servers unless the offer's command names some
(aiortc's default public STUN server costs 5 s where it is unreachable); candidates are gathered before the answer
returns (no trickle). Every session ends exactly once, whatever ends it, with a call of ``on_ended(device_id,
LiveEnded)``. aiortc (the ``live`` extra) is imported on the first start only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

import structlog

from edge.cameras.config import LiveSettings
from edge.cameras.live.sdp import AnswerPlan, SdpError, parse_offer, plan_answer, rewrite_answer
from edge.cameras.live.source import LiveSource, SourceKey, SourcePool, SourceUnavailable, StreamAddress
from edge.commands import CommandFailed
from varta.aio import wait_event, wait_for
from varta.contract import (
    IceServer,
    LiveEnded,
    LiveEndReason,
    LiveError,
    LiveStartParams,
    LiveStartResult,
    LiveStream,
)

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from edge.cameras.live.track import PassthroughTrack

log = structlog.get_logger(__name__)

NEGOTIATION_TIMEOUT_S: Final = 10.0
"""Longest the offer/answer exchange with aiortc may take (candidate gathering included)."""
CLOSE_TIMEOUT_S: Final = 5.0

OnEnded = Callable[[str, LiveEnded], Awaitable[None]]
"""Called once per session that ended: (device id, what ended it)."""
UriFor = Callable[[str, LiveStream], StreamAddress | None]
"""The camera's stream address for (device id, stream); None for an unknown camera, an empty URL if it has none."""


@dataclass(eq=False)
class LiveSession:
    """One viewer of one camera's stream."""

    session_id: str
    device_id: str
    stream: LiveStream
    source: LiveSource
    track: PassthroughTrack
    pc: RTCPeerConnection
    plan: AnswerPlan
    started: float = field(default_factory=time.monotonic)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False


def _webrtc() -> tuple[ModuleType, ModuleType]:
    """aiortc and the track module, imported now; CommandFailed(live_disabled) without the 'live' extra."""
    try:
        import aiortc

        from edge.cameras.live import track
    except ImportError as exc:
        raise CommandFailed(
            f"live view needs the 'live' extra: pip install 'varta[live]' (missing module {exc.name!r})",
            reason=LiveError.LIVE_DISABLED.value,
        ) from None
    return aiortc, track


def _restore_payload_types(pc: RTCPeerConnection, restore: dict[int, int]) -> None:
    """Give aiortc's negotiated video codecs the offer's own payload types back (see :mod:`.sdp`): the answer and
    the RTP packets then carry the type the viewer offered. ``_codecs`` is aiortc's per-transceiver copy of the
    negotiated codecs (aiortc 1.16; its global codec list is untouched)."""
    if not restore:
        return
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "video":
            continue
        for codec in transceiver._codecs:
            if codec.payloadType is not None and codec.payloadType in restore:
                codec.payloadType = restore[codec.payloadType]
            apt = codec.parameters.get("apt")
            if isinstance(apt, int) and apt in restore:
                codec.parameters["apt"] = restore[apt]


RequestKeyframe = Callable[[str, LiveStream], Awaitable[bool]]
"""(device id, stream) → ask the camera for a keyframe now; True when it was asked."""

#: A new pull's first viewer usually gets the keyframe the camera sends at PLAY: ask only if none came by then.
COLD_KEYFRAME_WAIT_S = 0.3


class LiveManager:
    """The node's live-view sessions (one manager per node); see the module docstring."""

    def __init__(
        self, settings: LiveSettings, on_ended: OnEnded, *, request_keyframe: RequestKeyframe | None = None
    ) -> None:
        self.settings = settings
        self.on_ended = on_ended
        self.request_keyframe = request_keyframe
        """Asks the camera for a keyframe now (ONVIF ``SetSynchronizationPoint``), when the camera can."""
        self.keyframes_requested = 0
        self.sessions: dict[str, LiveSession] = {}
        self.pool = SourcePool(
            open_timeout_s=settings.open_timeout_s,
            linger_s=settings.linger_s,
            queue_packets=settings.queue_packets,
            on_end=self._source_ended,
        )
        self.started = 0
        self.refused = 0
        self._starting: dict[str, int] = {}
        """Sessions being set up, per camera (they count against the caps)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # ---------------------------------------------------------------------------------------------- start

    async def start(self, params: LiveStartParams, uri_for: UriFor) -> LiveStartResult:
        """Answer a viewer's offer for one camera's stream; CommandFailed with a :class:`LiveError` reason if not."""
        began = time.monotonic()
        if not self.settings.enabled:
            raise self._refuse("live view is disabled on this node (cameras.live.enabled)", LiveError.LIVE_DISABLED)
        if self._closed:
            raise self._refuse("the node is stopping", LiveError.LIVE_DISABLED)
        aiortc, track_module = _webrtc()
        if params.session_id in self.sessions:
            raise self._refuse(f"live session {params.session_id} is already running", LiveError.BAD_OFFER)
        address = uri_for(params.device_id, params.stream)
        if address is None:
            raise self._refuse(f"unknown camera {params.device_id}", LiveError.UNKNOWN_CAMERA)
        self._check_capacity(params.device_id)
        try:
            offer = parse_offer(params.offer_sdp)
        except SdpError as exc:
            raise self._refuse(str(exc), exc.reason) from None
        if not address.url:
            raise self._refuse(f"camera {params.device_id} has no stream address yet", LiveError.SOURCE_UNAVAILABLE)
        key: SourceKey = (params.device_id, params.stream.value)
        self._starting[params.device_id] = self._starting.get(params.device_id, 0) + 1
        try:
            try:
                source, subscriber, shared = await self.pool.acquire(key, address)
            except SourceUnavailable as exc:
                raise self._refuse(
                    address.scrub(f"camera {params.device_id}: the stream cannot be opened: {exc}"),
                    LiveError.SOURCE_UNAVAILABLE,
                ) from None
            track: PassthroughTrack = track_module.PassthroughTrack(subscriber)
            try:
                fmt = await source.wait_format(self.settings.open_timeout_s)
                try:
                    plan = plan_answer(offer, fmt.profile_level_id)
                except SdpError as exc:
                    raise self._refuse(str(exc), exc.reason) from None
                pc, answer = await wait_for(
                    self._negotiate(aiortc, params.ice_servers, plan, track), NEGOTIATION_TIMEOUT_S
                )
            except TimeoutError:
                track.stop()
                raise self._refuse(f"the WebRTC set-up took longer than {NEGOTIATION_TIMEOUT_S:g} s", None) from None
            except BaseException:
                track.stop()
                raise
        finally:
            self._starting[params.device_id] -= 1
        if self._closed:  # the node began stopping meanwhile
            track.stop()
            with contextlib.suppress(Exception):
                await wait_for(pc.close(), CLOSE_TIMEOUT_S)
            raise self._refuse("the node is stopping", LiveError.LIVE_DISABLED)
        session = LiveSession(params.session_id, params.device_id, params.stream, source, track, pc, plan)
        self.sessions[session.session_id] = session
        self.started += 1
        pc.on("connectionstatechange", lambda: self._on_connection_state(session))
        self._spawn(self._watch_connect(session), f"live-connect-{session.session_id}")
        if self.request_keyframe is not None:
            self._spawn(self._keyframe_if_waiting(session, shared), f"live-keyframe-{session.session_id}")
        if plan.deferred_candidates or plan.deferred_end:
            self._spawn(self._add_deferred_candidates(session), f"live-mdns-{session.session_id}")
        setup_ms = round((time.monotonic() - began) * 1000, 1)
        log.info(
            "live.started",
            device_id=session.device_id,
            session_id=session.session_id,
            stream=session.stream.value,
            shared=shared,
            viewers=source.viewers,
            codec=plan.codec,
            exact_profile=plan.exact,
            setup_ms=setup_ms,
        )
        return LiveStartResult(
            session_id=session.session_id,
            answer_sdp=answer,
            codec=plan.codec,
            width=fmt.width,
            height=fmt.height,
            viewers=source.viewers,
            shared=shared,
        )

    async def _keyframe_if_waiting(self, session: LiveSession, shared: bool) -> None:
        """A viewer that joined between keyframes would wait up to a keyframe interval (aiortc ignores the
        browser's keyframe requests in passthrough): ask the camera for one, as ONVIF clients do."""
        if not shared:
            await asyncio.sleep(COLD_KEYFRAME_WAIT_S)
        if self.request_keyframe is None or not session.track.subscriber.waiting_for_keyframe:
            return
        self.keyframes_requested += 1
        with contextlib.suppress(Exception):  # best effort: the viewer then waits for the camera's own keyframe
            await self.request_keyframe(session.device_id, session.stream)

    def _refuse(self, detail: str, reason: LiveError | None) -> CommandFailed:
        self.refused += 1
        log.info("live.refused", reason=reason.value if reason else None, detail=detail[:200])
        return CommandFailed(detail, reason=reason.value if reason else None)

    def _check_capacity(self, device_id: str) -> None:
        s = self.settings
        camera = sum(1 for x in self.sessions.values() if x.device_id == device_id) + self._starting.get(device_id, 0)
        if camera >= s.max_viewers_per_camera:
            raise self._refuse(
                f"camera {device_id} already has {camera} live viewers "
                f"(cameras.live.max_viewers_per_camera = {s.max_viewers_per_camera})",
                LiveError.CAPACITY,
            )
        node = len(self.sessions) + sum(self._starting.values())
        if node >= s.max_viewers_per_node:
            raise self._refuse(
                f"this node already serves {node} live viewers "
                f"(cameras.live.max_viewers_per_node = {s.max_viewers_per_node})",
                LiveError.CAPACITY,
            )

    async def _negotiate(
        self, aiortc: ModuleType, ice_servers: list[IceServer], plan: AnswerPlan, track: PassthroughTrack
    ) -> tuple[RTCPeerConnection, str]:
        """A peer connection sending *track*, and the answer (with the camera's profile) to the planned offer."""
        servers = [aiortc.RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers]
        pc: RTCPeerConnection = aiortc.RTCPeerConnection(configuration=aiortc.RTCConfiguration(iceServers=servers))
        try:
            await pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=plan.offer_for_aiortc, type="offer"))
            _restore_payload_types(pc, plan.restore)
            pc.addTrack(track)
            await pc.setLocalDescription(await pc.createAnswer())
            local = pc.localDescription
            return pc, rewrite_answer(local.sdp, plan)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await wait_for(pc.close(), CLOSE_TIMEOUT_S)
            if isinstance(exc, SdpError):
                raise self._refuse(str(exc), exc.reason) from None
            if isinstance(exc, Exception) and not isinstance(exc, TimeoutError):
                detail = f"the offer cannot be answered: {type(exc).__name__}: {str(exc)[:200]}"
                raise self._refuse(detail, LiveError.BAD_OFFER) from None
            raise

    async def _add_deferred_candidates(self, session: LiveSession) -> None:
        """The viewer's mDNS candidates, resolved after the answer (aiortc waits up to 1 s for each)."""
        from aiortc.sdp import candidate_from_sdp

        candidates = []
        for index, value in session.plan.deferred_candidates:
            try:
                candidate = candidate_from_sdp(value.split(":", 1)[1])
            except (AssertionError, ValueError, IndexError):
                continue
            candidate.sdpMLineIndex = index
            candidates.append(candidate)
        await asyncio.gather(*(session.pc.addIceCandidate(c) for c in candidates), return_exceptions=True)
        if session.plan.deferred_end and not session.ended:
            with contextlib.suppress(Exception):
                await session.pc.addIceCandidate(None)

    # ---------------------------------------------------------------------------------------------- endings

    def _on_connection_state(self, session: LiveSession) -> None:
        state = session.pc.connectionState
        log.debug("live.connection_state", session_id=session.session_id, state=state)
        if state == "connected":
            session.connected.set()
        elif state in ("failed", "closed") and not session.ended:
            self._spawn(self._end(session, LiveEndReason.VIEWER_LOST, f"connection {state}"), "live-lost")

    async def _watch_connect(self, session: LiveSession) -> None:
        timeout = self.settings.connect_timeout_s
        if not await wait_event(session.connected, timeout):
            await self._end(session, LiveEndReason.CONNECT_TIMEOUT, f"the viewer did not connect within {timeout:g} s")

    def _source_ended(self, source: LiveSource) -> None:
        for session in [s for s in self.sessions.values() if s.source is source]:
            self._spawn(self._end(session, LiveEndReason.SOURCE_LOST, source.end_detail), "live-source-lost")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, session: LiveSession, reason: LiveEndReason, detail: str = "") -> None:
        """End *session* (only the first call does anything) and report it through ``on_ended``."""
        if session.ended:
            return
        session.ended = True
        if self.sessions.get(session.session_id) is session:
            del self.sessions[session.session_id]
        session.connected.set()  # releases the connect watchdog
        session.track.stop()
        with contextlib.suppress(Exception):
            await wait_for(session.pc.close(), CLOSE_TIMEOUT_S)
        ended = LiveEnded(
            session_id=session.session_id,
            reason=reason,
            detail=session.source.scrub(detail)[:500],
            duration_s=round(time.monotonic() - session.started, 3),
            frames_sent=session.track.frames_sent,
        )
        log.info(
            "live.ended",
            device_id=session.device_id,
            session_id=session.session_id,
            reason=reason.value,
            detail=ended.detail,
            duration_s=ended.duration_s,
            frames_sent=ended.frames_sent,
            drops=session.track.subscriber.drops,
        )
        try:
            await self.on_ended(session.device_id, ended)
        except Exception:
            log.exception("live.on_ended_failed", session_id=session.session_id)

    async def stop(
        self,
        session_id: str,
        reason: LiveEndReason = LiveEndReason.VIEWER_LEFT,
        detail: str = "",
        *,
        device_id: str | None = None,
    ) -> bool:
        """End one session (of *device_id*, if given); False if there is no such session (nothing to do)."""
        session = self.sessions.get(session_id)
        if session is None or (device_id is not None and session.device_id != device_id):
            return False
        await self._end(session, reason, detail or "stopped")
        return True

    async def stop_camera(
        self, device_id: str, reason: LiveEndReason = LiveEndReason.CAMERA_REMOVED, detail: str = ""
    ) -> int:
        """End every session of one camera and stop its pulls now (no linger); returns how many ended."""
        doomed = [s for s in self.sessions.values() if s.device_id == device_id]
        await asyncio.gather(*(self._end(s, reason, detail or reason.value.replace("_", " ")) for s in doomed))
        await self.pool.close(device_id)
        return len(doomed)

    def resume(self) -> None:
        """Accept starts again after :meth:`close` (the camera manager's loop restarted)."""
        self._closed = False

    async def close(self) -> None:
        """The node is stopping: end every session (``node_stopping``), stop every pull, refuse new starts."""
        self._closed = True
        doomed = list(self.sessions.values())
        await asyncio.gather(*(self._end(s, LiveEndReason.NODE_STOPPING, "the node is stopping") for s in doomed))
        await self.pool.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics (no addresses)."""
        return {
            "sessions": len(self.sessions),
            "started": self.started,
            "refused": self.refused,
            "keyframes_requested": self.keyframes_requested,
            "pulls": len(self.pool.sources),
            "pulls_opened": self.pool.opens,
            "pull_restarts": self.pool.restarts,
            "sources": {
                f"{k[0]}/{k[1]}": {
                    "viewers": s.viewers,
                    "packets": s.stats.packets,
                    "keyframes": s.stats.keyframes,
                    "bytes": s.stats.bytes,
                    "drops": s.stats.drops,
                }
                for k, s in self.pool.sources.items()
            },
        }
