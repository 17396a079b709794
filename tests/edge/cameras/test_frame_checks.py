"""The cheap picture checks: black/blank, frozen, tamper (loss of sharpness or coverage)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.cameras.frame_checks import (
    SAMPLE_WIDTH,
    FrameAnalyzer,
    cell_sharpness,
    luma_stats,
    mean_abs_diff,
    motion,
    sharpness,
    to_sample,
)
from varta.contract import CameraReason, CameraThresholds

THRESHOLDS = CameraThresholds(frozen_after_s=6)


def street(seed: int = 0, width: int = 1920, height: int = 1080) -> np.ndarray:
    """A detailed, mid-grey colour picture (like a street by day), different for each seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, size=(height // 8, width // 8, 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    for i in range(0, width, 60):  # hard edges everywhere, like buildings and signs
        cv2.line(img, (i, 0), (i, height - 1), (255, 255, 255), 3)
    return img


def blurred(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=12)


def test_samples_are_small_grayscale_copies() -> None:
    sample = to_sample(street())
    assert sample.shape == (180, SAMPLE_WIDTH)
    assert sample.dtype == np.uint8
    small = np.full((90, 160), 7, np.uint8)
    assert to_sample(small).shape == (90, 160)  # never enlarged


def test_measures_luma_difference_and_sharpness() -> None:
    black = np.zeros((180, 320), np.uint8)
    mean, std = luma_stats(black)
    assert mean == 0 and std == 0
    sample = to_sample(street(1))
    assert luma_stats(sample)[1] > 20
    assert mean_abs_diff(sample, sample) == 0
    assert mean_abs_diff(sample, to_sample(street(2))) > 10
    assert mean_abs_diff(sample, black[:90]) == float("inf")
    assert sharpness(sample) > 10 * sharpness(to_sample(blurred(street(1))))
    assert cell_sharpness(sample).shape == (16,)


def test_a_changing_detailed_picture_is_fine() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    for i in range(10):
        verdict = analyzer.analyse(to_sample(street(i)), at=float(i))
        assert verdict.reason is None, verdict.detail
    assert analyzer.baseline is not None


def test_black_and_blank_pictures_are_black() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    assert analyzer.analyse(np.full((180, 320), 10, np.uint8), at=0).reason is CameraReason.BLACK
    verdict = analyzer.analyse(np.full((180, 320), 128, np.uint8), at=1)  # evenly grey: blank, e.g. a lens cap
    assert verdict.reason is CameraReason.BLACK
    assert "blank" in verdict.detail


def test_an_unchanged_picture_is_frozen_only_after_frozen_after_s() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    still = to_sample(street(3))
    reasons = [analyzer.analyse(still, at=float(t)).reason for t in range(0, 8, 2)]  # t = 0, 2, 4, 6
    assert reasons == [None, None, None, CameraReason.FROZEN]
    assert analyzer.analyse(to_sample(street(4)), at=8).reason is None  # moves again: fine at once


def test_encoder_noise_on_a_stuck_picture_still_counts_as_frozen() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    base = street(5).astype(np.int16)
    rng = np.random.default_rng(9)
    verdicts = []
    for t in range(0, 8, 2):
        noisy = np.clip(base + rng.integers(-2, 3, base.shape), 0, 255).astype(np.uint8)  # re-encoding noise ±2
        verdicts.append(analyzer.analyse(to_sample(noisy), at=float(t)))
    assert all(v.stats.diff is None or v.stats.diff <= THRESHOLDS.frozen_max_diff for v in verdicts)
    assert verdicts[-1].reason is CameraReason.FROZEN


def test_a_car_crossing_a_still_street_is_motion_not_frozen() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    scene = street(5)
    for t in range(0, 14, 2):
        frame = scene.copy()
        x = 100 + t * 60
        cv2.rectangle(frame, (x, 700), (x + 300, 850), (20, 20, 200), -1)  # a car, 2 % of the picture
        verdict = analyzer.analyse(to_sample(frame), at=float(t))
        assert verdict.reason is None
        assert verdict.stats.diff is None or verdict.stats.diff > THRESHOLDS.frozen_max_diff


def test_motion_ignores_codec_noise_but_not_change() -> None:
    a = to_sample(street(1))
    noisy = np.clip(a.astype(np.int16) + np.random.default_rng(1).integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    assert motion(a, noisy) < 0.1
    assert motion(a, to_sample(street(2))) > 5
    assert motion(a, a[:90]) == float("inf")


def test_sudden_blur_is_tamper() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    for i in range(5):
        assert analyzer.analyse(to_sample(street(i)), at=float(i)).reason is None
    verdict = analyzer.analyse(to_sample(blurred(street(6))), at=5)
    assert verdict.reason is CameraReason.TAMPER
    assert "sharpness" in verdict.detail


def test_covering_most_of_the_lens_is_tamper_even_if_the_rest_stays_sharp() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    for i in range(5):
        analyzer.analyse(to_sample(street(i)), at=float(i))
    covered = street(7)
    covered[:, : 1920 * 3 // 4] = (90, 120, 100)  # paint over three quarters of the picture
    verdict = analyzer.analyse(to_sample(covered), at=5)
    assert verdict.reason is CameraReason.TAMPER
    assert "detail" in verdict.detail


def test_blur_before_a_baseline_exists_is_not_tamper() -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    assert analyzer.analyse(to_sample(blurred(street(1))), at=0).reason is None


def test_tamper_uses_the_configured_ratio() -> None:
    lenient = FrameAnalyzer(CameraThresholds(tamper_sharpness_ratio=0.01))
    for i in range(5):
        lenient.analyse(to_sample(street(i)), at=float(i))
    mild = cv2.GaussianBlur(street(8), (0, 0), sigmaX=1.2)
    assert lenient.analyse(to_sample(mild), at=5).reason is None
    strict = FrameAnalyzer(CameraThresholds(tamper_sharpness_ratio=0.9))
    for i in range(5):
        strict.analyse(to_sample(street(i)), at=float(i))
    assert strict.analyse(to_sample(mild), at=5).reason is CameraReason.TAMPER


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1080, 1920)])
def test_odd_sizes_never_crash(shape: tuple[int, int]) -> None:
    analyzer = FrameAnalyzer(THRESHOLDS)
    img = np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)
    for t in range(3):
        analyzer.analyse(to_sample(img), at=float(t))
