"""Live view, time to first frame: offer posted in Chromium → first frame decoded, through the whole stack.

Run: ``python -m bench.live_view [--trials 20] [--fps 25] [--width 1280 --height 720]``

Everything is real and on this machine: Mosquitto, central (uvicorn in a thread of this process), an edge agent
(``python -m edge``, its own process) with one camera served by GStreamer's RTSP server (H.264, one keyframe a
second, RTSP over TCP), and headless Chromium (Playwright) running the dashboard's own player
(``live_player.js``) on the camera page. The player stamps the live box with ``data-offer-to-frame-ms`` (the
offer POSTed → first frame presented, ``requestVideoFrameCallback``) and ``data-answer-ms`` (the POST → the
node's SDP answer back through central and MQTT).

Two cases, each ``--trials`` times:

* **cold**: nobody is watching; the node opens the camera's RTSP stream for this viewer (``live.linger_s: 0``,
  so each view starts from nothing);
* **warm**: another viewer is already watching; this one joins the running pull and waits for the next keyframe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import psutil
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from central.auth.bootstrap import ensure_user
from central.auth.roles import Role
from central.config import CentralConfig, CommandSettings
from central.store.db import Database
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, CentralServer
from tests.support.broker import Broker
from tests.support.rtsp_server import RtspServer
from tests.support.stack import EdgeProcess, rtsp_camera_edge, wait_camera_online

NODE, SITE, CAMERA = "bench-node", "bench", "cam-bench"
PASSWORD = "bench-password-1"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def _signed_in(browser: Browser, base_url: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(base_url + "/login")
    await page.fill("#username", "bench")
    await page.fill("#password", PASSWORD)
    await page.click("form.form button[type=submit]")
    await page.wait_for_url(base_url + "/")
    return context, page


async def _one_view(page: Page, base_url: str) -> dict[str, float]:
    await page.goto(f"{base_url}/cameras/{NODE}/{CAMERA}")
    await page.wait_for_selector('#liveview[data-live="playing"]', timeout=20_000)
    box = page.locator("#liveview")
    result = {
        "offer_to_frame_ms": float(await box.get_attribute("data-offer-to-frame-ms") or "nan"),
        "answer_ms": float(await box.get_attribute("data-answer-ms") or "nan"),
        "click_to_frame_ms": float(await box.get_attribute("data-first-frame-ms") or "nan"),
    }
    await page.goto("about:blank")  # pagehide: the player DELETEs its session
    return result


def _summary(name: str, views: list[dict[str, float]]) -> dict[str, Any]:
    ttff = [v["offer_to_frame_ms"] for v in views]
    answer = [v["answer_ms"] for v in views]
    out = {
        "case": name,
        "trials": len(views),
        "ttff_p50_ms": round(statistics.median(ttff)),
        "ttff_p95_ms": round(_pct(ttff, 95)),
        "ttff_max_ms": round(max(ttff)),
        "answer_p50_ms": round(statistics.median(answer)),
        "answer_p95_ms": round(_pct(answer, 95)),
        "click_to_frame_p50_ms": round(statistics.median(v["click_to_frame_ms"] for v in views)),
    }
    print(
        f"{name:>5}: time to first frame p50 {out['ttff_p50_ms']} ms, p95 {out['ttff_p95_ms']} ms, "
        f"max {out['ttff_max_ms']} ms; SDP answer back p50 {out['answer_p50_ms']} ms, p95 {out['answer_p95_ms']} ms "
        f"({len(views)} views)",
        flush=True,
    )
    return out


async def run(trials: int, width: int, height: int, fps: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="varta-bench-live-") as tmp:
        root = Path(tmp)
        broker = Broker(workdir=root / "mosquitto").start()
        rtsp = RtspServer(width=width, height=height, fps=fps, bitrate_kbps=2048).start()  # 1 keyframe a second
        config = CentralConfig(
            instance_id="central-bench",
            database_url=f"sqlite+aiosqlite:///{root}/central.db",
            data_dir=root,
            mqtt=broker.settings(session_expiry_s=3600).model_dump(),
            commands=CommandSettings(signing_key_file=root / "signing.key"),
            ingest={"batch_wait_s": 0.01},
        )
        central = CentralServer(config)
        central.start()
        db = Database(config.database_url)
        edge: EdgeProcess | None = None
        try:
            await ensure_user(db, "bench", PASSWORD, Role.DISPATCHER)
            edge = await rtsp_camera_edge(
                root / "edge",
                broker,
                root / "signing.key",
                node_id=NODE,
                site=SITE,
                device_id=CAMERA,
                name="Bench camera",
                stream_uri=rtsp.url(),
                live={"linger_s": 0},
                health_interval_s=10.0,
            )
            edge.start()
            await wait_camera_online(db, NODE, CAMERA, 60.0, edge)
            results = []
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                context, page = await _signed_in(browser, central.base_url)
                await _one_view(page, central.base_url)  # warm-up: Chromium's first WebRTC set-up, caches
                cold = []
                for _ in range(trials):
                    await asyncio.sleep(1.5)  # linger 0: the pull of the previous view has stopped
                    cold.append(await _one_view(page, central.base_url))
                results.append(_summary("cold", cold))
                anchor_context, anchor = await _signed_in(browser, central.base_url)
                await anchor.goto(f"{central.base_url}/cameras/{NODE}/{CAMERA}")
                await anchor.wait_for_selector('#liveview[data-live="playing"]', timeout=20_000)
                warm = []
                for _ in range(trials):
                    await asyncio.sleep(0.3)
                    warm.append(await _one_view(page, central.base_url))
                results.append(_summary("warm", warm))
                await anchor_context.close()
                await context.close()
                await browser.close()
            return results
        finally:
            if edge is not None:
                edge.stop()
            await db.dispose()
            central.stop()
            rtsp.stop()
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {psutil.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"camera {args.width}x{args.height} @ {args.fps} fps, keyframe every second",
        flush=True,
    )
    results = asyncio.run(run(args.trials, args.width, args.height, args.fps))
    print(json.dumps(results))
    target = all(r["ttff_p50_ms"] <= 1000 and r["ttff_p95_ms"] <= 1500 for r in results)
    print("target (p50 <= 1.0 s, p95 <= 1.5 s):", "met" if target else "NOT met")


if __name__ == "__main__":
    main()
