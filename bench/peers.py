"""`make bench-peers`: FaceGate against face_recognition 1.3.0 and the `mtcnn` 1.0.0 package, same frames.

Two Python environments are involved, because the peers need TensorFlow and dlib, which the appliance
must not depend on:

* this script runs in .peers-venv (bench/peers-requirements.txt) and times the peers;
* FaceGate is timed by the same file run with FaceGate's own interpreter (``--facegate-python``,
  default .venv/bin/python) in ``--facegate-worker`` mode. The worker also picks the frames -- the real
  clip letterboxed to 640x480 when ../shared/data is present, else the generated walk-up clip (see
  appliance/evaluation/bench.py) -- and hands them over as one .npy file, so every tool sees the same pixels.

Per tool and frame: one warm-up run on the first frame, then the median of ``--repeats`` runs per frame;
"ms/frame" is the mean of those over all frames (faces or not, as a camera delivers them). Everything
runs on one thread: TensorFlow is limited to ``--tf-threads`` (1), FaceGate's interpreters to 1, and
dlib's HOG detector is single-threaded.

Usage:  .peers-venv/bin/python bench/peers.py [--max-frames 40] [--repeats 1] [--lfw] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
LFW_ROOT = PROJECT.parent / "shared" / "data" / "lfw"
FRAME_SIZE = (640, 480)
FR_TOLERANCE = 0.6  # face_recognition's documented default distance threshold


# ---------------------------------------------------------------------------------------------------
# Shared
# ---------------------------------------------------------------------------------------------------


def per_frame_ms(
    frames: Sequence[np.ndarray], fn: Callable[[np.ndarray], Any], repeats: int
) -> tuple[float, list[Any]]:
    """Mean over frames of the per-frame median of `repeats` timed runs, ms; and fn's last results."""
    fn(frames[0])  # warm-up: graph tracing, interpreter allocation
    medians, results = [], []
    for frame in frames:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = fn(frame)
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
        results.append(result)
    return 1000.0 * statistics.fmean(medians), results


def spread(n_total: int, n_pick: int) -> list[int]:
    """Up to n_pick indices spread evenly over range(n_total), first and last included."""
    if n_total <= n_pick:
        return list(range(n_total))
    return [round(i * (n_total - 1) / (n_pick - 1)) for i in range(n_pick)] if n_pick > 1 else [0]


# ---------------------------------------------------------------------------------------------------
# FaceGate side (run with FaceGate's interpreter)
# ---------------------------------------------------------------------------------------------------


def facegate_worker(out: Path, video: Path | None, max_frames: int, repeats: int) -> None:
    """Pick the frames, save them to out/frames.npy, time FaceGate on them into out/facegate.json."""
    sys.path.insert(0, str(PROJECT))
    from appliance.config import load_config
    from appliance.evaluation.bench import bench_input
    from appliance.vision.align import align_face
    from appliance.vision.detector import MtcnnDetector
    from appliance.vision.embedder import TfliteEmbedder

    cfg = load_config(PROJECT / "config.toml")
    models = PROJECT / "models"

    def detector(min_face: int) -> MtcnnDetector:
        return MtcnnDetector(
            models,
            variant="f32",
            min_face_size=float(min_face),
            thresholds=cfg.detector.thresholds,
            threads=1,
        )

    data = bench_input(video, FRAME_SIZE, detector(40))
    frames = [data.frames[i] for i in spread(len(data.frames), max_frames)]
    np.save(out / "frames.npy", np.stack(frames))
    result: dict[str, Any] = {"source": data.source, "frames": len(frames), "clip_frames": len(data.frames)}
    for min_face in (20, 40, 80):
        ms, found = per_frame_ms(frames, detector(min_face).detect, repeats)
        result[f"detect_min{min_face}_ms"] = ms
        result[f"detect_min{min_face}_with_face"] = sum(bool(f) for f in found)
    det = detector(40)
    for variant in ("f16", "int8"):
        emb = TfliteEmbedder(models, variant=variant, threads=1)

        def pipeline(frame: np.ndarray, emb: TfliteEmbedder = emb) -> int:
            faces = det.detect(frame)
            chips = [align_face(frame, f.landmarks) for f in faces]
            return len(emb.embed_chips(np.stack(chips))) if chips else 0

        ms, counts = per_frame_ms(frames, pipeline, repeats)
        result[f"pipeline_{variant}_ms"] = ms
        result["pipeline_with_face"] = sum(c > 0 for c in counts)
        result["pipeline_faces"] = sum(counts)
    (out / "facegate.json").write_text(json.dumps(result, indent=2))


