"""Time the MTCNN detector per 640x480 frame with one face, for each model variant and min face size.

Runtime venv (TFLite only):

    nice .venv/bin/python -m models.build.mtcnn_bench [--runs 60] [--min-face 40 80]
        [--models LABEL=DIR:VARIANT ...]

Frames: six frames of ../shared/data/video/short_hamilton_clip.mp4 (frames 100-200, one face of 85-100
px), resized to 640x480. One thread. Variants and frames are interleaved run by run so that a busy
machine slows them alike; the figure is the median over all runs and frames. Also prints how many
XNNPACK partitions each model's graph falls into (1 = the whole graph is delegated), and where a
frame's time goes: the three networks' TFLite runs and everything else (pyramid resampling, box
decoding, NMS, crops), with the number of PNet proposals and of ONet inputs per frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VIDEO = ROOT.parent / "shared" / "data" / "video" / "short_hamilton_clip.mp4"
FRAMES = (100, 120, 140, 160, 180, 200)
SHAPES = {"pnet": [1, 240, 320, 3], "rnet": [1, 24, 24, 3], "onet": [1, 48, 48, 3]}


def frames() -> list[np.ndarray]:
    """The benchmark frames, RGB uint8 640x480."""
    cap = cv2.VideoCapture(str(VIDEO))
    out, i = [], 0
    while len(out) < len(FRAMES):
        ok, bgr = cap.read()
        if not ok:
            raise SystemExit(f"{VIDEO}: cannot read frame {i}")
        if i in FRAMES:
            out.append(
                cv2.cvtColor(cv2.resize(bgr, (640, 480), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            )
        i += 1
    return out


def partitions(path: Path, net: str) -> tuple[int, int]:
    """(XNNPACK delegate partitions, nodes left to TFLite's own kernels) of one model file."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.resize_tensor_input(it.get_input_details()[0]["index"], SHAPES[net], strict=False)
    it.allocate_tensors()
    ops = it._get_ops_details()  # noqa: SLF001 - the execution plan is not public
    dels = [o for o in ops if o["op_name"] == "DELEGATE"]
    d_out = {t for o in dels for t in o["outputs"]}
    d_in = {t for o in dels for t in o["inputs"]}
    orig = [o for o in ops if o["op_name"] != "DELEGATE"]
    inside = {o["index"] for o in orig if set(o["outputs"]) & d_out}
    grown = True
    while grown:  # a node is delegated when a delegated node reads a tensor of it that is delegate-internal
        grown = False
        for o in orig:
            if o["index"] not in inside and any(
                c["index"] in inside and (set(o["outputs"]) & set(c["inputs"])) - d_in for c in orig
            ):
                inside.add(o["index"])
                grown = True
    return len(dels), len(orig) - len(inside)


def main() -> int:
    """Print the partition counts and the speed table."""
    from appliance.vision.detector import MtcnnDetector, model_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="timed passes over the frames")
    parser.add_argument("--min-face", type=float, nargs="+", default=[40.0, 80.0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[f"f32={ROOT / 'models'}:f32", f"int8={ROOT / 'models'}:int8"],
        help="LABEL=DIR:VARIANT, DIR holding SHA256SUMS",
    )
    args = parser.parse_args()
    specs = []
    for s in args.models:
        label, rest = s.split("=", 1)
        folder, variant = rest.rsplit(":", 1)
        specs.append((label, Path(folder), variant))
    for label, folder, variant in specs:
        parts = {n: partitions(folder / model_file(n, variant), n) for n in SHAPES}
        print(
            f"{label}: "
            + ", ".join(f"{n} {p} partition(s), {k} node(s) outside XNNPACK" for n, (p, k) in parts.items())
        )
    imgs = frames()
    print(f"\nms per 640x480 frame, 1 thread, median of {args.runs} x {len(imgs)} detections")
    print("| variant | " + " | ".join(f"min face {m:g} px" for m in args.min_face) + " |")
    print("|---|" + "---:|" * len(args.min_face))
    results = {label: [] for label, _, _ in specs}
    for m in args.min_face:
        dets = {
            label: MtcnnDetector(folder, variant=v, min_face_size=m, threads=1) for label, folder, v in specs
        }
        times: dict[str, list[float]] = {label: [] for label in dets}
        for det in dets.values():
            for img in imgs:
                det.detect(img)  # build the per-shape PNet interpreters
        for _ in range(args.runs):
            for label, det in dets.items():
                for img in imgs:
                    t0 = time.perf_counter()
                    det.detect(img)
                    times[label].append(time.perf_counter() - t0)
        for label in dets:
            results[label].append(np.median(times[label]) * 1e3)
    for label, row in results.items():
        print(f"| {label} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    print("\nwhere the time goes, ms per frame (mean over the frames; RNet and ONet run once, batched)")
    print("| variant | min face | total | PNet runs | RNet run | ONet run | rest | proposals | ONet inputs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in args.min_face:
        for label, folder, v in specs:
            det = MtcnnDetector(folder, variant=v, min_face_size=m, threads=1)
            row = stage_times(det, imgs, args.runs)
            print(f"| {label} | {m:g} | " + " | ".join(f"{x:.1f}" for x in row) + " |")
    return 0


def stage_times(det: object, imgs: list[np.ndarray], runs: int) -> list[float]:
    """[total, pnet, rnet, onet, rest] ms and [proposals, onet inputs] per frame, means over runs x imgs."""
    spent = {"pnet": 0.0, "rnet": 0.0, "onet": 0.0}
    batch = {"rnet": 0, "onet": 0}

    def timed(run, net):  # wraps one model's run() to add up its time and batch sizes
        def wrapper(x):
            t0 = time.perf_counter()
            out = run(x)
            spent[net] += time.perf_counter() - t0
            if net in batch:
                batch[net] += len(x)
            return out

        return wrapper

    for img in imgs:
        det.detect(img)  # build the per-shape PNet interpreters, then wrap every model's run()
    for model in det._pnets.values():  # noqa: SLF001 - instrumenting the detector's own models
        model.run = timed(model.run, "pnet")
    det._rnet.run = timed(det._rnet.run, "rnet")  # noqa: SLF001
    det._onet.run = timed(det._onet.run, "onet")  # noqa: SLF001
    total = 0.0
    for _ in range(runs):
        for img in imgs:
            t0 = time.perf_counter()
            det.detect(img)
            total += time.perf_counter() - t0
    n = runs * len(imgs)
    nets = [spent[k] / n * 1e3 for k in ("pnet", "rnet", "onet")]
    return [total / n * 1e3, *nets, total / n * 1e3 - sum(nets), batch["rnet"] / n, batch["onet"] / n]


if __name__ == "__main__":
    raise SystemExit(main())
