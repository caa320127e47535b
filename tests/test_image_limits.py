"""read_image refuses oversized images from their header, before decoding, and unreadable paths."""

from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from appliance.errors import ImageError
from appliance.vision.images import MAX_PIXELS, image_size, read_image


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, followed by pixel data far too short for it: only a
    header check can know the size, and decoding it could only fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def crafted_jpeg(width: int, height: int, exif_bytes: int = 0) -> bytes:
    """SOI, an APP0 (JFIF), an optional big APP1, then a baseline frame header claiming the size; no scan."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", exif_bytes + 2) + b"\x00" * exif_bytes if exif_bytes else b""
    components = b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"  # Y, Cb, Cr: id, sampling, table
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + components
    return b"\xff\xd8" + app0 + app1 + b"\xff\xff" + sof0 + b"\xff\xd9"


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
def test_header_size_matches_what_opencv_writes(tmp_path, photo, ext):
    path = tmp_path / f"photo{ext}"
    assert cv2.imwrite(str(path), photo)
    assert image_size(path.read_bytes()) == (90, 60)


def test_lossless_webp_header_size(tmp_path, photo):
    path = tmp_path / "photo.webp"
    assert cv2.imwrite(str(path), photo, [cv2.IMWRITE_WEBP_QUALITY, 101])  # >100: lossless (VP8L)
    data = path.read_bytes()
    assert data[12:16] == b"VP8L"
    assert image_size(data) == (90, 60)


def test_a_normal_image_still_reads(tmp_path, photo):
    path = tmp_path / "photo.png"
    assert cv2.imwrite(str(path), photo)
    image = read_image(path)
    assert image.shape == (60, 90, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, photo[:, :, ::-1])  # BGR on disk -> RGB
    assert read_image(path, max_side=45).shape == (30, 45, 3)


@pytest.mark.parametrize(
    "name, data, size",
    [
        ("huge.png", crafted_png(30000, 30000), "30000x30000"),
        ("over_2_30.png", crafted_png(70000, 70000), "70000x70000"),
        ("max_png.png", crafted_png(2**31 - 1, 2**31 - 1), f"{2**31 - 1}x{2**31 - 1}"),
        ("huge.jpg", crafted_jpeg(20000, 15000), "20000x15000"),
        ("exif.jpg", crafted_jpeg(12000, 9000, exif_bytes=60000), "12000x9000"),
    ],
)
def test_oversized_header_is_refused_before_decoding(tmp_path, name, data, size):
    path = tmp_path / name
    path.write_bytes(data)
    assert len(data) < 70_000
    with pytest.raises(ImageError) as err:
        read_image(path)
    message = str(err.value)
    assert size in message and "megapixels" in message and "resize the photo" in message
    assert str(path) in message and "\n" not in message


def test_limit_is_a_pixel_count(tmp_path):
    side = int(MAX_PIXELS**0.5)
    path = tmp_path / "under.png"
    path.write_bytes(crafted_png(side, side))  # under the limit: decoded, and fails as damaged
    with pytest.raises(ImageError, match="cannot be decoded"):
        read_image(path)
    path.write_bytes(crafted_png(side + 1, side + 1))
    with pytest.raises(ImageError, match="megapixels"):
        read_image(path)


def test_truncated_headers_fall_through_to_the_decoder(tmp_path):
    for data in (b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff", b"BM\x00", b"RIFF\x00\x00\x00\x00WEBPVP8L"):
        assert image_size(data) is None
        path = tmp_path / "short"
        path.write_bytes(data)
        with pytest.raises(ImageError, match="cannot be decoded"):
            read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file; check the path"):
        read_image(tmp_path / "nope.jpg")


def test_folder(tmp_path):
    with pytest.raises(ImageError, match="is a folder, not an image file"):
        read_image(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="cannot be decoded"):
        read_image(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_pipe_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(path)


def test_permission_denied(tmp_path, photo, monkeypatch):
    import appliance.vision.images as images

    path = tmp_path / "secret.png"
    assert cv2.imwrite(str(path), photo)

    def denied(*args, **kwargs):  # chmod 0 does not stop root, who runs these tests in CI
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images, "open", denied, raising=False)
    with pytest.raises(
        ImageError, match="cannot be read \\(Permission denied\\); check its permissions"
    ) as err:
        read_image(path)
    assert "\n" not in str(err.value)
