"""Reading still images from disk (OpenCV), as RGB uint8 arrays."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.errors import ImageError

MAX_SIDE = 1280
"""Photos are scaled down so their longer side is at most this many pixels: detection time grows with
the pixel count, and a face in a phone photo is still hundreds of pixels wide at this size."""


def read_image(path: Path | str, max_side: int = MAX_SIDE) -> np.ndarray:
    """Decode a JPEG/PNG/... file to RGB uint8, scaled down to max_side; ImageError names the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file; check the path.")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(
            f"{path}: cannot be decoded as an image (damaged, or not a JPEG/PNG); use another photo."
        )
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        image = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
