"""Recorded frames: a video file or a folder of images, for headless runs, evaluation and tests.

Every frame is yielded, in order; nothing is skipped to keep up. Bad input is an error that names
the file, never a silent skip: replay feeds evaluation, where a dropped file would quietly change the
results. Files in an image folder without an image extension (README.txt, .DS_Store) are ignored.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2

from appliance.domain import Frame
from appliance.errors import CameraError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

_REENCODE = "check the file or re-encode it with ffmpeg (ffmpeg -i in.mov -c:v libx264 out.mp4)"


class ReplaySource:
    """Frames from a video file, a single image, or a folder of images sorted by file name.

    Frame.t is the recorded time in seconds: index / fps of the video (the container's
    timestamps when the frame rate is unknown), or index / ``image_fps`` for images.

    Args:
        path: a video file (anything FFmpeg decodes: mp4, avi, mkv, mpg, ...), an image, or a
            folder of images. Name images so that they sort in time order (zero-padded numbers).
        realtime: pace frames to the recorded rate (for demos); False yields as fast as the
            consumer takes them.
        image_fps: the rate a folder of images is treated as recorded at, frames per second.
        clock, sleep: injectable time functions (seconds) for the realtime pacing.

    Raises:
        CameraError: the path is missing, a video cannot be decoded, a folder holds no images, or
            an image file is not a readable image.
    """

    def __init__(
        self,
        path: str | Path,
        realtime: bool = False,
        *,
        image_fps: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self._clock = clock
        self._sleep = sleep
        self._closed = False
        if image_fps <= 0:
            raise CameraError(f"image_fps must be positive, got {image_fps}")
        if not self.path.exists():
            raise CameraError(f"{self.path} does not exist: check the path of the video or image folder")
        if not (self.path.is_dir() or self.path.is_file()):
            # A FIFO or device would block the decoder forever instead of failing.
            raise CameraError(
                f"{self.path} is not a video, image or folder (a pipe or device?): give a recorded file"
            )
        self._images: list[Path] | None = None
        if self.path.is_dir():
            self._images = _list_images(self.path)
            self.fps = image_fps
            self.frame_count: int | None = len(self._images)
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            _check_image_signature(self.path)
            self._images = [self.path]
            self.fps = image_fps
            self.frame_count = 1
        else:
            self.fps, self.frame_count = _probe_video(self.path)

    def frames(self) -> Iterator[Frame]:
        """Yield every frame in order; each call starts again from the first frame."""
        start = self._clock()
        source = self._image_frames() if self._images is not None else self._video_frames()
        for frame in source:
            if self._closed:
                return
            if self.realtime:
                wait = start + frame.t - self._clock()
                if wait > 0:
                    self._sleep(wait)
            yield frame

    def close(self) -> None:
        """Stop any iteration in progress at the next frame. Idempotent."""
        self._closed = True

    interrupt = close  # nothing here blocks for long: stopping at the next frame is soon enough

    def _image_frames(self) -> Iterator[Frame]:
        assert self._images is not None
        for index, file in enumerate(self._images):
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise CameraError(
                    f"{file} cannot be decoded as an image: remove it from the folder or replace it"
                )
            yield Frame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index=index, t=index / self.fps)

    def _video_frames(self) -> Iterator[Frame]:
        capture = _open_video(self.path)
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    break
                # A known rate gives exact times; otherwise trust the container's timestamps.
                fps = self.fps
                t = index / fps if fps is not None else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                yield Frame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index=index, t=t)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise CameraError(f"{self.path} cannot be decoded: no frame could be read; {_REENCODE}")
        if self.frame_count is not None and index < self.frame_count and not self._closed:
            # A truncated or damaged file: keep what was decoded, and say so.
            logger.warning(
                "%s: decoding stopped after %d of %d frames (truncated or damaged file?); %s",
                self.path,
                index,
                self.frame_count,
                _REENCODE,
            )


def _open_video(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise CameraError(f"{path} cannot be decoded: it is not a video FFmpeg can open; {_REENCODE}")
    return capture


def _probe_video(path: Path) -> tuple[float | None, int | None]:
    """Open the video, read its first frame, and return (fps or None, declared frame count or None)."""
    capture = _open_video(path)
    try:
        ok, _ = capture.read()
        if not ok:
            raise CameraError(f"{path} cannot be decoded: it holds no readable frame; {_REENCODE}")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    # Containers without a rate report 0, NaN or nonsense like 90000.
    good_fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else None
    good_count = int(count) if math.isfinite(count) and count > 0 else None
    return good_fps, good_count


def _list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    ignored = len(files) - len(images)
    if ignored:
        logger.info("%s: ignoring %d file(s) without an image extension", folder, ignored)
    if not images:
        exts = ", ".join(sorted(IMAGE_SUFFIXES))
        raise CameraError(f"{folder} holds no images ({exts}): check the folder")
    for image in images:
        _check_image_signature(image)
    return images


def _check_image_signature(file: Path) -> None:
    """Fail early, naming the file, when its first bytes are not an image format OpenCV reads."""
    try:
        readable = cv2.haveImageReader(str(file))
    except cv2.error:
        readable = False
    if not readable:
        raise CameraError(
            f"{file} is not an image (its contents are not JPEG, PNG, ...): remove or replace it"
        )
