"""Face tracking between video frames: full detection now and then, a cheap re-check in between.

On a door camera the same face is in view for many frames in a row. Running MTCNN's whole image
pyramid on every frame finds it again from scratch; `TrackingDetector` instead runs the full search
every `redetect_every` frames and, in between, only RNet and ONet where faces were a frame ago
(`MtcnnDetector.detect_near`), which follows a face that moves by a fraction of its size per frame.
If any tracked face is lost, that frame gets a full detection at once. A new face that walks into
view while another is tracked is found at the next full detection, at most `redetect_every - 1`
frames later (4 frames, about a quarter of a second at 15 fps, with the default 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from appliance.domain import Face
from appliance.errors import ConfigError


class LocalDetector(Protocol):
    """A detector that can also look only near given boxes (appliance.vision.detector.MtcnnDetector)."""

    def detect(self, image: np.ndarray) -> list[Face]: ...

    def detect_near(
        self, image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]
    ) -> list[Face]: ...


class TrackingDetector:
    """FaceDetector for consecutive frames of one camera (not for unrelated photos).

    Args:
        detector: the detector doing the work.
        redetect_every: a full detection at least every this many frames; 1 = every frame (no
            tracking).
    """

    def __init__(self, detector: LocalDetector, redetect_every: int = 5):
        if redetect_every < 1:
            raise ConfigError(f"detector.redetect_every = {redetect_every}: must be 1 or more.")
        self.detector = detector
        self.redetect_every = redetect_every
        self.full_detections = 0  # how many frames got the full search (for tests and benchmarks)
        self._faces: list[Face] = []
        self._since_full = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        """The faces in this frame, best score first (as MtcnnDetector.detect)."""
        if self._faces and self._since_full < self.redetect_every - 1:
            faces = self.detector.detect_near(image, [f.box for f in self._faces])
            if len(faces) >= len(self._faces):  # every tracked face is still there
                self._faces = faces
                self._since_full += 1
                return faces
        self._faces = self.detector.detect(image)
        self._since_full = 0
        self.full_detections += 1
        return self._faces
