"""Time the face embedder as the appliance runs it (runtime venv; no TensorFlow, no dlib).

    .venv/bin/python -m models.build.embedder_bench [--threads 1] [--runs 200]

Prints, per variant, milliseconds per face for embed_chips (one 150x150 chip per invoke: TFLite
plus the L2 normalisation), and for align_face on a real photo. Median and 90th percentile over
--runs calls after a warm-up.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from appliance.align import TEMPLATE_150, align_face
from appliance.embedder import VARIANTS, TfliteEmbedder

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden" / "embedder_dlib.npz"


def timings(fn, runs: int, warmup: int = 10) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    chips = np.load(GOLDEN)["chips"]
    for variant in VARIANTS:
        t0 = time.perf_counter()
        embedder = TfliteEmbedder(variant=variant, threads=args.threads)
        load = (time.perf_counter() - t0) * 1e3
        ms = timings(lambda e=embedder: e.embed_chips(chips[:1]), args.runs)
        print(
            f"embed {variant:4s} threads={args.threads}: median {np.median(ms):.2f} ms/face, "
            f"p90 {np.percentile(ms, 90):.2f} ms (load {load:.0f} ms)"
        )
    # Alignment on a 640x480 frame with the face at about door-camera size.
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    landmarks = TEMPLATE_150 * 1.2 + [250, 120]
    ms = timings(lambda: align_face(frame, landmarks), args.runs)
    print(f"align_face 640x480 frame: median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms")


if __name__ == "__main__":
    main()
