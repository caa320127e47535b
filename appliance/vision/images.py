"""Reading still images from disk (OpenCV), as RGB uint8 arrays."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np

from appliance.errors import ImageError

MAX_SIDE = 1280
"""Photos are scaled down so their longer side is at most this many pixels: detection time grows with
the pixel count, and a face in a phone photo is still hundreds of pixels wide at this size."""

MAX_PIXELS = 50_000_000
"""Largest image (width x height) decoded, checked from the file header before any decoding. A
decoded image takes 3 bytes a pixel and OpenCV needs a few copies while decoding: a 2.7 MB PNG of
30000x30000 px took 5.4 GB and 22 s. The appliance runs on a Pi under systemd MemoryMax=1G, and 50
megapixels (150 MB decoded) is above any phone or camera photo (a 48 MP phone sensor fits)."""


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, BMP or WebP file, or None if not known.

    Reads only the first bytes (and, for JPEG, the segment headers up to the first frame header),
    so a file can be refused before it is decoded. None for other formats and for headers too damaged
    to read; the decoder then judges the file.
    """
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM":
            (dib,) = struct.unpack("<I", data[14:18])
            if dib == 12:  # BITMAPCOREHEADER
                return struct.unpack("<HH", data[18:22])
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)  # height < 0: rows stored top-down
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except (struct.error, IndexError):  # header cut short
        return None
    return None


# Start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4 (DHT), C8, CC (DAC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # segments without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit width-1, height-1
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit sizes
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _read_file(path: Path) -> bytes:
    """The file's bytes; ImageError (one line, saying what to do) for anything that is not a readable file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file; check the path.") from None
    except OSError as exc:
        raise ImageError(
            f"{path}: cannot be read ({exc.strerror or exc}); check the path and its permissions."
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{path}: is a folder, not an image file; give the path of a photo.")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{path}: not a regular file (a device or pipe); give the path of a photo.")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions.") from None


def read_image(path: Path | str, max_side: int = MAX_SIDE) -> np.ndarray:
    """Decode a JPEG/PNG/... file to RGB uint8, scaled down to max_side; ImageError names the file.

    Raises:
        ImageError: the file is missing, a folder or unreadable; its header says it has more than
            MAX_PIXELS pixels (checked before decoding); or it cannot be decoded.
    """
    path = Path(os.fspath(path))
    data = _read_file(path)
    size = image_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        w, h = size
        raise ImageError(
            f"{path}: {w}x{h} pixels ({w * h / 1e6:.0f} megapixels) is more than the "
            f"{MAX_PIXELS / 1e6:.0f} megapixels FaceGate decodes; resize the photo "
            f"(e.g. to {MAX_SIDE} px on the long side) and try again."
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:  # e.g. OpenCV's own size guard on a format whose header is not read above
        image = None
    if image is None:
        raise ImageError(
            f"{path}: cannot be decoded as an image (damaged, too large, or not a JPEG/PNG); "
            "use another photo."
        )
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        image = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
