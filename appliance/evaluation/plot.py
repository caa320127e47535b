"""ROC curve as a PNG, drawn with OpenCV (the appliance has no matplotlib).

The FAR axis is logarithmic, since door thresholds live at FAR 1e-2 to 1e-4 where a linear axis
shows nothing. TAR is linear from 0 to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from appliance.errors import ApplianceError

WIDTH, HEIGHT = 800, 600
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 90, 30, 50, 70
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, LIGHT = (0, 0, 0), (120, 120, 120), (225, 225, 225)
CURVE = (180, 90, 20)  # BGR: a dark blue
MARKER = (30, 30, 200)  # BGR: red


def far_axis_range(far: np.ndarray, smallest_decade: int = -6) -> tuple[int, int]:
    """Decades (exponents of 10) spanned by the FAR axis, up to 10**0.

    The axis reaches down to the smallest non-zero FAR, floored to a decade, but always shows
    1e-3 (the door's operating region) and never goes below 10**smallest_decade.
    """
    positive = far[np.isfinite(far) & (far > 0)]
    low = math.floor(math.log10(positive.min())) if positive.size else -3
    return max(min(low, -3), smallest_decade), 0


def to_pixels(far: np.ndarray, tar: np.ndarray, decades: tuple[int, int]) -> np.ndarray:
    """Image (x, y) pixels of ROC points on a plot whose FAR axis spans 10**decades[0] to
    10**decades[1]; FAR outside that span (including 0) is clamped to the axis ends."""
    lo, hi = decades
    x0, x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    y0, y1 = HEIGHT - MARGIN_BOTTOM, MARGIN_TOP
    logf = np.log10(np.clip(np.asarray(far, dtype=np.float64), 10.0**lo, 10.0**hi))
    x = x0 + (logf - lo) / (hi - lo) * (x1 - x0)
    y = y0 + np.clip(tar, 0.0, 1.0) * (y1 - y0)
    return np.stack([x, y], axis=-1)


def _text_size(text: str, scale: float) -> tuple[int, int]:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    return w, h


def roc_png(
    far: Sequence[float] | np.ndarray,
    tar: Sequence[float] | np.ndarray,
    path: Path,
    title: str,
    points: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Draw TAR against FAR (log scale) and write a PNG.

    Args:
        far, tar: ROC points, as from `appliance.evaluation.metrics.roc`. Points with FAR 0 cannot sit on a
            log axis; they are drawn on its left edge. NaN points are skipped.
        path: output file; its folder must exist.
        title: drawn above the plot.
        points: optional labelled operating points {label: (far, tar)} marked on the curve.

    Returns:
        `path`. Raises ApplianceError if the file cannot be written.
    """
    far = np.asarray(far, dtype=np.float64).ravel()
    tar = np.asarray(tar, dtype=np.float64).ravel()
    if far.shape != tar.shape:
        raise ValueError(f"far and tar differ in length: {far.size} vs {tar.size}")
    lo, hi = far_axis_range(far)
    x0, x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    y0, y1 = HEIGHT - MARGIN_BOTTOM, MARGIN_TOP  # y0 is the bottom (TAR 0)

    def to_px(f: np.ndarray, t: np.ndarray) -> np.ndarray:
        return to_pixels(f, t, (lo, hi))

    img = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    # Grid and ticks: decades on FAR, tenths on TAR.
    for e in range(lo, hi + 1):
        x = int(round(x0 + (e - lo) / (hi - lo) * (x1 - x0)))
        cv2.line(img, (x, y0), (x, y1), LIGHT, 1)
        label = "1" if e == 0 else f"1e{e}"
        w, h = _text_size(label, 0.5)
        cv2.putText(img, label, (x - w // 2, y0 + h + 10), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    for k in range(11):
        y = int(round(y0 + k / 10 * (y1 - y0)))
        cv2.line(img, (x0, y), (x1, y), LIGHT, 1)
        if k % 2 == 0:
            label = f"{k / 10:.1f}"
            w, h = _text_size(label, 0.5)
            cv2.putText(img, label, (x0 - w - 8, y + h // 2), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y1), (x1, y0), BLACK, 1)

    # Axis labels; the vertical one is drawn on its own strip and rotated.
    xlabel = "False accept rate (FAR, log scale)"
    w, h = _text_size(xlabel, 0.6)
    cv2.putText(img, xlabel, ((x0 + x1 - w) // 2, HEIGHT - 18), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    ylabel = "True accept rate (TAR)"
    w, h = _text_size(ylabel, 0.6)
    strip = np.full((h + 10, w + 10, 3), 255, dtype=np.uint8)
    cv2.putText(strip, ylabel, (5, h + 3), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    top = max(0, (y0 + y1 - strip.shape[0]) // 2)
    img[top : top + strip.shape[0], 10 : 10 + strip.shape[1]] = strip[: HEIGHT - top]
    w, h = _text_size(title, 0.7)
    cv2.putText(img, title, (max(5, (WIDTH - w) // 2), MARGIN_TOP - 18), FONT, 0.7, BLACK, 2, cv2.LINE_AA)

    ok = np.isfinite(far) & np.isfinite(tar)
    if ok.any():
        order = np.argsort(far[ok], kind="stable")
        pts = to_px(far[ok][order], tar[ok][order])
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, CURVE, 2, cv2.LINE_AA)
    for label, (pf, pt) in (points or {}).items():
        if not (math.isfinite(pf) and math.isfinite(pt)):
            continue
        px, py = np.round(to_px(np.array(pf), np.array(pt))).astype(int)
        cv2.circle(img, (int(px), int(py)), 5, MARKER, -1, cv2.LINE_AA)
        cv2.putText(img, label, (int(px) + 8, int(py) + 16), FONT, 0.45, MARKER, 1, cv2.LINE_AA)

    path = Path(path)
    if not cv2.imwrite(str(path), img):
        raise ApplianceError(f"{path}: cannot write the ROC image; check the folder exists and is writable.")
    return path
