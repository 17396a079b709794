"""Cheap image checks over small grayscale samples of a camera's picture: black/blank, frozen, tamper.

Pure functions plus one small stateful :class:`FrameAnalyzer` (previous sample, how long the picture has stood
still, the running sharpness baseline). Frames are first shrunk to ``SAMPLE_WIDTH`` pixels wide (a 1080p frame →
320×180), so one check costs well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from varta.contract import CameraReason, CameraThresholds

Gray = npt.NDArray[np.uint8]

SAMPLE_WIDTH = 320
GRID = 4  # the picture is split into GRID × GRID cells for the coverage check
COVERAGE_LOSS_SHARE = 0.5  # tamper when at least this share of cells lost their detail
BASELINE_MIN_SAMPLES = 3  # samples needed before the sharpness baseline is trusted
BASELINE_ALPHA = 0.1  # weight of a new healthy sample in the running baseline
MIN_CELL_SHARPNESS = 5.0  # cells flatter than this in the baseline (sky, wall) are not judged
MOTION_WIDTH = 80  # motion is judged on an even smaller copy: codec noise averages out, moving objects stay
CODEC_NOISE = 4  # per-pixel luma differences up to this are re-encoding noise, not change


def to_sample(frame: npt.NDArray[Any], width: int = SAMPLE_WIDTH) -> Gray:
    """A small grayscale copy of a BGR (or already gray) frame, *width* pixels wide (never enlarged)."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape[:2]
    if w > width:
        gray = cv2.resize(gray, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(gray, dtype=np.uint8)


def luma_stats(sample: Gray) -> tuple[float, float]:
    """Mean luma and its standard deviation (0–255)."""
    mean, std = cv2.meanStdDev(sample)
    return float(mean[0][0]), float(std[0][0])


def mean_abs_diff(a: Gray, b: Gray) -> float:
    """Mean absolute pixel difference of two samples; ``inf`` when their sizes differ."""
    if a.shape != b.shape:
        return float("inf")
    return float(cv2.absdiff(a, b).mean())


def motion(a: Gray, b: Gray) -> float:
    """Mean absolute luma change beyond codec noise (0 for a stuck picture); ``inf`` if the sizes differ.

    Both are shrunk to ``MOTION_WIDTH`` pixels wide and per-pixel differences up to ``CODEC_NOISE`` are ignored: a
    frozen camera's encoder still re-encodes the same picture a little differently at every keyframe (measured
    here: 1–2 luma levels on average at 320 px wide, 0.13–0.2 with this measure), while a car crossing the street
    changes it by several levels.
    """
    if a.shape != b.shape:
        return float("inf")
    h, w = a.shape[:2]
    small_a: npt.NDArray[np.integer[Any]] = a
    small_b: npt.NDArray[np.integer[Any]] = b
    if w > MOTION_WIDTH:
        size = (MOTION_WIDTH, max(1, round(h * MOTION_WIDTH / w)))
        small_a = np.asarray(cv2.resize(a, size, interpolation=cv2.INTER_AREA))
        small_b = np.asarray(cv2.resize(b, size, interpolation=cv2.INTER_AREA))
    diff = np.asarray(cv2.absdiff(small_a, small_b)).astype(np.int16)
    return float(np.maximum(diff - CODEC_NOISE, 0).mean())


def sharpness(sample: Gray) -> float:
    """Variance of the Laplacian: high for a sharp picture, near 0 for a blurred or covered one."""
    return float(cv2.Laplacian(sample, cv2.CV_64F).var())


def cell_sharpness(sample: Gray, grid: int = GRID) -> npt.NDArray[np.float64]:
    """Sharpness of each of *grid* × *grid* cells (row-major)."""
    return _cell_variance(np.asarray(cv2.Laplacian(sample, cv2.CV_64F), dtype=np.float64), grid)


def _cell_variance(lap: npt.NDArray[np.float64], grid: int) -> npt.NDArray[np.float64]:
    h, w = lap.shape
    out = np.empty(grid * grid, dtype=np.float64)
    for r in range(grid):
        for c in range(grid):
            cell = lap[r * h // grid : (r + 1) * h // grid, c * w // grid : (c + 1) * w // grid]
            out[r * grid + c] = cell.var() if cell.size else 0.0
    return out


@dataclass(frozen=True)
class FrameStats:
    """Measurements of one sample."""

    mean_luma: float
    stddev: float
    sharpness: float
    diff: float | None  # motion() since the previous sample; None for the first


@dataclass(frozen=True)
class Verdict:
    """What one sample says about the picture: a reason (None = fine) and a human-readable detail."""

    reason: CameraReason | None
    detail: str
    stats: FrameStats


class FrameAnalyzer:
    """Judges a camera's samples in order: black/blank, tamper (sharpness or coverage lost), frozen."""

    def __init__(self, thresholds: CameraThresholds) -> None:
        self.thresholds = thresholds
        self.reset()

    def reset(self) -> None:
        """Forget the previous sample and the learnt baseline (new camera address, new scene)."""
        self.new_stream()
        self._baseline: float | None = None
        self._cell_baseline: npt.NDArray[np.float64] | None = None
        self._baseline_samples = 0

    def new_stream(self) -> None:
        """Forget the previous sample (after a reconnect), keep the sharpness baseline."""
        self._previous: Gray | None = None
        self._previous_at = 0.0
        self._still_since: float | None = None

    @property
    def baseline(self) -> float | None:
        """The learnt sharpness of the healthy picture (None until enough samples)."""
        return self._baseline if self._baseline_samples >= BASELINE_MIN_SAMPLES else None

    def analyse(self, sample: Gray, at: float) -> Verdict:
        """Judge *sample* taken at monotonic time *at* (seconds)."""
        t = self.thresholds
        mean, std = luma_stats(sample)
        lap = np.asarray(cv2.Laplacian(sample, cv2.CV_64F), dtype=np.float64)  # once for both measures
        sharp = float(lap.var())
        cells = _cell_variance(lap, GRID)
        diff = motion(sample, self._previous) if self._previous is not None else None
        self._previous = sample
        stats = FrameStats(mean_luma=mean, stddev=std, sharpness=sharp, diff=diff)

        if diff is not None and diff <= t.frozen_max_diff:  # unchanged since (at least) the previous sample
            self._still_since = self._still_since if self._still_since is not None else self._previous_at
        else:
            self._still_since = None
        self._previous_at = at

        if mean <= t.black_max_luma:
            return Verdict(CameraReason.BLACK, f"black picture (mean luma {mean:.1f})", stats)
        if std <= t.blank_max_stddev:
            return Verdict(CameraReason.BLACK, f"blank picture (luma std-dev {std:.1f})", stats)

        tamper = self._tamper(sharp, cells)
        if tamper:
            return Verdict(CameraReason.TAMPER, tamper, stats)
        self._learn(sharp, cells)

        if self._still_since is not None and at - self._still_since >= t.frozen_after_s:
            return Verdict(CameraReason.FROZEN, f"picture unchanged for {at - self._still_since:.0f} s", stats)
        return Verdict(None, "", stats)

    def _tamper(self, sharp: float, cells: npt.NDArray[np.float64]) -> str:
        base = self.baseline
        if base is None or self._cell_baseline is None:
            return ""
        ratio = self.thresholds.tamper_sharpness_ratio
        if base > MIN_CELL_SHARPNESS and sharp < ratio * base:
            return f"sharpness fell to {sharp / base:.0%} of normal"
        judged = self._cell_baseline > MIN_CELL_SHARPNESS
        if judged.sum() >= 4:
            lost = (cells < ratio * self._cell_baseline) & judged
            share = float(lost.sum()) / float(judged.sum())
            if share >= COVERAGE_LOSS_SHARE:
                return f"{share:.0%} of the picture lost its detail (covered?)"
        return ""

    def _learn(self, sharp: float, cells: npt.NDArray[np.float64]) -> None:
        if self._baseline is None or self._cell_baseline is None:
            self._baseline, self._cell_baseline = sharp, cells.copy()
        else:
            a = 1.0 / (self._baseline_samples + 1) if self._baseline_samples < BASELINE_MIN_SAMPLES else BASELINE_ALPHA
            self._baseline += a * (sharp - self._baseline)
            self._cell_baseline += a * (cells - self._cell_baseline)
        self._baseline_samples += 1
