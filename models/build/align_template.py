"""Derive the five-point alignment template of appliance/vision/align.py from real faces.

Build venv only (dlib, the `mtcnn` package). The embedder was trained on dlib's chips: dlib's
5-point shape predictor (eye corners and the base of the nose) mapped by a similarity onto dlib's
mean face, with padding 0.25, 150x150 pixels (`get_face_chip_details(shape, 150, 0.25)`, as
`compute_face_descriptor` does). MTCNN finds other points (eye centres, nose tip, mouth corners),
so their place in dlib's chip is measured, not assumed:

  1. On each image, dlib's HOG detector and 5-point predictor give dlib's chip transform
     (image -> chip, rebuilt from `chip_details` exactly as dlib's `get_mapping_to_chip` does).
  2. The `mtcnn` package (the weights our TFLite detector carries) finds the same face's five
     landmarks, ordered image-left first: left eye, right eye, nose, left and right mouth corner.
  3. Those landmarks are mapped into chip coordinates; the template is their robust mean
     (points further than 3 median absolute deviations from the median are left out).
  4. Each point's weight in the runtime's similarity fit is 1 / (its RMS distance from the
     template)^2, normalised to the left eye: eyes are steadier than nose and mouth.

    .build-venv/bin/python -m models.build.align_template [--lfw DIR] [--images 400]

Images used by models/build/embedder_eval.py's LFW pairs are skipped so the evaluation stays fair.
Prints the template as the Python constant to paste into appliance/vision/align.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LFW = ROOT.parent / "shared" / "data" / "lfw"
CHIP = 150
PADDING = 0.25
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def dlib_image_to_chip(details) -> np.ndarray:
    """2x3 affine taking image (x, y) to chip (x, y), as dlib's get_mapping_to_chip builds it.

    dlib maps the chip's corners (0,0), (cols-1,0), (cols-1,rows-1) to the rectangle's tl, tr, br
    corners rotated by `angle` about the rectangle's centre.
    """
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    c, s = np.cos(details.angle), np.sin(details.angle)

    def rot(x: float, y: float) -> tuple[float, float]:
        return c * (x - cx) - s * (y - cy) + cx, s * (x - cx) + c * (y - cy) + cy

    src = np.float32([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.right(), r.bottom())])
    dst = np.float32([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]])
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def ordered_landmarks(keypoints: dict) -> np.ndarray:
    """(5, 2) MTCNN points in the appliance's order: eyes and mouth corners image-left first."""
    pts = np.array([keypoints[k] for k in KEYPOINTS], np.float64)
    if pts[0, 0] > pts[1, 0]:
        pts[[0, 1]] = pts[[1, 0]]
    if pts[3, 0] > pts[4, 0]:
        pts[[3, 4]] = pts[[4, 3]]
    return pts


class Pairing:
    """dlib's chip transform and MTCNN's landmarks for the same (central) face of an image."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm
        from mtcnn import MTCNN

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.mtcnn = MTCNN()

    def measure(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, object] | None:
        """(image->chip affine, MTCNN landmarks (5,2) in image pixels, dlib shape), or None."""
        h, w = rgb.shape[:2]
        rects = self.detector(rgb, 1)
        if not rects:
            return None
        centre = np.array([w / 2, h / 2])

        def dist(rc):
            return np.hypot(
                (rc.left() + rc.right()) / 2 - centre[0], (rc.top() + rc.bottom()) / 2 - centre[1]
            )

        rect = min(rects, key=dist)
        shape = self.predictor(rgb, rect)
        affine = dlib_image_to_chip(self.dlib.get_face_chip_details(shape, CHIP, PADDING))
        faces = self.mtcnn.detect_faces(rgb, box_format="xyxy")
        if not faces:
            return None
        rc = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        face = min(faces, key=lambda f: np.hypot(*(np.add(f["box"][:2], f["box"][2:]) / 2 - rc)))
        box = face["box"]
        if np.hypot(*(np.add(box[:2], box[2:]) / 2 - rc)) > 0.3 * rect.width():
            return None  # not the same face
        return affine, ordered_landmarks(face["keypoints"]), shape


def to_chip(affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ affine[:, :2].T + affine[:, 2]


def robust_mean(points: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of (N, 5, 2), leaving out values beyond 3 MADs of the median, per coordinate."""
    med = np.median(points, axis=0)
    mad = np.median(np.abs(points - med), axis=0) * 1.4826
    keep = np.abs(points - med) <= 3 * mad
    return np.where(keep, points, 0).sum(axis=0) / keep.sum(axis=0)


