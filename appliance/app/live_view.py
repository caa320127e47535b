"""The door's latest frame for the admin page's live view, shared only while someone watches.

The web process (no camera, no GPIO) and the door process (no network) share a folder, `live/` next
to the gallery (the state directory). While the admin page's live view is open, the web process
touches `live/watching` on every page load; while that file is at most WATCH_FRESH_S old, the door
writes the frame it just processed, at most MAX_FPS times a second, as `live/live.jpg` with the faces
found drawn on it, and `live/live.json` beside it (faces, best match and score, door state, enrolment
progress). Both are replaced atomically (written to a temporary file, then renamed), so the page never
reads half a frame. Nobody watching: the door only looks at the file's time twice a second, and
deletes the last frame when the watcher leaves (and any left over when it starts), so no face stays
on disk beyond the watching.

The drawing and JPEG encoding run on a thread of their own, so the door loop's cost is a copy of the
frame at most MAX_FPS times a second (bench/live_view.py measures it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.app.pictures import write_atomic
from appliance.domain import Face

log = logging.getLogger(__name__)

MAX_FPS = 2.0
"""Most frames written per second while watched."""
WATCH_FRESH_S = 5.0
"""The door writes frames while `watching` was touched at most this many seconds ago."""
CHECK_S = 0.5
"""How often the door looks at the time of `watching`, seconds."""
JPEG_QUALITY = 70
"""JPEG quality of live.jpg (0-100): about 30 KB for 640x480."""
WATCHING, FRAME, INFO = "watching", "live.jpg", "live.json"


def live_dir(gallery_path: Path | str) -> Path:
    """The live-view folder of the gallery at `gallery_path`."""
    return Path(gallery_path).parent / "live"


def touch_watching(folder: Path) -> None:
    """Say that someone watches now (the web process, on each live-view page load)."""
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / WATCHING).touch(mode=0o600)


def read_info(folder: Path) -> dict[str, Any] | None:
    """The last live.json the door wrote, or None (none yet, or unreadable)."""
    try:
        return json.loads((folder / INFO).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Snapshot:
    """What one processed frame showed, handed from the door loop to the writer thread.

    Attributes:
        image: RGB frame (a copy: the camera may reuse its buffer).
        faces: every face found in it.
        target: the face the decision is about, if any (its box gets the name and score).
        user, score: the target's best match and its cosine similarity (None: not embedded).
        locked: the door's state when the frame was processed.
        enrolment: {"name", "shots", "taken"} while an enrolment at the door runs, else None.
        time: wall clock, epoch seconds.
    """

    image: np.ndarray
    faces: list[Face]
    target: Face | None
    user: str | None
    score: float | None
    locked: bool
    enrolment: dict[str, Any] | None
    time: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        """live.json's content."""
        return {
            "time": round(self.time, 3),
            "door": "locked" if self.locked else "unlocked",
            "faces": [
                {
                    "box": [round(v, 1) for v in f.box],
                    "target": f is self.target,
                    "user": self.user if f is self.target else None,
                    "score": None if f is not self.target or self.score is None else round(self.score, 4),
                }
                for f in self.faces
            ],
            "enrolment": self.enrolment,
            "width": int(self.image.shape[1]),
            "height": int(self.image.shape[0]),
        }


