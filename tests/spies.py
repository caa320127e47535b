"""A wrapper that records which search a real detector was asked for (tests share it)."""

from __future__ import annotations


class CountingDetector:
    """The real detector, recording each call: "full" (detect) or "near" (detect_near)."""

    def __init__(self, detector):
        self.detector = detector
        self.calls: list[str] = []

    def detect(self, image):
        self.calls.append("full")
        return self.detector.detect(image)

    def detect_near(self, image, boxes):
        self.calls.append("near")
        return self.detector.detect_near(image, boxes)