def chip_displacement(points: np.ndarray, template: np.ndarray, weights: np.ndarray | None) -> float:
    """RMS distance (chip px) by which our fit moves a 12x12 grid over the chip, compared with dlib's.

    `points` are one face's MTCNN landmarks already in dlib's chip, so dlib's transform is the identity
    there and any displacement is the fit's error.
    """
    from appliance.vision.align import similarity_transform

    grid = np.stack(np.meshgrid(np.linspace(20, 130, 12), np.linspace(20, 130, 12)), -1).reshape(-1, 2)
    m = similarity_transform(points, template, weights)
    return float(np.sqrt((((grid @ m[:, :2].T + m[:, 2]) - grid) ** 2).sum(axis=1).mean()))


def eval_image_names(lfw: Path) -> set[str]:
    from models.build.embedder_eval import eval_pairs

    names = set()
    for a, b, _ in eval_pairs(lfw):
        names.update((a.name, b.name))
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lfw", type=Path, default=LFW)
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args(argv)

    skip = eval_image_names(args.lfw)
    paths = sorted(p for p in args.lfw.rglob("*.jpg") if p.name not in skip)
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.images).astype(int)]
    pairing = Pairing()
    chip_points, chip_errors = [], []
    for i, path in enumerate(paths):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        found = pairing.measure(rgb)
        if found is None:
            continue
        affine, pts, shape = found
        chip_points.append(to_chip(affine, pts))
        if i < 20:  # our rebuild of dlib's mapping must reproduce dlib's own chip
            ours = cv2.warpAffine(rgb, affine, (CHIP, CHIP), flags=cv2.INTER_LINEAR)
            theirs = np.asarray(pairing.dlib.get_face_chip(rgb, shape, CHIP, PADDING))
            chip_errors.append(np.abs(ours.astype(int) - theirs).mean())
    points = np.stack(chip_points)
    template = robust_mean(points)
    spread = np.sqrt(((points - template) ** 2).sum(axis=2))
    print(f"{len(points)} of {len(paths)} images with both dlib and MTCNN faces")
    print(f"dlib chip rebuilt with cv2.warpAffine: mean abs pixel difference {np.mean(chip_errors):.2f}")
    print(
        "median distance of each point from the template (chip px):", np.round(np.median(spread, axis=0), 2)
    )
    np.save(ROOT / ".cache" / "align_points.npy", points)
    rms = np.sqrt((spread**2).mean(axis=0))
    weights = (rms[0] / rms) ** 2
    print("RMS distance of each point from the template (chip px):", np.round(rms, 2))
    print(f"TEMPLATE_WEIGHTS = np.array([{', '.join(f'{w:.3f}' for w in weights)}])")
    print("mean RMS displacement over the chip of the fitted vs dlib's transform (px):")
    for label, w in (("unweighted", None), ("weighted", weights)):
        print(f"  {label}: {np.mean([chip_displacement(p, template, w) for p in points]):.2f}")
    print("TEMPLATE_150 = np.array(\n    [")
    for (x, y), name in zip(
        template, ("left eye", "right eye", "nose tip", "left mouth", "right mouth"), strict=True
    ):
        print(f"        [{x:.2f}, {y:.2f}],  # {name}")
    print("    ],\n    np.float32,\n)")


if __name__ == "__main__":
    main()
