"""Measure the int8 TFLite MTCNN against ground truth and against the float `mtcnn` package it came from.

Two steps, because the package needs TensorFlow (build venv) and the detector needs the TFLite runtime:

    .build-venv/bin/python -m models.build.mtcnn_eval --reference  # package -> .cache/mtcnn_reference.json
    .venv/bin/python -m models.build.mtcnn_eval [--variant f32]     # our detector, prints the table

Data: ../shared/data (WIDER FACE train subset with boxes, no_face/, multi_face/, a sample of LFW).
Both run with min_face_size 20 and thresholds 0.6/0.7/0.8 (the package defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
REFERENCE = ROOT / ".cache" / "mtcnn_reference.json"
WIDER = DATA / "detection" / "widerface_train_subset"
MIN_FACE = 20
LFW_SAMPLE = 200


def read_rgb(path: Path) -> np.ndarray:
    """RGB uint8 image from a file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"{path}: cannot read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def wider_truth() -> dict[str, list[list[float]]]:
    """Image path (relative to DATA) -> ground-truth boxes as x1, y1, x2, y2."""
    lines = (WIDER / "wider_face_train_bbx_gt_subset.txt").read_text().split("\n")
    out, i = {}, 0
    while i < len(lines) and lines[i].strip():
        name, n = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(float, ln.split()[:4])) for ln in lines[i + 2 : i + 2 + max(n, 1)]][:n]
        out[str((WIDER / "images" / name).relative_to(DATA))] = [[x, y, x + w, y + h] for x, y, w, h in rows]
        i += 2 + max(n, 1)
    return out


def image_set() -> dict[str, list[str]]:
    """Group name -> image paths relative to DATA."""
    lfw = sorted((DATA / "lfw").glob("*/*.jpg"))
    lfw = [lfw[i] for i in np.linspace(0, len(lfw) - 1, LFW_SAMPLE).astype(int)]
    return {
        "wider": sorted(wider_truth()),
        "no_face": sorted(str(p.relative_to(DATA)) for p in (DATA / "no_face").iterdir()),
        "multi_face": sorted(str(p.relative_to(DATA)) for p in (DATA / "multi_face").iterdir()),
        "lfw": [str(p.relative_to(DATA)) for p in lfw],
    }


def run_reference() -> None:
    """Float mtcnn package on every image -> REFERENCE (boxes xyxy, scores, landmarks)."""
    from mtcnn import MTCNN

    det = MTCNN()
    out = {}
    for group, paths in image_set().items():
        for rel in paths:
            faces = det.detect_faces(read_rgb(DATA / rel), min_face_size=MIN_FACE, box_format="xyxy")
            out[rel] = [
                {"box": [float(v) for v in f["box"]], "score": float(f["confidence"]), "landmarks": _marks(f)}
                for f in faces
            ]
        print(f"reference: {group} done")
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(out))
    print(f"wrote {REFERENCE}")


