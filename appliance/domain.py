"""Value types shared by every layer.

Images are numpy arrays of shape (height, width, 3), dtype uint8, in RGB order. Coordinates are
pixels in that image, x to the right and y down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One image from a source.

    Attributes:
        image: RGB uint8 array (H, W, 3).
        index: 0-based position in the source.
        t: seconds since the start of the source (replay) or since the camera opened (live).
    """

    image: np.ndarray
    index: int
    t: float


@dataclass(frozen=True)
class Face:
    """A detected face.

    Attributes:
        box: (x1, y1, x2, y2) in pixels, float.
        score: detector confidence in [0, 1].
        landmarks: (5, 2) float32 array of (x, y): left eye, right eye, nose, left mouth corner,
            right mouth corner, where "left" is the image left (the subject's right).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]


class Verdict(StrEnum):
    """What the access policy concluded after a frame."""

    GRANT = "grant"
    DENY = "deny"
    WAIT = "wait"


class Templates(NamedTuple):
    """The templates that may match now, ready for `matching.best_matches`.

    Attributes:
        names: (M,) str array, the owner's name of each row.
        matrix: (M, D) float32, unit-length rows; (0, 0) when there are none.
    """

    names: np.ndarray
    matrix: np.ndarray


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Head turn estimated from how far the nose sits from the eyes' midpoint, degrees.

    Model: the nose tip stands in front of the eye plane by about half the eye distance, so turning the
    head by yaw moves it sideways by (e/2)·sin(yaw) while the eye distance shrinks to e·cos(yaw); the
    offset divided by half the projected eye distance is tan(yaw). An estimate good enough to reject turned
    heads, not a pose measurement. Positive means the nose is to the image right.
    """
    left, right, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vec = right - left
    half = float(np.linalg.norm(eye_vec)) / 2.0
    if half < 1e-6:
        return 90.0
    offset = float(np.dot(nose - (left + right) / 2.0, eye_vec / (2.0 * half)))
    return math.degrees(math.atan2(offset, half))