def draw(snap: Snapshot) -> np.ndarray:
    """The frame (BGR, for encoding) with the face boxes, the target's name and score, and the door
    state drawn on it."""
    out = cv2.cvtColor(snap.image, cv2.COLOR_RGB2BGR)
    for f in snap.faces:
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        is_target = f is snap.target
        colour = (60, 200, 60) if is_target and snap.user else (0, 200, 255) if is_target else (180, 180, 180)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        if is_target and snap.score is not None:
            label = f"{snap.user or 'unknown'} {snap.score:.2f}"
            cv2.putText(out, label, (x1, max(14, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 2)
    state = "LOCKED" if snap.locked else "UNLOCKED"
    if snap.enrolment:
        state += f"  enrolling {snap.enrolment['taken']}/{snap.enrolment['shots']}"
    cv2.putText(out, state, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (255, 255, 255), 2)
    return out


def write_snapshot(folder: Path, snap: Snapshot) -> None:
    """Write live.jpg, then live.json (so the JSON never describes a frame not yet there)."""
    ok, jpeg = cv2.imencode(".jpg", draw(snap), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError("JPEG encoding failed")
    write_atomic(folder / FRAME, jpeg.tobytes())
    write_atomic(folder / INFO, json.dumps(snap.info()).encode())


class LiveView:
    """Shares the door loop's latest frame while someone watches; call `offer(loop)` after each frame.

    Args:
        folder: the live-view folder (live_dir); the door never creates it: the web process does.
        clock: monotonic clock, seconds (the rate limit).
        wall: wall clock, epoch seconds (the age of `watching`, whose time the web process sets).
    """

    def __init__(
        self,
        folder: Path,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.folder, self._clock, self._wall = folder, clock, wall
        self._checked_at = float("-inf")
        self._sent_at = float("-inf")
        self._watched = False
        self.frames_written = 0
        self.writer_cpu_s = 0.0  # CPU seconds the writer thread spent drawing, encoding and writing
        self._pending: Snapshot | None = None
        self._handed = self._done = 0  # snapshots handed to the writer / the last one it finished
        self._wake = threading.Condition()
        self._closed = False
        self._clear = False  # the watcher left: delete the frame (a face) instead of leaving it on disk
        self._remove_frame()  # what an earlier run left
        self._thread = threading.Thread(target=self._writer, name="live-view", daemon=True)
        self._thread.start()

    def watched(self) -> bool:
        """True while `watching` is fresh; looks at the file at most every CHECK_S."""
        now = self._clock()
        if now - self._checked_at >= CHECK_S:
            self._checked_at = now
            was = self._watched
            try:
                age = self._wall() - (self.folder / WATCHING).stat().st_mtime
                self._watched = age <= WATCH_FRESH_S
            except OSError:
                self._watched = False
            if was and not self._watched:
                with self._wake:
                    self._clear = True
                    self._handed += 1  # flush() waits for it too
                    self._wake.notify_all()
        return self._watched

    def offer(self, loop: Any) -> bool:
        """Hand the loop's last frame to the writer if someone watches and MAX_FPS allows; True if
        handed. `loop`: the AccessLoop (last_frame, last_faces, last_match, decision_face, door,
        enrolment). Never raises: the live view must not stop the door."""
        try:
            now = self._clock()
            if now - self._sent_at < 1.0 / MAX_FPS or not self.watched():
                return False
            frame = loop.last_frame
            if frame is None:
                return False
            self._sent_at = now
            session = loop.enrolment
            enrolment = (
                None
                if session is None
                else {"name": session.name, "shots": session.shots, "taken": len(session.embeddings)}
            )
            face = loop.decision_face
            target = face[1] if face is not None and face[0] is frame.image else None
            match = loop.last_match
            snap = Snapshot(
                image=frame.image.copy(),
                faces=list(loop.last_faces),
                target=target,
                user=None if match is None or match.user is None else str(match.user),
                score=None if match is None else float(match.score),
                locked=bool(loop.door.is_locked),
                enrolment=enrolment,
            )
        except Exception as exc:  # noqa: BLE001 - a live-view bug must never end the door loop
            log.warning("live view: frame not shared: %s", exc)
            return False
        with self._wake:
            self._pending = snap  # a newer frame replaces one not yet written
            self._handed += 1
            self._wake.notify_all()
        return True

    def _writer(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._clear and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                snap, self._pending, seq = self._pending, None, self._handed
                clear, self._clear = self._clear, False
            if clear:  # nobody watches any more: no frame of anyone is left behind
                self._remove_frame()
                with self._wake:
                    self._done = seq
                    self._wake.notify_all()
                continue
            assert snap is not None
            cpu0 = time.thread_time()
            try:
                write_snapshot(self.folder, snap)
                self.frames_written += 1
            except (OSError, cv2.error) as exc:  # a full disk or a removed folder: no live view, door on
                log.warning("live view: frame not written: %s", exc)
            self.writer_cpu_s += time.thread_time() - cpu0
            with self._wake:
                self._done = seq
                self._wake.notify_all()

    def _remove_frame(self) -> None:
        for name in (FRAME, INFO):
            try:
                (self.folder / name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("live view: %s not removed: %s", name, exc)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until the frame handed last is written (tests, benchmarks)."""
        with self._wake:
            self._wake.wait_for(lambda: self._done >= self._handed or self._closed, timeout_s)

    def close(self) -> None:
        """Stop the writer thread (a frame being written is finished)."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=2.0)
