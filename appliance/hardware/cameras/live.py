"""The shared engine of live cameras: a reader thread that keeps only the newest frame and reopens a
failed camera with exponential backoff.

A door must react to what is in front of it now, so a slow consumer (a detector taking 300 ms on a
30 fps camera) gets the latest frame each time and never works through a backlog of old ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from appliance.domain import Frame

logger = logging.getLogger(__name__)


class Capture(Protocol):
    """An open camera, as the reader thread uses it (``cv2.VideoCapture`` has this shape)."""

    def read(self) -> tuple[bool, np.ndarray | None]:
        """Block until the next frame; (True, RGB uint8 image) or (False, None) when it failed."""
        ...

    def release(self) -> None:
        """Close the camera."""
        ...


class LiveSource:
    """Frames from a live camera, read in a background thread; ``frames()`` yields the newest.

    The camera is opened in the constructor, so a camera missing at start-up is an error
    (``open_capture`` raises CameraError). Once running, a camera that fails or disconnects is
    reopened with exponential backoff, forever, with a log line per attempt; ``frames()`` then
    waits (the service watchdog notices a long stall).

    Frame.index counts every frame the camera delivered since open, so gaps show dropped frames.
    Frame.t is seconds since open (monotonic clock).

    Args:
        open_capture: opens the camera, returning a Capture that yields RGB images; raises on
            failure.
        name: for log lines, e.g. "usb:0".
        reconnect_initial_s: first wait before reopening, seconds; doubled after each failure.
        reconnect_max_s: longest wait between attempts, seconds.
        clock: monotonic seconds, injectable for tests.
        sleep: the backoff wait, injectable for tests; the default returns early on close().
        start: start the reader thread now (tests pass False and call ``step()`` themselves).
    """

    def __init__(
        self,
        open_capture: Callable[[], Capture],
        *,
        name: str,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        start: bool = True,
    ) -> None:
        if not 0 < reconnect_initial_s <= reconnect_max_s:
            raise ValueError("need 0 < reconnect_initial_s <= reconnect_max_s")
        self.name = name
        self._open = open_capture
        self._initial_s = reconnect_initial_s
        self._max_s = reconnect_max_s
        self._delay_s = reconnect_initial_s
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float] | None = None
        self._delivered = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._capture: Capture | None = open_capture()
        self._t0 = clock()
        if start:
            self.start()

    def start(self) -> None:
        """Start the reader thread (once)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
            self._thread.start()

    def frames(self) -> Iterator[Frame]:
        """Yield the newest frame each time one newer than the last yielded exists, until close()."""
        seen = -1
        while True:
            with self._cond:
                while not self._closed and (self._latest is None or self._latest[1] <= seen):
                    self._cond.wait(timeout=1.0)
                if self._closed or self._latest is None:
                    return
                image, index, t = self._latest
            seen = index
            yield Frame(image=image, index=index, t=t)

    def step(self) -> None:
        """One turn of the reader: reopen if needed (or wait out the backoff), else read a frame."""
        if self._capture is None:
            try:
                self._capture = self._open()
            except Exception as exc:
                self._fail("cannot reopen", exc)
                return
            logger.info("camera %s: reopened", self.name)
        try:
            ok, image = self._capture.read()
        except Exception as exc:
            ok, image = False, None
            logger.debug("camera %s: read raised %r", self.name, exc)
        if not ok or image is None:
            self._release()
            self._fail("lost (no frame)", None)
            return
        self._delay_s = self._initial_s  # a good frame ends the backoff
        with self._cond:
            self._latest = (image, self._delivered, self._clock() - self._t0)
            self._delivered += 1
            self._cond.notify_all()

    def interrupt(self) -> None:
        """End ``frames()`` now, from any thread, without waiting for a read in progress (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._stop.set()

    def close(self) -> None:
        """Stop the thread and release the camera. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
            if thread.is_alive():
                # The driver is stuck in read(); releasing under it could crash, so leave it.
                logger.warning("camera %s: reader thread did not stop within 5 s", self.name)
                return
        self._release()

    def _fail(self, what: str, exc: BaseException | None) -> None:
        delay = self._delay_s
        self._delay_s = min(self._delay_s * 2, self._max_s)
        reason = f" ({exc})" if exc is not None else ""
        logger.warning("camera %s: %s%s; retrying in %.1f s", self.name, what, reason, delay)
        self._sleep(delay)

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            try:
                capture.release()
            except Exception:
                logger.exception("camera %s: release failed", self.name)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                # Never let the reader die silently: log, back off, go on.
                logger.exception("camera %s: reader error", self.name)
                self._release()
                self._fail("reader error", None)
        self._release()
