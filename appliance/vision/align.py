"""Align a face to the 150x150 chip dlib's face-recognition ResNet expects, from five landmarks.

A similarity transform (rotation, uniform scale, translation; least squares, Umeyama's closed form)
takes the detector's five landmarks onto TEMPLATE_150 and cv2.warpAffine cuts the chip. Pixels that
fall outside the image are black, as in dlib's own chips.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.errors import ImageError

CHIP_SIZE = 150  # pixels; the embedder's input side

# Where MTCNN's five landmarks fall in dlib's chip (get_face_chip_details(shape, 150, padding=0.25),
# the chip compute_face_descriptor makes), in chip pixels (x, y), image-left first. dlib aligns on other
# points (its 5-point predictor: eye corners and the base of the nose), so these are measured, not
# assumed: models/build/align_template.py maps the `mtcnn` package's landmarks through dlib's own chip
# transform on 400 LFW images (none from the LFW pairs used to evaluate) and takes the robust mean
# (median +- 3 MAD per coordinate). The median distance of a face's point from its template point is
# 1.8 px for the eyes and 5.2-5.7 px for the nose and mouth (expression, pose).
TEMPLATE_150 = np.array(
    [
        [46.87, 44.86],  # left eye
        [100.64, 44.85],  # right eye
        [73.32, 76.56],  # nose tip
        [50.00, 104.32],  # left mouth corner
        [97.17, 104.26],  # right mouth corner
    ],
    np.float32,
)

# Weight of each point in the fit: 1 / (its RMS distance from the template)^2 over the same 400 faces
# (2.3 px for the eyes, 6.9-7.3 px for nose and mouth, which move with expression and pose). Against an
# unweighted fit this brings our chip closer to dlib's: the mean RMS displacement over the chip falls
# from 3.8 to 3.0 px (align_template.py prints both).
TEMPLATE_WEIGHTS = np.array([1.0, 0.925, 0.114, 0.101, 0.108])

# Shrinking by more than this in one warp would alias (bilinear reads only 2x2 pixels), so bigger
# faces are first reduced with area averaging, as dlib's chip extractor does with its pyramid.
_MAX_WARP_SHRINK = 2.0


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """2x3 matrix of the similarity that best maps src points onto dst points (weighted least squares).

    Umeyama (1991) closed form with per-point weights: deterministic, unlike
    cv2.estimateAffinePartial2D's RANSAC.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s, d = src - mu_s, dst - mu_d
    var_s = w @ (s**2).sum(axis=1)
    cov = (d * w[:, None]).T @ s
    u, sv, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection would fit better: keep a rotation
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sv * sign).sum() / var_s if var_s > 0 else 0.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def _check(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = getattr(image, "dtype", type(image).__name__), getattr(image, "shape", "")
        raise ImageError(f"align_face needs an RGB uint8 image of shape (H, W, 3), got {got[0]} {got[1]}.")
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
        raise ImageError(
            f"align_face needs five (x, y) landmarks as a (5, 2) finite array, got shape {pts.shape}; "
            "pass Face.landmarks from the detector."
        )
    if np.ptp(pts, axis=0).max() < 1.0:
        raise ImageError("The five face landmarks coincide; the face is too small or the detection is bad.")
    return pts


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Cut the aligned face chip for the embedder.

    Args:
        image: RGB uint8 array (H, W, 3).
        landmarks: (5, 2) float (x, y) in image pixels: left eye, right eye, nose, left and right
            mouth corner, image-left first (Face.landmarks).
        size: chip side in pixels; the template scales with it (150 for dlib's ResNet).

    Returns:
        (size, size, 3) uint8 RGB chip.
    """
    pts = _check(image, landmarks)
    matrix = similarity_transform(pts, TEMPLATE_150.astype(np.float64) * (size / CHIP_SIZE), TEMPLATE_WEIGHTS)
    scale = float(np.hypot(*matrix[:, 0]))  # chip pixels per image pixel
    if scale * _MAX_WARP_SHRINK < 1.0:
        image, matrix = _shrink_first(image, matrix, scale, size)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _shrink_first(
    image: np.ndarray, matrix: np.ndarray, scale: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the chip's footprint, area-resize it to about chip scale; returns the new image and map."""
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], np.float64)
    foot = corners @ inv.T
    h, w = image.shape[:2]
    x0, y0 = (max(int(np.floor(v)) - 2, 0) for v in foot.min(axis=0))
    x1, y1 = min(int(np.ceil(foot[:, 0].max())) + 3, w), min(int(np.ceil(foot[:, 1].max())) + 3, h)
    if x1 <= x0 or y1 <= y0:  # the face lies outside the image: nothing to average
        return image, matrix
    crop = image[y0:y1, x0:x1]
    new_w, new_h = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    small = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
    kx, ky = new_w / crop.shape[1], new_h / crop.shape[0]
    # small pixel (u, v) <- image pixel ((u + 0.5) / kx - 0.5 + x0, (v + 0.5) / ky - 0.5 + y0)
    to_image = np.array([[1 / kx, 0, 0.5 / kx - 0.5 + x0], [0, 1 / ky, 0.5 / ky - 0.5 + y0], [0, 0, 1]])
    return small, matrix @ to_image
