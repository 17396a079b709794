"""A GStreamer RTSP server serving an H.264 test pattern, controlled over stdin (run with ``/usr/bin/python3``).

Debian's PyGObject (``python3-gi``) and ``gir1.2-gst-rtsp-server-1.0`` are needed, hence the system interpreter;
this file imports nothing from the project. Usage::

    /usr/bin/python3 gst_rtsp_server.py --port 8554 --paths stream,cam2 --width 1280 --height 720 --fps 25 \
        [--user U --password P --auth digest|basic] [--profile high|main|baseline] [--key-int N] \
        [--config-interval N] [--repeat-headers 0|1]

It prints ``ready <port>`` once it listens. Commands on stdin, one a line, each answered with ``ok <command>`` (or
``error <text>``) on stdout:

- ``pattern moving`` — scrolling SMPTE bars (bright, sharp, changing), the default;
- ``pattern still`` — the same bars standing still (a frozen picture: frames keep arriving);
- ``pattern black`` — a black picture;
- ``pattern <name>`` — any other ``videotestsrc`` pattern name (``snow``, ``ball``, ``white`` …);
- ``clients`` — answered ``ok clients <connected now> <connected ever>`` (RTSP client connections).

``--profile`` pins the H.264 profile (4:2:0; x264's CABAC/8x8 transform switched to match, as x264 writes the
lowest profile its tools need into the SPS). ``--config-interval`` is rtph264pay's (0: the payloader adds no
SPS/PPS); x264 itself still writes them before every keyframe unless ``--repeat-headers 0``: with both, SPS/PPS
reach clients only out of band, in the SDP's ``sprop-parameter-sets`` (as some cameras do).

Every path serves the same shared pipeline configuration; one pipeline per path (shared between clients).
"""

from __future__ import annotations

import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer, GstVideo  # noqa: E402

MOVING_SPEED = 8  # pixels per frame the bars scroll in ``pattern moving``
PROFILES = {  # --profile: x264 tools that make x264 write that profile, and the caps' profile name
    "high": ("cabac=true dct8x8=true", "high"),
    "main": ("cabac=true dct8x8=false", "main"),
    "baseline": ("cabac=false dct8x8=false", "constrained-baseline"),
}


class Server:
    """The RTSP server and the live ``videotestsrc`` elements of the media it has built."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pattern = "smpte"
        self.speed = MOVING_SPEED
        self.sources: list[Gst.Element] = []
        self.encoders: list[Gst.Element] = []
        self.pending = ""
        self.validator = Gst.ElementFactory.make("videotestsrc")
        self.clients_now = 0
        self.clients_ever = 0
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(args.port))
        tools, caps, raw = "", "", ""
        if args.profile:
            tools, name = PROFILES[args.profile]
            caps, raw = f"profile={name}", "! video/x-raw,format=I420 "
        if not args.repeat_headers:
            tools += " option-string=repeat-headers=0"
        launch = (
            f"( videotestsrc name=src is-live=true pattern=smpte horizontal-speed={MOVING_SPEED} "
            f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
            f"! videoconvert {raw}! x264enc name=enc tune=zerolatency speed-preset=ultrafast "
            f"key-int-max={args.key_int or args.fps} bitrate={args.bitrate} {tools} "
            + (f"! video/x-h264,{caps} " if caps else "")
            + f"! rtph264pay config-interval={args.config_interval} name=pay0 pt=96 )"
        )
        mounts = self.server.get_mount_points()
        for path in args.paths.split(","):
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(launch)
            factory.set_shared(True)
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
            factory.connect("media-configure", self.on_media_configure)
            if args.user:
                factory.add_role_from_structure(
                    Gst.Structure.from_string(
                        "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
                    )[0]
                )
            mounts.add_factory("/" + path.strip("/"), factory)
        if args.user:
            auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken()
            token.set_string("media.factory.role", "user")
            if args.auth == "digest":
                auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
                auth.add_digest(args.user, args.password, token)
            else:
                auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
                auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
            self.server.set_auth(auth)
        self.server.connect("client-connected", self.on_client)

    def on_client(self, _server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
        self.clients_now += 1
        self.clients_ever += 1
        client.connect("closed", self.on_client_closed)

    def on_client_closed(self, _client: GstRtspServer.RTSPClient) -> None:
        self.clients_now -= 1

    def on_media_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_by_name("src")
        self.apply(src)
        self.sources.append(src)
        enc = media.get_element().get_by_name("enc")
        self.encoders.append(enc)

        def unprepared(_media: GstRtspServer.RTSPMedia) -> None:
            for items, item in ((self.sources, src), (self.encoders, enc)):
                if item in items:
                    items.remove(item)

        media.connect("unprepared", unprepared)

    def apply(self, src: Gst.Element) -> None:
        src.set_property("pattern", self.pattern)
        src.set_property("horizontal-speed", self.speed)

    def command(self, line: str) -> str:
        words = line.split()
        if len(words) == 2 and words[0] == "pattern":
            name = words[1]
            pattern, speed = {
                "moving": ("smpte", MOVING_SPEED),
                "still": ("smpte", 0),
                "black": ("black", 0),
            }.get(name, (name, 0))
            try:
                self.validator.set_property("pattern", pattern)
            except TypeError as exc:
                return f"error {exc}"
            self.pattern, self.speed = pattern, speed
            for src in list(self.sources):
                self.apply(src)
            return f"ok {line}"
        if words == ["keyframe"]:  # what an ONVIF camera does on SetSynchronizationPoint
            for enc in list(self.encoders):
                event = GstVideo.video_event_new_upstream_force_key_unit(Gst.CLOCK_TIME_NONE, True, 0)
                enc.get_static_pad("src").send_event(event)
            return f"ok keyframe {len(self.encoders)}"
        if words == ["clients"]:
            return f"ok clients {self.clients_now} {self.clients_ever}"
        return f"error unknown command: {line}"

    def on_stdin(self, _channel: GLib.IOChannel, _condition: GLib.IOCondition) -> bool:
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:  # the controlling process went away: stop
            self.loop.quit()
            return False
        self.pending += data.decode(errors="replace")
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                print(self.command(line.strip()), flush=True)
        return True

    def run(self) -> None:
        self.loop = GLib.MainLoop()
        if self.server.attach(None) == 0:
            print(f"error cannot listen on port {self.args.port}", flush=True)
            sys.exit(1)
        GLib.io_add_watch(
            GLib.IOChannel.unix_new(sys.stdin.fileno()),
            GLib.PRIORITY_DEFAULT,
            GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
            self.on_stdin,
        )
        print(f"ready {self.args.port}", flush=True)
        self.loop.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--paths", default="stream", help="comma-separated mount paths")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--bitrate", type=int, default=2048, help="kbit/s")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--auth", choices=["digest", "basic"], default="digest")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="", help="H.264 profile (default: x264's)")
    parser.add_argument("--key-int", type=int, default=0, help="frames between keyframes (default: fps)")
    parser.add_argument("--config-interval", type=int, default=1, help="rtph264pay config-interval")
    parser.add_argument("--repeat-headers", type=int, choices=[0, 1], default=1, help="x264: SPS/PPS in-band")
    args = parser.parse_args()
    Gst.init(None)
    Server(args).run()


if __name__ == "__main__":
    main()
