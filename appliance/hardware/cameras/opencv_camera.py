"""Live frames through OpenCV: a USB (V4L2) camera by index, or an RTSP/HTTP stream by URL."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from appliance.errors import CameraError
from appliance.hardware.cameras.live import LiveSource

logger = logging.getLogger(__name__)


class OpenCvCamera(LiveSource):
    """A USB camera or a network stream, read in its own thread; ``frames()`` yields the newest.

    Args:
        source: a camera index (0 for /dev/video0) or an rtsp://, http:// or https:// URL.
        width, height: the capture size asked of a USB camera, pixels (the camera may pick the
            nearest it supports; streams keep their own size).
        fps: frames per second asked of a USB camera; None leaves its default.
        reconnect_initial_s, reconnect_max_s: backoff when the camera fails, seconds.
        capture_factory: builds the capture from ``source``; defaults to ``cv2.VideoCapture``.
            Anything with ``read()`` returning (ok, BGR image) and ``release()`` works (tests).
        clock, sleep: see LiveSource.
        start: start the reader thread now.

    Raises:
        CameraError: the camera or stream cannot be opened at start-up.
    """

    def __init__(
        self,
        source: int | str,
        width: int = 640,
        height: int = 480,
        *,
        fps: float | None = None,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        capture_factory: Callable[[int | str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        start: bool = True,
    ) -> None:
        self.source = source
        self.width = width
        self.height = height
        self.fps = fps
        self._factory = capture_factory if capture_factory is not None else _video_capture
        super().__init__(
            self._open_capture,
            name=describe(source),
            reconnect_initial_s=reconnect_initial_s,
            reconnect_max_s=reconnect_max_s,
            clock=clock,
            sleep=sleep,
            start=start,
        )

    def _open_capture(self) -> _RgbCapture:
        capture = self._factory(self.source)
        is_opened = getattr(capture, "isOpened", None)
        if is_opened is not None and not is_opened():
            capture.release()
            raise CameraError(f"cannot open camera {describe(self.source)}: {_hint(self.source)}")
        if isinstance(self.source, int) and hasattr(capture, "set"):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps is not None:
                capture.set(cv2.CAP_PROP_FPS, self.fps)
            # Fewer driver buffers: less latency between the scene and the frame we read.
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return _RgbCapture(capture)


class _RgbCapture:
    """Wraps an OpenCV capture so that read() returns RGB, as every FrameSource must."""

    def __init__(self, capture: Any) -> None:
        self._capture = capture

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            return False, None
        return True, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def release(self) -> None:
        self._capture.release()


def _video_capture(source: int | str) -> cv2.VideoCapture:
    if isinstance(source, str):
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    return cv2.VideoCapture(source)


def describe(source: int | str) -> str:
    """A name for logs, without any password in a URL ("rtsp://user:***@host/path")."""
    if isinstance(source, int):
        return f"usb:{source}"
    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1:***@", source)


def _hint(source: int | str) -> str:
    if isinstance(source, int):
        return (
            f"check the USB cable, list cameras with `v4l2-ctl --list-devices` (is /dev/video{source} "
            "there?) and that this user is in the 'video' group"
        )
    return "check the URL, the user name and password, and that the camera is reachable on the network"