def run_facegate(python: str, video: Path | None, max_frames: int, repeats: int, tmp: Path) -> dict:
    """Run the FaceGate worker with FaceGate's interpreter; its figures (frames saved in tmp)."""
    cmd = [python, str(Path(__file__).resolve()), "--facegate-worker", str(tmp)]
    cmd += ["--max-frames", str(max_frames), "--repeats", str(repeats)]
    if video is not None:
        cmd += ["--video", str(video)]
    done = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"peers.py: the FaceGate worker ({python}) failed:\n{done.stderr[-2000:]}")
    return json.loads((tmp / "facegate.json").read_text())


# ---------------------------------------------------------------------------------------------------
# Peers (run in .peers-venv)
# ---------------------------------------------------------------------------------------------------


def time_face_recognition(frames: Sequence[np.ndarray], repeats: int) -> dict[str, Any]:
    """face_recognition: HOG detection (1 upsample, its default), then 68 landmarks + encoding per face."""
    import face_recognition

    def detect(frame: np.ndarray) -> list:
        return face_recognition.face_locations(frame, model="hog")

    def full(frame: np.ndarray) -> int:
        return len(face_recognition.face_encodings(frame, detect(frame)))

    detect_ms, found = per_frame_ms(frames, detect, repeats)
    full_ms, counts = per_frame_ms(frames, full, repeats)
    return {
        "detect_ms": detect_ms,
        "detect_with_face": sum(bool(f) for f in found),
        "pipeline_ms": full_ms,
        "pipeline_with_face": sum(c > 0 for c in counts),
        "pipeline_faces": sum(counts),
    }


def fixed_pyramid(width: int, height: int, min_face_size: float, scale_factor: float, min_size: int = 12):
    """The mtcnn package's build_scale_pyramid with its level count fixed.

    mtcnn 1.0.0 counts levels from the image size alone, as if min_face_size were 20, so at 40 or 80 px
    its last levels are smaller than PNet's 12-pixel window and it finds no face at all. Here the
    pyramid stops at the last level whose shorter side is still min_size, as FaceGate's does.
    """
    scales = []
    scale, side = min_size / min_face_size, min(width, height) * min_size / min_face_size
    while side >= min_size:
        scales.append(scale)
        scale *= scale_factor
        side *= scale_factor
    return np.asarray(scales)


def time_mtcnn(frames: Sequence[np.ndarray], repeats: int, threads: int) -> dict[str, Any]:
    """The mtcnn package (Keras on TensorFlow) at min face 20 (its default), 40 and 80 px.

    At 20 px the package runs as released. At 40 and 80 it runs with fixed_pyramid (its own pyramid
    finds nothing there); "<key>_unfixed_with_face" records what the released code finds.
    """
    import tensorflow as tf

    # Must precede any TensorFlow op; one thread to compare with FaceGate's single-thread figures.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import mtcnn.stages.stage_pnet as stage_pnet
    from mtcnn import MTCNN

    model = MTCNN(device="CPU:0")
    released = stage_pnet.build_scale_pyramid
    out: dict[str, Any] = {}
    for min_face in (20, 40, 80):

        def detect(frame: np.ndarray, m: int = min_face) -> list:
            return model.detect_faces(frame, min_face_size=m)

        if min_face != 20:
            out[f"detect_min{min_face}_unfixed_with_face"] = sum(bool(detect(f)) for f in frames)
            stage_pnet.build_scale_pyramid = fixed_pyramid
        try:
            ms, found = per_frame_ms(frames, detect, repeats)
        finally:
            stage_pnet.build_scale_pyramid = released
        out[f"detect_min{min_face}_ms"] = ms
        out[f"detect_min{min_face}_with_face"] = sum(bool(f) for f in found)
    return out


