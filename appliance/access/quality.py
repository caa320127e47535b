"""Quality gates for a face before it is matched or enrolled. Pure numpy.

A door camera sees people walking up: far away, turning their head, blurred by motion, backlit. Matching
such faces gives low, noisy scores, so they are measured here and skipped instead of being compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.domain import Face, yaw_degrees

_SAMPLE = 64  # the face crop is resampled to this many pixels a side before measuring


@dataclass(frozen=True)
class QualityLimits:
    """Thresholds a face must meet.

    Attributes:
        min_face_px: smallest box side in pixels.
        min_sharpness: variance of the Laplacian of the 64x64 grey crop (motion blur lowers it).
        min_brightness, max_brightness: mean grey level of the crop, 0-255.
        max_yaw_deg: head turn left/right estimated from the landmarks, degrees.
        max_roll_deg: head tilt (angle of the eye line), degrees.
    """

    min_face_px: float = 80.0
    min_sharpness: float = 20.0
    min_brightness: float = 40.0
    max_brightness: float = 220.0
    max_yaw_deg: float = 30.0
    max_roll_deg: float = 25.0


@dataclass(frozen=True)
class FaceQuality:
    """What was measured on one face; `reason` is None when every limit is met."""

    size_px: float
    sharpness: float
    brightness: float
    yaw_deg: float
    roll_deg: float
    reason: str | None

    @property
    def ok(self) -> bool:
        """True when the face passed every gate."""
        return self.reason is None


def roll_degrees(landmarks: np.ndarray) -> float:
    """Angle of the line from the left to the right eye, degrees (0 = level)."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def _grey_crop(image: np.ndarray, face: Face) -> np.ndarray:
    """The face box resampled (nearest neighbour) to _SAMPLE x _SAMPLE grey levels, float32."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = face.box
    xs = np.clip(np.linspace(x1, x2, _SAMPLE, endpoint=False), 0, w - 1).astype(np.intp)
    ys = np.clip(np.linspace(y1, y2, _SAMPLE, endpoint=False), 0, h - 1).astype(np.intp)
    crop = image[ys[:, None], xs[None, :]].astype(np.float32)
    return crop @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: high for sharp edges, low for blur."""
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    return float(lap.var())


def assess(image: np.ndarray, face: Face, limits: QualityLimits) -> FaceQuality:
    """Measure one face and name the first gate it fails, if any."""
    grey = _grey_crop(image, face)
    size = min(face.width, face.height)
    sharpness = laplacian_variance(grey)
    brightness = float(grey.mean())
    yaw = yaw_degrees(face.landmarks)
    roll = roll_degrees(face.landmarks)
    reason = None
    if size < limits.min_face_px:
        reason = "face too small"
    elif abs(roll) > limits.max_roll_deg:
        reason = "head tilted"
    elif abs(yaw) > limits.max_yaw_deg:
        reason = "head turned"
    elif brightness < limits.min_brightness:
        reason = "too dark"
    elif brightness > limits.max_brightness:
        reason = "too bright"
    elif sharpness < limits.min_sharpness:
        reason = "blurred"
    return FaceQuality(size, sharpness, brightness, yaw, roll, reason)


def pick_target(faces: list[Face], image_shape: tuple[int, ...], min_face_px: float) -> Face | None:
    """The face the door should consider: large and near the centre; faces under min_face_px are ignored.

    Ranked by box area divided by (1 + distance of the box centre from the image centre, as a fraction of
    the image diagonal), so a person standing at the door wins over a larger face passing at the edge only
    when they are of similar size.
    """
    h, w = image_shape[:2]
    diagonal = math.hypot(w, h)
    best, best_rank = None, -1.0
    for face in faces:
        if min(face.width, face.height) < min_face_px:
            continue
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        off_centre = math.hypot(cx - w / 2, cy - h / 2) / diagonal
        rank = face.width * face.height / (1.0 + 2.0 * off_centre)
        if rank > best_rank:
            best, best_rank = face, rank
    return best
