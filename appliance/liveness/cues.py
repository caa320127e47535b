"""The image measurements behind the liveness decision (OpenCV and numpy); decision.py reads them.

`CueMeter` follows one tracked face and turns each frame into a `FrameCues`:

- held: points around the face (hair, hand, paper, screen bezel, background) are tracked from the
  previous frame with pyramidal Lucas-Kanade; each point is predicted by the similarity transform the
  five landmarks made. A fixed door camera sees the background stay put while a person's head moves;
  a photo or phone held in a hand carries its surroundings along, so nearly every point follows the
  face. Measured only when the face moved at least `min_move` face widths.
- glare: the largest blob of near-white, unsaturated pixels in the face box, as a fraction of its area.
- moire: the strongest peak of the face crop's spectrum over the median of its radius band.
- parallax: the nose's residual from the affine map of eyes and mouth corners since the track's
  first frame (a plane maps its points by one affine; a head's nose sticks out of that plane), in eye
  distances, with the head turn since that frame as its gate.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from appliance.domain import Face, yaw_degrees
from appliance.liveness.decision import FrameCues

RING_SIDE = 0.25
"""How far the ring of tracked points reaches beyond the face box, face widths left and right: close
enough to the face to lie on a print's paper or a phone's screen (a wider ring reaches the still
background behind a held photo and separated less on the development data)."""
RING_ABOVE, RING_BELOW = 0.2, 0.3
"""...and above and below, face heights."""
RING_INNER = 0.05
"""The face box itself, grown by this fraction, is left out of the ring (its points move with it)."""
FAR_FACES = 1.5
"""The far background: beyond this many face widths (heights) of the face box."""
FAR_SCALE = 0.25
"""The far background is tracked in the frame scaled by this factor."""
LK_WINDOW, LK_LEVELS = 15, 2
"""Side of the Lucas-Kanade search window, pixels, and its pyramid levels above the image (it follows
motions up to about LK_WINDOW * 2**LK_LEVELS / 2 = 30 px between frames)."""
HELD_FACE_PX = 64
"""The ring is searched in the frame scaled so that the face is at most this wide, pixels."""
MAX_POINTS = 30
"""Most corners tracked per region."""
CAMERA_MOVED_FRACTION = 0.5
"""When this fraction of the far background's points follow the face, the camera moved: no held cue."""
MIN_RING_POINTS = 8
"""Fewer trackable points around the face than this: the held cue is not measured."""
GLARE_V, GLARE_S = 250, 40
"""A glare pixel: HSV value at least GLARE_V and saturation at most GLARE_S (0-255)."""
MOIRE_SIZE = 128
"""Side of the square gray face crop whose spectrum is searched for moire, pixels."""


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _clip_box(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x1, y1, x2, y2 = box
    return max(0, int(x1)), max(0, int(y1)), min(w, int(math.ceil(x2))), min(h, int(math.ceil(y2)))


def ring_mask(shape: tuple[int, ...], face: Face) -> np.ndarray:
    """uint8 mask (H, W), 255 on the ring around the face where points are tracked."""
    x1, y1, x2, y2 = face.box
    fw, fh = face.width, face.height
    mask = np.zeros(shape[:2], np.uint8)
    ox1, oy1, ox2, oy2 = _clip_box(
        (x1 - RING_SIDE * fw, y1 - RING_ABOVE * fh, x2 + RING_SIDE * fw, y2 + RING_BELOW * fh), shape
    )
    mask[oy1:oy2, ox1:ox2] = 255
    ix1, iy1, ix2, iy2 = _clip_box(
        (x1 - RING_INNER * fw, y1 - RING_INNER * fh, x2 + RING_INNER * fw, y2 + RING_INNER * fh), shape
    )
    mask[iy1:iy2, ix1:ix2] = 0
    return mask


def held_fraction(
    prev_grey: np.ndarray,
    grey: np.ndarray,
    prev_face: Face,
    face: Face,
    min_move: float,
    held_at: float = 0.0,
) -> float | None:
    """Fraction (0-1) of the ring's tracked points that moved as the face did, or None.

    A fraction under `held_at` is returned without looking at the far background (it would not count
    as held either way, and the look costs as much as the ring's).

    None when the face moved less than `min_move` face widths (no evidence either way) or too few
    points could be tracked.
    """
    src = prev_face.landmarks.astype(np.float32)
    dst = face.landmarks.astype(np.float32)
    motion = float(np.mean(np.linalg.norm(dst - src, axis=1)))
    if motion < min_move * face.width or motion < 2.0:
        return None
    transform, _ = cv2.estimateAffinePartial2D(src, dst)
    if transform is None:
        return None
    # The ring is searched at most HELD_FACE_PX face widths wide: finer detail adds cost, not evidence.
    scale = min(1.0, HELD_FACE_PX / max(prev_face.width, 1.0))
    margin = LK_WINDOW / scale + 1.5 * motion
    x1, y1, x2, y2 = _clip_box(
        _grow(
            prev_face.box,
            prev_face,
            RING_SIDE + margin / prev_face.width,
            *(r + margin / prev_face.height for r in (RING_ABOVE, RING_BELOW)),
        ),
        grey.shape,
    )
    if x2 - x1 < 16 or y2 - y1 < 16:
        return None
    crops = [prev_grey[y1:y2, x1:x2], grey[y1:y2, x1:x2], ring_mask(grey.shape, prev_face)[y1:y2, x1:x2]]
    if scale < 1.0:
        crops = [
            cv2.resize(
                c, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST if k == 2 else cv2.INTER_AREA
            )
            for k, c in enumerate(crops)
        ]
    ring = _follows(*crops, transform, motion, (x1, y1), scale)
    if ring is None or ring < held_at:
        return ring
    # The camera itself moved (a hand-held phone, a pan) when the far background follows the face
    # too: then the surroundings moving along says nothing about a held photo. Looked at in a quarter
    # size image: the whole frame at full size would cost more than the rest of the check.
    step = int(round(1 / FAR_SCALE))
    small_prev, small = shrink(prev_grey), shrink(grey)
    far_m = far_mask(grey.shape, prev_face)[::step, ::step][: small.shape[0], : small.shape[1]]
    far = _follows(small_prev, small, far_m, transform, motion, (0, 0), FAR_SCALE)
    if far is not None and far >= CAMERA_MOVED_FRACTION:
        return None
    return ring


def shrink(grey: np.ndarray) -> np.ndarray:
    """The gray frame at FAR_SCALE of its size, where the far background is tracked."""
    return cv2.resize(grey, None, fx=FAR_SCALE, fy=FAR_SCALE, interpolation=cv2.INTER_LINEAR)


def _grow(
    box: tuple[float, float, float, float], face: Face, side: float, above: float, below: float
) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return x1 - side * face.width, y1 - above * face.height, x2 + side * face.width, y2 + below * face.height


def _follows(
    prev_grey: np.ndarray,
    grey: np.ndarray,
    mask: np.ndarray,
    transform: np.ndarray,
    motion: float,
    offset: tuple[int, int],
    scale: float,
) -> float | None:
    """Fraction of the corners under `mask` that moved as `transform` (the face's motion) predicts.

    The images are a part of two frames, its top-left corner at `offset` (frame pixels), resized by
    `scale`; transform and motion are in frame pixels.
    """
    corners = cv2.goodFeaturesToTrack(
        prev_grey, maxCorners=MAX_POINTS, qualityLevel=0.01, minDistance=max(2.0, 5 * scale), mask=mask
    )
    if corners is None or len(corners) < MIN_RING_POINTS:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(
        prev_grey, grey, corners, None, winSize=(LK_WINDOW, LK_WINDOW), maxLevel=LK_LEVELS
    )
    ok = status.reshape(-1) == 1
    if int(ok.sum()) < MIN_RING_POINTS:
        return None
    origin = np.array(offset, np.float32)
    p0 = corners.reshape(-1, 2)[ok] / scale + origin
    p1 = moved.reshape(-1, 2)[ok] / scale + origin
    predicted = p0 @ transform[:, :2].T + transform[:, 2]
    # A point follows the face when it lands where the face's motion takes it, within half of that
    # motion (points of a still background stay a whole motion away from their prediction).
    follows = np.linalg.norm(p1 - predicted, axis=1) < max(1.5, motion / 2)
    return float(np.mean(follows))


def far_mask(shape: tuple[int, ...], face: Face) -> np.ndarray:
    """uint8 mask (H, W), 255 on the background far from the face (beyond FAR_FACES face widths)."""
    mask = np.full(shape[:2], 255, np.uint8)
    ox1, oy1, ox2, oy2 = _clip_box(_grow(face.box, face, FAR_FACES, FAR_FACES, FAR_FACES), shape)
    mask[oy1:oy2, ox1:ox2] = 0
    return mask


def glare_fraction(image: np.ndarray, face: Face) -> float:
    """Area of the largest near-white, unsaturated blob in the face box over the box's area."""
    x1, y1, x2, y2 = _clip_box(face.box, image.shape)
    crop = image[y1:y2, x1:x2]
    if crop.size == 0:
        return 0.0
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    mask = ((hsv[..., 2] >= GLARE_V) & (hsv[..., 1] <= GLARE_S)).astype(np.uint8)
    if not mask.any():
        return 0.0
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    return largest / float(crop.shape[0] * crop.shape[1])


def _band_radii(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - size // 2, xx - size // 2).astype(np.int32)


_RADII = _band_radii(MOIRE_SIZE)


def moire_peak(grey: np.ndarray, face: Face) -> float:
    """The strongest spectral peak of the face crop over the median magnitude at its radius (>= 1).

    A face's spectrum falls smoothly with frequency; a screen's pixel grid beating against the
    camera's adds sharp peaks at mid and high frequencies.
    """
    x1, y1, x2, y2 = _clip_box(face.box, grey.shape)
    crop = grey[y1:y2, x1:x2]
    if min(crop.shape) < 16:
        return 1.0
    crop = cv2.resize(crop, (MOIRE_SIZE, MOIRE_SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    crop -= crop.mean()
    window = np.outer(np.hanning(MOIRE_SIZE), np.hanning(MOIRE_SIZE)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(crop * window)))
    band = (_RADII >= MOIRE_SIZE // 8) & (_RADII < MOIRE_SIZE // 2)
    radii = _RADII[band]
    mags = spectrum[band]
    medians = np.zeros(MOIRE_SIZE, np.float32)
    for r in np.unique(radii):
        medians[r] = np.median(mags[radii == r])
    return float(np.max(mags / np.maximum(medians[radii], 1e-6)))


def nose_parallax(ref: np.ndarray, cur: np.ndarray) -> float:
    """The nose's distance from where the affine map of eyes and mouth corners puts it, in eye distances."""
    plane = [0, 1, 3, 4]
    src = np.hstack([ref[plane].astype(np.float64), np.ones((4, 1))])
    affine, *_ = np.linalg.lstsq(src, cur[plane].astype(np.float64), rcond=None)
    predicted = np.append(ref[2], 1.0) @ affine
    eye_distance = max(1e-6, float(np.linalg.norm(cur[1] - cur[0])))
    return float(np.linalg.norm(cur[2] - predicted)) / eye_distance


class CueMeter:
    """Measures the cues of one tracked face frame by frame; `reset` when the track changes.

    Args:
        min_move: the face must move this many face widths between frames for the held cue.
        held_at: the held fraction from which a frame counts as held (see held_fraction).
        held, glare, moire: which cues to measure (an unused cue costs nothing).
    """

    def __init__(
        self,
        min_move: float = 0.02,
        held_at: float = 0.0,
        *,
        held: bool = True,
        glare: bool = True,
        moire: bool = True,
    ):
        self.min_move, self.held_at = min_move, held_at
        self.want_held, self.want_glare, self.want_moire = held, glare, moire
        self.reset()

    def reset(self) -> None:
        """Forget the track: the next frame is its first."""
        self._prev_grey: np.ndarray | None = None
        self._prev_face: Face | None = None
        self._ref_landmarks: np.ndarray | None = None

    def measure(self, image: np.ndarray, face: Face, t: float) -> FrameCues:
        """The cues of `face` in `image` (RGB uint8) at time t, seconds."""
        grey = _grey(image)
        held = None
        prev, prev_face = self._prev_grey, self._prev_face
        if self.want_held and prev is not None and prev_face is not None and prev.shape == grey.shape:
            held = held_fraction(prev, grey, prev_face, face, self.min_move, self.held_at)
        if self._ref_landmarks is None:
            self._ref_landmarks = face.landmarks.copy()
        cues = FrameCues(
            t=t,
            held=held,
            glare=glare_fraction(image, face) if self.want_glare else None,
            moire=moire_peak(grey, face) if self.want_moire else None,
            parallax=nose_parallax(self._ref_landmarks, face.landmarks),
            yaw_change_deg=yaw_degrees(face.landmarks) - yaw_degrees(self._ref_landmarks),
        )
        self._prev_grey, self._prev_face = grey, face
        return cues
