"""What our alignment and quantization cost on LFW pairs, against dlib's own pipeline.

Build venv only (dlib, the `mtcnn` package, TensorFlow's TFLite interpreter).

    .build-venv/bin/python -m models.build.embedder_eval [--lfw DIR] [--per-fold 15]

For every image of a subset of LFW's pairs.txt (the first --per-fold matched and mismatched pairs of
each of the 10 folds) it makes two chips of the same face:
  * dlib's: HOG detector, 5-point predictor, get_face_chip(150, padding 0.25) - the reference;
  * ours:   MTCNN landmarks (the `mtcnn` package) -> appliance.vision.align.align_face.
and embeds them with dlib's network and with our TFLite models. It prints the mean cosine between
the two chips' embeddings, and the pair accuracy of each pipeline: 10-fold cross-validated cosine
threshold, and dlib's documented Euclidean threshold 0.6 on raw descriptors. Pairs where dlib or
MTCNN misses a face are left out of every figure alike.
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


def eval_pairs(lfw: Path, per_fold: int = 15) -> list[tuple[Path, Path, bool]]:
    """(image a, image b, same person) for the first per_fold matched and mismatched pairs of each fold."""
    lines = (lfw / "pairs.txt").read_text().split("\n")
    folds, size = (int(v) for v in lines[0].split())
    rows = [line.split() for line in lines[1:] if line.strip()]

    def img(name: str, n: str) -> Path:
        return lfw / name / f"{name}_{int(n):04d}.jpg"

    pairs = []
    for f in range(folds):
        block = rows[f * 2 * size : (f + 1) * 2 * size]
        for r in block[:per_fold]:
            pairs.append((img(r[0], r[1]), img(r[0], r[2]), True))
        for r in block[size : size + per_fold]:
            pairs.append((img(r[0], r[1]), img(r[2], r[3]), False))
    return pairs


def cv_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> float:
    """10-fold accuracy: each fold judged at the threshold that is best on the other nine."""
    idx = np.arange(len(scores)) % folds
    correct = 0
    for f in range(folds):
        train, test = idx != f, idx == f
        cands = np.unique(scores[train])
        accs = [np.mean((scores[train] >= t) == same[train]) for t in cands]
        t = cands[int(np.argmax(accs))]
        correct += np.sum((scores[test] >= t) == same[test])
    return correct / len(scores)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> None:
    import tensorflow as tf

    from appliance.vision.align import align_face
    from models.build.align_template import Pairing
    from models.build.embedder_convert import CHIP, PADDING, DlibReference

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lfw", type=Path, default=LFW)
    parser.add_argument("--per-fold", type=int, default=15)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)

    pairs = eval_pairs(args.lfw, args.per_fold)
    ref, pairing = DlibReference(), Pairing()
    interps = {}
    for variant in ("f16", "int8"):
        it = tf.lite.Interpreter(model_path=str(args.models / f"embedder_{variant}.tflite"), num_threads=1)
        it.allocate_tensors()
        interps[variant] = it

    def tflite(variant: str, chip: np.ndarray) -> np.ndarray:
        it = interps[variant]
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        it.set_tensor(inp["index"], chip[None].astype(inp["dtype"]))
        it.invoke()
        return it.get_tensor(out["index"])[0]

    cache: dict[Path, dict[str, np.ndarray] | None] = {}

    def embed(path: Path) -> dict[str, np.ndarray] | None:
        if path not in cache:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            found = pairing.measure(rgb)
            if found is None:
                cache[path] = None
            else:
                _, landmarks, shape = found
                dlib_chip = np.asarray(pairing.dlib.get_face_chip(rgb, shape, CHIP, PADDING))
                our_chip = align_face(rgb, landmarks.astype(np.float32))
                cache[path] = {
                    "dlib/dlib": ref.descriptor(dlib_chip),
                    "ours/dlib": ref.descriptor(our_chip),
                    "ours/f16": tflite("f16", our_chip),
                    "ours/int8": tflite("int8", our_chip),
                    "dlib/int8": tflite("int8", dlib_chip),
                }
        return cache[path]

    kept = []
    for a, b, same in pairs:
        ea, eb = embed(a), embed(b)
        if ea is not None and eb is not None:
            kept.append((ea, eb, same))
    same = np.array([k[2] for k in kept])
    print(f"LFW subset: {len(kept)} of {len(pairs)} pairs ({same.sum()} same, {(~same).sum()} different)")
    faces = [e for e in cache.values() if e is not None]
    for key in ("ours/dlib", "ours/int8", "dlib/int8"):
        cos = np.array([unit(e[key]) @ unit(e["dlib/dlib"]) for e in faces])
        print(f"cosine {key} vs dlib/dlib over {len(faces)} faces: mean {cos.mean():.4f} min {cos.min():.4f}")
    print("pipeline (chip/network): 10-fold cosine accuracy, accuracy at dlib's Euclidean 0.6")
    for key in ("dlib/dlib", "ours/dlib", "ours/f16", "ours/int8", "dlib/int8"):
        cos = np.array([unit(a[key]) @ unit(b[key]) for a, b, _ in kept])
        euclid = np.array([np.linalg.norm(a[key] - b[key]) for a, b, _ in kept])
        print(f"  {key:10s} {cv_accuracy(cos, same):.4f}  {np.mean((euclid < 0.6) == same):.4f}")


if __name__ == "__main__":
    main()
