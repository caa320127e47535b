"""A small face picture for each grant and deny, kept for [web] pictures_days, deleted with the user.

The door process writes them (it has the frame); the admin page shows and deletes them. They live in
`pictures/` next to the gallery (the state directory), one JPEG per decision, mode 0600, named by the
wall-clock time of the decision and its kind (`1764675780.123-grant.jpg`). An event is matched to the
picture of its kind taken within MATCH_S of it: the door's event writer stamps the event at the same
instant (grants and denies of one door are seconds apart: cooldowns).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from appliance.domain import Face

log = logging.getLogger(__name__)

PICTURE_PX = 160
"""Longer side of a stored picture, pixels: enough to see who it was, small on disk (about 13 KB)."""
MARGIN = 0.25
"""Extra room around the face box, as a fraction of its size on each side."""
MATCH_S = 2.0
"""Greatest time between an event and its picture, seconds."""
PRUNE_EVERY_S = 3600.0
"""The door process deletes pictures past their keeping time at most this often."""
_NAME = re.compile(r"^(\d+(?:\.\d+)?)-(grant|deny)\.jpg$")


def pictures_dir(gallery_path: Path | str) -> Path:
    """The folder of the pictures of the gallery at `gallery_path`."""
    return Path(gallery_path).parent / "pictures"


def face_picture(image: np.ndarray, face: Face) -> np.ndarray:
    """The face with some margin, cut from an RGB frame and scaled to at most PICTURE_PX (RGB)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = face.box
    mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
    crop = image[top:bottom, left:right]
    scale = PICTURE_PX / max(crop.shape[:2])
    if scale < 1:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return crop


class PictureStore:
    """The pictures folder of one gallery.

    Args:
        folder: the pictures folder (pictures_dir); created (0700) on the first save.
        keep_days: days a picture is kept.
        clock: wall clock, epoch seconds.
    """

    def __init__(self, folder: Path, keep_days: float, clock: Callable[[], float] = time.time):
        self.folder, self.keep_days, self._clock = folder, keep_days, clock
        self._pruned_at = float("-inf")

    def save(self, kind: str, image: np.ndarray, face: Face, t: float | None = None) -> Path | None:
        """Store the picture of a `kind` ("grant" or "deny") decision; None, logged, if it cannot be
        written (a full disk must not stop the door)."""
        t = self._clock() if t is None else t
        try:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(face_picture(image, face), cv2.COLOR_RGB2BGR))
            if not ok:
                raise OSError("JPEG encoding failed")
            self.folder.mkdir(mode=0o700, exist_ok=True)
            path = self.folder / f"{t:.3f}-{kind}.jpg"
            write_atomic(path, jpeg.tobytes())
        except (OSError, cv2.error) as exc:
            log.warning("face picture of a %s not stored: %s", kind, exc)
            return None
        if t - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = t
            self.prune()
        return path

    def _pictures(self) -> list[tuple[float, str, Path]]:
        """(time, kind, path) of every picture, oldest first."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            m = _NAME.match(name)
            if m:
                found.append((float(m.group(1)), m.group(2), self.folder / name))
        return sorted(found)

    def prune(self) -> int:
        """Delete pictures older than keep_days; returns how many."""
        before = self._clock() - self.keep_days * 86400
        n = 0
        for t, _, path in self._pictures():
            if t >= before:
                break
            path.unlink(missing_ok=True)
            n += 1
        return n

    def find(self, events: Iterable[tuple[int, str, float]]) -> dict[int, Path]:
        """Event id -> its picture, for (id, kind, time) events; those without one are left out."""
        pictures = self._pictures()
        out = {}
        for event_id, kind, t in events:
            near = [(abs(pt - t), path) for pt, pk, path in pictures if pk == kind and abs(pt - t) <= MATCH_S]
            if near:
                out[event_id] = min(near)[1]
        return out

    def delete(self, events: Iterable[tuple[int, str, float]]) -> int:
        """Delete the pictures of these (id, kind, time) events; returns how many."""
        found = self.find(events)
        for path in found.values():
            path.unlink(missing_ok=True)
        return len(found)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) through a temporary file and a rename: a reader sees the old
    file or the new one, whole, never a part (pictures, the live view's frame)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
