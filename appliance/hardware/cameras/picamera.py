"""Raspberry Pi camera modules through picamera2 (libcamera); the only importer of picamera2.

Detection uses the ISP's low-resolution ("lores") output: the hardware scales the sensor image down
for free, so the CPU never touches a full-size frame. The lores stream is YUV420 on every Pi (a Pi 4
cannot give RGB there), converted here to RGB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from appliance.errors import CameraError
from appliance.hardware.cameras.live import LiveSource

logger = logging.getLogger(__name__)

_NOT_INSTALLED = (
    "picamera2 is not installed in this Python: install python3-picamera2 with apt and create the "
    "venv with --system-site-packages (systemd/install.sh does both)"
)
_NO_CAMERA = (
    "No camera found. Check the ribbon cable (contacts facing the right way, both ends latched) and run "
    "`rpicam-hello --list-cameras`"
)


class PiCamera(LiveSource):
    """A Raspberry Pi camera module; ``frames()`` yields the newest lores frame as RGB.

    Args:
        width, height: the detection (lores) size, pixels; even numbers.
        camera_num: which camera, for a Pi 5 or Compute Module with two.
        fps: frames per second asked of the sensor; None leaves libcamera's default.
        main_size: the full-resolution stream's size, pixels (it must be at least the lores size);
            defaults to twice the lores size.
        reconnect_initial_s, reconnect_max_s, clock, sleep, start: see LiveSource.

    Raises:
        CameraError: picamera2 is not installed, or there is no camera.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        *,
        camera_num: int = 0,
        fps: float | None = None,
        main_size: tuple[int, int] | None = None,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        start: bool = True,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(_NOT_INSTALLED) from exc
        self._picamera2 = Picamera2
        self.width = width - width % 2
        self.height = height - height % 2
        self.camera_num = camera_num
        self.fps = fps
        self.main_size = main_size or (2 * self.width, 2 * self.height)
        super().__init__(
            self._open_capture,
            name=f"picamera:{camera_num}",
            reconnect_initial_s=reconnect_initial_s,
            reconnect_max_s=reconnect_max_s,
            clock=clock,
            sleep=sleep,
            start=start,
        )

    def _open_capture(self) -> _PiCapture:
        cameras = self._picamera2.global_camera_info()
        if len(cameras) <= self.camera_num:
            raise CameraError(_NO_CAMERA)
        try:
            camera = self._picamera2(self.camera_num)
            return _PiCapture(camera, self.main_size, (self.width, self.height), self.fps)
        except CameraError:
            raise
        except Exception as exc:
            raise CameraError(
                f"cannot start camera {self.camera_num} ({type(exc).__name__}: {exc}): is another "
                "program (rpicam-*, another FaceGate) using it? Run `rpicam-hello --list-cameras`"
            ) from exc


class _PiCapture:
    """A started Picamera2 with a main RGB stream and a lores YUV420 stream."""

    def __init__(
        self, camera: Any, main_size: tuple[int, int], lores_size: tuple[int, int], fps: float | None
    ) -> None:
        self._camera = camera
        try:
            # Preview configurations use the full-range sYCC colour space, which yuv420_to_rgb
            # assumes; video configurations would pick limited-range Rec.601/709.
            config = camera.create_preview_configuration(
                main={"size": main_size, "format": "RGB888"},
                lores={"size": lores_size, "format": "YUV420"},
                buffer_count=4,
                controls={} if fps is None else {"FrameRate": fps},
            )
            camera.configure(config)
            lores = camera.stream_configuration("lores")
            self._width, self._height = lores["size"]
            self._stride = lores["stride"]
            camera.start()
        except Exception:
            camera.close()
            raise

    def read(self) -> tuple[bool, np.ndarray | None]:
        buffer = self._camera.capture_buffer("lores")
        return True, yuv420_to_rgb(buffer, self._width, self._height, self._stride)

    def release(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()


def yuv420_to_rgb(buffer: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """Convert a planar YUV420 (I420) buffer to an RGB uint8 image of (height, width, 3).

    Args:
        buffer: the flat bytes: the Y plane (height rows of ``stride`` bytes), then U and V
            (height/2 rows of stride/2 bytes each).
        width, height: the image size, pixels; even numbers.
        stride: bytes per Y row, at least ``width`` (libcamera pads rows for alignment).

    Uses the full-range BT.601 (JPEG, sYCC) matrix.
    """
    flat = np.asarray(buffer, dtype=np.uint8).ravel()
    half_w, half_h, half_stride = width // 2, height // 2, stride // 2
    y_size, c_size = stride * height, half_stride * half_h
    if flat.size < y_size + 2 * c_size:
        raise CameraError(f"camera frame too short: {flat.size} bytes for {width}x{height} YUV420")
    y = flat[:y_size].reshape(height, stride)[:, :width].astype(np.float32)
    u = flat[y_size : y_size + c_size].reshape(half_h, half_stride)[:, :half_w]
    v = flat[y_size + c_size : y_size + 2 * c_size].reshape(half_h, half_stride)[:, :half_w]
    # Each chroma sample covers a 2x2 block of pixels.
    u = u.repeat(2, axis=0).repeat(2, axis=1).astype(np.float32) - 128.0
    v = v.repeat(2, axis=0).repeat(2, axis=1).astype(np.float32) - 128.0
    rgb = np.empty((height, width, 3), dtype=np.float32)
    rgb[..., 0] = y + 1.402 * v
    rgb[..., 1] = y - 0.344136 * u - 0.714136 * v
    rgb[..., 2] = y + 1.772 * u
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