def _marks(face: dict) -> list[list[float]]:
    k = face["keypoints"]
    return [[float(v) for v in k[n]] for n in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU matrix of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def matches(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of boxes by IoU above threshold."""
    m = box_iou(a, b)
    pairs = []
    while m.size and m.max() > threshold:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        pairs.append((int(i), int(j)))
        m[i, :], m[:, j] = 0, 0
    return pairs


def run_detector(models_dir: Path | None, variant: str) -> None:
    """Int8 detector on every image; print recall, false faces, parity with the reference, timing."""
    from appliance.vision.detector import MtcnnDetector
    from appliance.vision.model_files import MODELS_DIR

    det = MtcnnDetector(models_dir or MODELS_DIR, variant=variant, min_face_size=MIN_FACE)
    ref = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else None
    truth = wider_truth()
    found: dict[str, list] = {}
    times = []
    for paths in image_set().values():
        for rel in paths:
            img = read_rgb(DATA / rel)
            det.detect(img)  # warm the per-shape PNet interpreters so timing shows steady state
            t0 = time.perf_counter()
            found[rel] = det.detect(img)
            times.append((img.shape[0] * img.shape[1], time.perf_counter() - t0))

    def boxes(faces: list) -> np.ndarray:
        return np.asarray([f.box if hasattr(f, "box") else f["box"] for f in faces], float).reshape(-1, 4)

    groups = image_set()
    print(f"{'measure':58s} {variant + ' tflite':>12s} {'float pkg':>10s}")

    def row(name: str, ours: float, theirs: float | None, fmt: str = "{:.3f}") -> None:
        print(f"{name:58s} {fmt.format(ours):>12s} {fmt.format(theirs) if theirs is not None else '-':>10s}")

    for min_w in (0, 40):
        gt = {k: np.asarray([b for b in v if b[2] - b[0] >= min_w]).reshape(-1, 4) for k, v in truth.items()}
        n_gt = sum(len(v) for v in gt.values())
        hit = lambda res, gt=gt: sum(len(matches(gt[k], boxes(res[k]))) for k in gt)  # noqa: E731
        row(f"WIDER subset recall, IoU>0.5, gt width>={min_w} (n={n_gt})", hit(found) / n_gt,
            hit(ref) / n_gt if ref else None)  # fmt: skip
    n_det = lambda res: sum(len(res[k]) for k in truth)  # noqa: E731
    gt_all = {k: np.asarray(v).reshape(-1, 4) for k, v in truth.items()}
    tp = lambda res: sum(len(matches(gt_all[k], boxes(res[k]))) for k in truth)  # noqa: E731
    row("WIDER subset precision, IoU>0.5 (unlabelled faces count false)", tp(found) / max(n_det(found), 1),
        tp(ref) / max(n_det(ref), 1) if ref else None)  # fmt: skip
    fp = lambda res: sum(len(res[k]) for k in groups["no_face"])  # noqa: E731
    row(
        f"faces reported on no_face/ images (n={len(groups['no_face'])})",
        fp(found),
        fp(ref) if ref else None,
        "{:.0f}",
    )
    one = lambda res: sum(len(res[k]) >= 1 for k in groups["lfw"]) / len(groups["lfw"])  # noqa: E731
    row(f"LFW sample: images with a face (n={len(groups['lfw'])})", one(found), one(ref) if ref else None)
    mf = lambda res: sum(len(res[k]) for k in groups["multi_face"])  # noqa: E731
    row("multi_face/: faces reported (6 images, unlabelled)", mf(found), mf(ref) if ref else None, "{:.0f}")
    if ref:
        ious, lm_err, agree, total = [], [], 0, 0
        for rel, ref_faces in ref.items():
            ours, theirs = found[rel], ref_faces
            total += len(theirs)
            for i, j in matches(boxes(ours), boxes(theirs)):
                agree += 1
                ious.append(box_iou(boxes(ours)[i : i + 1], boxes(theirs)[j : j + 1])[0, 0])
                a, b = ours[i].landmarks, np.asarray(theirs[j]["landmarks"])
                lm_err.append(np.linalg.norm(a - b, axis=1).mean() / max(np.linalg.norm(b[0] - b[1]), 1e-6))
        print(f"\nparity with the float package on all {len(ref)} images:")
        print(f"  reference faces also found (IoU>0.5): {agree}/{total}; we reported {n_total(found)}")
        print(
            f"  box IoU of matched faces: median {np.median(ious):.3f}, 5th pct {np.percentile(ious, 5):.3f}"
        )
        print(f"  landmark error / inter-ocular distance: median {np.median(lm_err):.3f}, "
              f"95th percentile {np.percentile(lm_err, 95):.3f}")  # fmt: skip
    px = np.asarray([t[0] for t in times])
    sec = np.asarray([t[1] for t in times])
    vga = np.abs(px - 640 * 480) < 640 * 480 * 0.5
    print(f"\ntime per image (min_face_size={MIN_FACE}, 1 thread): median {np.median(sec) * 1e3:.0f} ms "
          f"over {len(sec)} images; {np.median(sec[vga]) * 1e3 if vga.any() else float('nan'):.0f} ms "
          f"for the {vga.sum()} near-VGA ones")  # fmt: skip


def n_total(res: dict) -> int:
    """Faces reported over all images."""
    return sum(len(v) for v in res.values())


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true", help="run the float mtcnn package (build venv)")
    parser.add_argument(
        "--models", type=Path, help="folder of .tflite files and SHA256SUMS (default: models/)"
    )
    parser.add_argument("--variant", choices=("int8", "f32"), default="int8", help="which build to measure")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: shared data is missing")
    run_reference() if args.reference else run_detector(args.models, args.variant)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
