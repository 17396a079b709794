"""The simulator's snapshot: a JPEG it draws itself with OpenCV (time, PTZ position, a moving bar)."""

from __future__ import annotations

import datetime as dt

import cv2
import numpy as np


def render_jpeg(size: tuple[int, int], now: dt.datetime, ptz: tuple[float, float, float], label: str) -> bytes:
    """Draw and JPEG-encode one picture (blocking: call it in a thread)."""
    width, height = size
    ramp = np.linspace(40, 200, width, dtype=np.uint8)
    flat = np.full((height, width), 90, np.uint8)
    image = np.dstack([np.tile(ramp, (height, 1)), flat, np.tile(ramp[::-1], (height, 1))])
    bar = int((now.timestamp() * 50) % width)
    cv2.rectangle(image, (bar, 0), (min(width - 1, bar + 20), height - 1), (255, 255, 255), -1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, label[:40], (10, 30), font, 0.8, (255, 255, 255), 2)
    cv2.putText(image, now.strftime("%Y-%m-%d %H:%M:%S UTC"), (10, 60), font, 0.6, (255, 255, 255), 1)
    cv2.putText(image, "PTZ %.2f %.2f %.2f" % ptz, (10, 90), font, 0.6, (255, 255, 255), 1)  # noqa: UP031
    ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
    if not ok:
        raise RuntimeError("OpenCV could not encode the snapshot")
    return bytes(encoded.tobytes())