# -- LFW through face_recognition (optional, slow) ---------------------------------------------------


def read_pairs(path: Path) -> list[tuple[str, int, str, int, bool]]:
    """LFW pairs.txt (View 2): (name1, n1, name2, n2, same) for every pair line."""
    pairs = []
    for line in path.read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            pairs.append((parts[0], int(parts[1]), parts[0], int(parts[2]), True))
        elif len(parts) == 4:
            pairs.append((parts[0], int(parts[1]), parts[2], int(parts[3]), False))
    return pairs


def ten_fold_accuracy(distances: np.ndarray, same: np.ndarray) -> float:
    """LFW protocol: for each of 10 folds, the threshold best on the other 9 is scored on it; the mean."""
    folds = np.array_split(np.arange(len(distances)), 10)
    accs = []
    for fold in folds:
        train = np.setdiff1d(np.arange(len(distances)), fold)
        candidates = np.unique(distances[train])
        train_acc = [((distances[train] <= t) == same[train]).mean() for t in candidates]
        t = candidates[int(np.argmax(train_acc))]
        accs.append(((distances[fold] <= t) == same[fold]).mean())
    return float(np.mean(accs))


def lfw_face_recognition(root: Path, limit: int | None) -> dict[str, Any]:
    """face_recognition's accuracy on LFW pairs: HOG detect; when it finds no face, the centre crop."""
    import face_recognition

    pairs = read_pairs(root / "pairs.txt")
    if limit:
        pairs = [pairs[i] for i in spread(len(pairs), limit)]
    cache: dict[Path, np.ndarray] = {}
    no_face = 0

    def encode(name: str, n: int) -> np.ndarray:
        nonlocal no_face
        path = root / name / f"{name}_{n:04d}.jpg"
        if path not in cache:
            image = face_recognition.load_image_file(str(path))
            boxes = face_recognition.face_locations(image)
            if not boxes:  # LFW images are 250x250, centred on the face
                no_face += 1
                boxes = [(68, 182, 182, 68)]
            # The largest face: LFW crops may show other people at the edges.
            box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            cache[path] = face_recognition.face_encodings(image, [box])[0]
        return cache[path]

    t0 = time.perf_counter()
    distances = np.array([np.linalg.norm(encode(a, i) - encode(b, j)) for a, i, b, j, _ in pairs])
    same = np.array([p[4] for p in pairs])
    return {
        "pairs": len(pairs),
        "images": len(cache),
        "no_face": no_face,
        "accuracy_10fold": ten_fold_accuracy(distances, same) if len(pairs) >= 20 else None,
        f"accuracy_at_{FR_TOLERANCE}": float(((distances <= FR_TOLERANCE) == same).mean()),
        "seconds": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------


def ratio_rows(fg: dict, fr: dict, mt: dict) -> list[tuple[str, float, str, float, str]]:
    """(what, peer ms, peer, FaceGate ms, FaceGate) rows of the ratio table."""
    rows = [
        ("detect + embed every face", fr["pipeline_ms"], "face_recognition", fg["pipeline_f16_ms"], "f16"),
        ("detect + embed every face", fr["pipeline_ms"], "face_recognition", fg["pipeline_int8_ms"], "int8"),
        (
            "detect only (HOG / MTCNN min 40)",
            fr["detect_ms"],
            "face_recognition",
            fg["detect_min40_ms"],
            "f32",
        ),
    ]
    for m in (20, 40, 80):
        rows.append(
            (
                f"MTCNN detect, min face {m} px" + ("" if m == 20 else " *"),
                mt[f"detect_min{m}_ms"],
                "mtcnn 1.0.0",
                fg[f"detect_min{m}_ms"],
                "f32",
            )
        )
    return rows


def print_report(fg: dict, fr: dict, mt: dict) -> None:
    """The ratio table: peer ms/frame, FaceGate ms/frame, how many times faster FaceGate is."""
    print(f"\n{fg['frames']} frames of {fg['source']} (of {fg['clip_frames']}), 640x480, one thread each")
    print(f"  {'stage':34s} {'peer':17s} {'ms/frame':>9s} {'FaceGate':>9s} {'ms/frame':>9s} {'speed-up':>9s}")
    for what, peer_ms, peer, fg_ms, variant in ratio_rows(fg, fr, mt):
        print(f"  {what:34s} {peer:17s} {peer_ms:9.1f} {variant:>9s} {fg_ms:9.2f} {peer_ms / fg_ms:8.1f}x")
    print("  * the mtcnn package with its pyramid fixed (fixed_pyramid): as released it finds no face there")
    print("\nframes with a face found")
    print(
        f"  face_recognition HOG: {fr['detect_with_face']}; FaceGate min 40: {fg['detect_min40_with_face']}"
    )
    for m in (20, 40, 80):
        key = f"detect_min{m}_with_face"
        unfixed = mt.get(f"detect_min{m}_unfixed_with_face")
        note = "" if unfixed is None else f" (released pyramid: {unfixed})"
        print(f"  min face {m}: mtcnn package {mt[key]}{note}, FaceGate {fg[key]}")
    print(f"  faces embedded: face_recognition {fr['pipeline_faces']}, FaceGate {fg['pipeline_faces']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--facegate-python",
        default=str(PROJECT / ".venv" / "bin" / "python"),
        help="FaceGate's interpreter (default .venv/bin/python)",
    )
    parser.add_argument(
        "--video", type=Path, help="clip to use (default: the real clip, else a walk-up clip)"
    )
    parser.add_argument("--max-frames", type=int, default=40, help="frames spread over the clip (default 40)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per frame and tool (default 1)")
    parser.add_argument("--tf-threads", type=int, default=1, help="TensorFlow threads for mtcnn (default 1)")
    parser.add_argument("--lfw", action="store_true", help="also LFW accuracy of face_recognition (slow)")
    parser.add_argument("--lfw-root", type=Path, default=LFW_ROOT, help="LFW folder with pairs.txt")
    parser.add_argument(
        "--lfw-pairs", type=int, help="use this many pairs, spread over pairs.txt (default all)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every figure as JSON to OUT")
    parser.add_argument("--facegate-worker", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.facegate_worker is not None:
        facegate_worker(args.facegate_worker, args.video, args.max_frames, args.repeats)
        return 0
    if not Path(args.facegate_python).is_file():
        sys.exit(
            f"peers.py: no FaceGate interpreter at {args.facegate_python}; "
            "run `make dev` or pass --facegate-python"
        )
    with tempfile.TemporaryDirectory(prefix="facegate-peers-") as tmp:
        print("FaceGate (its own venv) ...", flush=True)
        fg = run_facegate(args.facegate_python, args.video, args.max_frames, args.repeats, Path(tmp))
        frames = list(np.load(Path(tmp) / "frames.npy"))
    print("face_recognition 1.3.0 ...", flush=True)
    fr = time_face_recognition(frames, args.repeats)
    print("mtcnn 1.0.0 ...", flush=True)
    mt = time_mtcnn(frames, args.repeats, args.tf_threads)
    print_report(fg, fr, mt)
    result: dict[str, Any] = {"facegate": fg, "face_recognition": fr, "mtcnn": mt}
    if args.lfw:
        if not (args.lfw_root / "pairs.txt").is_file():
            sys.exit(f"peers.py: {args.lfw_root}/pairs.txt not found; pass --lfw-root")
        print("\nLFW through face_recognition ...", flush=True)
        lfw = lfw_face_recognition(args.lfw_root, args.lfw_pairs)
        result["lfw_face_recognition"] = lfw
        acc = lfw["accuracy_10fold"]
        print(
            f"  {lfw['pairs']} pairs, {lfw['images']} images ({lfw['no_face']} without a HOG face): "
            f"accuracy {'n/a' if acc is None else f'{acc * 100:.2f}%'} (10-fold), "
            f"{lfw[f'accuracy_at_{FR_TOLERANCE}'] * 100:.2f}% at distance {FR_TOLERANCE}; "
            f"{lfw['seconds']:.0f} s"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
