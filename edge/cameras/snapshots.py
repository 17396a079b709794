"""Camera thumbnails: scale a picture down to a small JPEG, wrap it in a contract :class:`Snapshot`, draw test cards.

OpenCV is imported inside the functions (they run in worker threads), so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import zlib
from datetime import datetime
from typing import Any, Final, Literal

from varta.contract import Snapshot

#: Largest picture accepted from a camera (bytes); beyond this it is refused before decoding.
MAX_SOURCE_BYTES: Final = 12 * 1024 * 1024
#: Largest JPEG that fits a Snapshot (``data`` is base64, at most 700,000 characters).
MAX_JPEG_BYTES: Final = 500_000
#: Largest picture decoded (pixels): a tiny file claiming a huge size must not allocate gigabytes on a Pi.
MAX_SOURCE_PIXELS: Final = 40_000_000
_SOF_MARKERS: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class SnapshotError(ValueError):
    """A picture that cannot be turned into a thumbnail (not an image, too big)."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, without decoding it; :class:`SnapshotError` if not a JPEG."""
    if not data.startswith(b"\xff\xd8"):
        raise SnapshotError("not a JPEG")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise SnapshotError("damaged JPEG header")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            raise SnapshotError("damaged JPEG header")
        if marker in _SOF_MARKERS:
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            if width < 1 or height < 1:
                raise SnapshotError("JPEG without a size")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise SnapshotError("no JPEG frame header")


def thumbnail(image: bytes | Any, max_width: int = 640, quality: int = 80) -> tuple[bytes, int, int]:
    """A JPEG at most *max_width* pixels wide from JPEG bytes or a BGR frame; returns (jpeg, w, h).

    Blocking (OpenCV): call it in a thread.
    """
    import cv2
    import numpy as np

    if isinstance(image, bytes | bytearray):
        if len(image) > MAX_SOURCE_BYTES:
            raise SnapshotError(f"picture of {len(image)} bytes is too large")
        source_w, source_h = jpeg_size(bytes(image))
        if source_w * source_h > MAX_SOURCE_PIXELS:
            raise SnapshotError(f"picture of {source_w}×{source_h} pixels is too large")
        # Let libjpeg scale down while decoding (much cheaper than decoding full size, then resizing).
        flag = cv2.IMREAD_COLOR
        for factor, reduced in (
            (8, cv2.IMREAD_REDUCED_COLOR_8),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
        ):
            if source_w // factor >= max_width:
                flag = reduced
                break
        frame = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), flag)
        if frame is None:
            raise SnapshotError("not a picture OpenCV can decode")
    else:
        frame = image
    height, width = frame.shape[:2]
    if width < 1 or height < 1:
        raise SnapshotError("empty picture")
    if width > max_width:
        height = max(1, round(height * max_width / width))
        width = max_width
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    for q in (quality, 60, 40, 25):
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise SnapshotError("JPEG encoding failed")
        jpeg = encoded.tobytes()
        if len(jpeg) <= MAX_JPEG_BYTES:
            return jpeg, width, height
    raise SnapshotError("thumbnail too large even at low quality")


def snapshot_message(
    envelope: dict[str, Any],
    device_id: str,
    jpeg: bytes,
    width: int,
    height: int,
    *,
    taken_at: datetime,
    source: Literal["onvif", "rtsp"],
    purpose: Literal["periodic", "on_demand"],
) -> Snapshot:
    """The contract message for a thumbnail (``envelope`` from ``agent.envelope()``)."""
    return Snapshot(
        **envelope,
        device_id=device_id,
        taken_at=taken_at,
        source=source,
        purpose=purpose,
        width=width,
        height=height,
        data=base64.b64encode(jpeg).decode(),
    )


def test_card(title: str, subtitle: str, *, width: int = 640, height: int = 360, seed: str = "") -> bytes:
    """A colourful test picture with *title* and *subtitle* (the demo's simulated cameras); returns JPEG bytes.

    The colours follow *seed* (default: the title), so every camera has its own.

    Blocking (OpenCV): call it in a thread.
    """
    import cv2
    import numpy as np

    hue = zlib.crc32((seed or title).encode()) % 180
    hsv = np.zeros((height, width, 3), dtype=np.uint8)
    hsv[..., 0] = (hue + np.arange(width, dtype=np.uint16)[None, :] * 30 // width) % 180
    hsv[..., 1] = 140
    hsv[..., 2] = (90 + np.arange(height, dtype=np.uint16)[:, None] * 120 // height).astype(np.uint8)
    frame = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    bars = [(192, 192, 192), (0, 192, 192), (192, 192, 0), (0, 192, 0), (192, 0, 192), (0, 0, 192), (192, 0, 0)]
    bar_w = width // len(bars)
    for i, colour in enumerate(bars):
        cv2.rectangle(frame, (i * bar_w, height - 48), ((i + 1) * bar_w, height - 24), colour, -1)
    cv2.rectangle(frame, (0, 0), (width, 64), (0, 0, 0), -1)
    cv2.putText(frame, title[:40], (16, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(frame, subtitle[:60], (16, height - 64), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 75])
    if not ok:
        raise SnapshotError("JPEG encoding failed")
    return bytes(encoded.tobytes())
