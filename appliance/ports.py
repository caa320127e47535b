"""The seams between the loop and the outside world, as Protocols (fakes need not inherit)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from appliance.domain import Face, Frame


class FrameSource(Protocol):
    """Frames from a camera, a stream, a video file or an image folder."""

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends (replay) or is closed (live)."""
        ...

    def close(self) -> None:
        """Release the device or file. Idempotent."""
        ...

    def interrupt(self) -> None:
        """End ``frames()`` soon, from another thread, without waiting for a read in progress."""
        ...


class FaceDetector(Protocol):
    """Finds faces and their five landmarks in an RGB image."""

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces at least the configured minimum size, best score first."""
        ...


class FaceEmbedder(Protocol):
    """Maps aligned face chips to unit-length embeddings."""

    model_id: str
    """Identifies the model that made an embedding; templates of another model never compare."""

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """Align each face from its landmarks and embed it: (len(faces), D) float32, unit L2 norm."""
        ...


class DoorLock(Protocol):
    """The door strike. Locked is the safe state."""

    def lock(self) -> None:
        """Lock (de-energise or energise, as wired). Idempotent."""
        ...

    def unlock(self) -> None:
        """Unlock until `lock` is called."""
        ...

    @property
    def is_locked(self) -> bool:
        """True while the door is locked."""
        ...

    def close(self) -> None:
        """Lock and release the pins. Idempotent."""
        ...


class Clock(Protocol):
    """Monotonic time in seconds, injectable for tests."""

    def __call__(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...
