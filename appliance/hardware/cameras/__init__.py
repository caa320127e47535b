"""Frame sources: pick the adapter for a camera spec string.

Adapter modules are imported only when chosen, so picamera2 is never imported off a Pi.
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.errors import CameraError
from appliance.ports import FrameSource

_URL = re.compile(r"^(rtsp|rtsps|http|https)://", re.IGNORECASE)
_USB = re.compile(r"^usb:(\d+)$", re.IGNORECASE)


def open_source(
    spec: str,
    width: int = 640,
    height: int = 480,
    realtime: bool = False,
    reconnect_initial_s: float = 0.5,
    reconnect_max_s: float = 30.0,
    fps: float | None = None,
) -> FrameSource:
    """Open the frame source that ``spec`` names.

    Args:
        spec: "picamera" (or "picamera:N"), "usb:N" (/dev/videoN), an rtsp:// or http(s):// URL,
            or the path of a video file, an image, or a folder of images.
        width, height: the live capture size, pixels (ignored for files).
        realtime: pace recorded files to their recorded rate (ignored for live cameras).
        reconnect_initial_s, reconnect_max_s: backoff for live cameras that fail, seconds.
        fps: frames per second asked of a live camera (None: its default; ignored for files and
            streams, which keep their recorded rate).

    Raises:
        CameraError: the spec names nothing that exists or can be opened.
    """
    text = spec.strip()
    live = {"reconnect_initial_s": reconnect_initial_s, "reconnect_max_s": reconnect_max_s, "fps": fps}
    if text.lower() == "picamera" or text.lower().startswith("picamera:"):
        from appliance.hardware.cameras.picamera import PiCamera

        number = text.partition(":")[2]
        if number and not number.isdigit():
            raise CameraError(f"bad camera {spec!r}: use picamera or picamera:N with N a number")
        return PiCamera(width, height, camera_num=int(number or 0), **live)
    usb = _USB.match(text)
    if usb or _URL.match(text):
        from appliance.hardware.cameras.opencv_camera import OpenCvCamera

        source: int | str = int(usb.group(1)) if usb else text
        return OpenCvCamera(source, width, height, **live)
    if not text:
        raise CameraError("no camera given: use picamera, usb:N, a stream URL, or a video/folder path")
    path = Path(text).expanduser()
    if not path.exists():
        raise CameraError(
            f"{spec!r} is not a camera and no such file or folder exists: use picamera, usb:N, "
            "rtsp://..., or the path of a video or image folder"
        )
    from appliance.hardware.cameras.replay import ReplaySource

    return ReplaySource(path, realtime=realtime)
