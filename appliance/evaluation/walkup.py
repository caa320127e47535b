"""A walk-up clip made from a still photo: the person approaches the camera and stops.

Used by `facegate demo` and the tests on machines without recorded door video. The photo is placed on a
plain background, scaled from small to large and moved from the side towards the centre, with a little
camera noise, then written with OpenCV's video encoder and decoded again like any recorded clip.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.errors import CameraError


def walkup_frames(
    photo_rgb: np.ndarray,
    n_frames: int = 45,
    size: tuple[int, int] = (640, 480),
    start_scale: float = 0.25,
    end_scale: float = 0.9,
    seed: int = 0,
) -> list[np.ndarray]:
    """Frames (RGB uint8, size = (width, height)) of the photo growing and moving to the centre.

    The photo's height goes from start_scale to end_scale of the frame height over the first two thirds of
    the clip, then stays, as a person who has reached the door.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    background = np.full((height, width, 3), (90, 100, 110), dtype=np.uint8)
    frames = []
    approach = max(1, (2 * n_frames) // 3)
    for i in range(n_frames):
        p = min(1.0, i / approach)
        scale = start_scale + (end_scale - start_scale) * p
        ph = max(8, int(height * scale))
        pw = max(8, int(photo_rgb.shape[1] * ph / photo_rgb.shape[0]))
        pw = min(pw, width)
        person = cv2.resize(photo_rgb, (pw, ph), interpolation=cv2.INTER_AREA)
        cx = int(width * (0.8 - 0.3 * p))
        x0 = int(np.clip(cx - pw // 2, 0, width - pw))
        y0 = int(np.clip(height - ph - int(0.05 * height * (1 - p)), 0, height - ph))
        frame = background.copy()
        frame[y0 : y0 + ph, x0 : x0 + pw] = person
        noise = rng.normal(0.0, 2.0, frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return frames


def head_and_shoulders(photo_rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Crop a portrait around a face box: 1.2 face widths either side, 1 above, 2 below (clipped)."""
    h, w = photo_rgb.shape[:2]
    x1, y1, x2, y2 = box
    fw, fh = x2 - x1, y2 - y1
    left, right = int(max(0, x1 - 1.2 * fw)), int(min(w, x2 + 1.2 * fw))
    top, bottom = int(max(0, y1 - 1.0 * fh)), int(min(h, y2 + 2.0 * fh))
    return np.ascontiguousarray(photo_rgb[top:bottom, left:right])


def write_video(frames: list[np.ndarray], path: Path, fps: float = 15.0) -> Path:
    """Encode RGB frames to path (.avi as MJPG, otherwise mp4v) and return it."""
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise CameraError(f"{path}: OpenCV cannot write video here; check the folder is writable.")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
