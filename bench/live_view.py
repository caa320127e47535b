"""What the admin page's live view costs the door loop: frame time with and without a watcher.

    .venv/bin/python bench/live_view.py [--video CLIP] [--repeats 5] [--config config.toml]

Runs the door's own loop (the door detector with its face follower, the embedder, liveness as the
config says, one enrolled user) over the same frames (`facegate bench`'s clip: --video, else
../shared/data/video/short_hamilton_clip.mp4, else a generated walk-up), decoded once beforehand, in
three ways, interleaved `--repeats` times so that drifts in the machine's speed hit all alike:

- off: no live view at all (the door before it existed);
- idle: the live view as the door runs it, nobody watching (a stat of `watching` twice a second);
- watched: a "browser" thread touches `watching` and reads live.jpg and live.json every second, as the
  page does; the door shares up to 2 frames a second (copy on the loop, draw + encode + write on the
  writer thread).

Prints the mean and median time per frame (step + the live view's offer) and the overhead against off.
Prints only; not part of `make test`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory

from appliance.access.door import DoorController
from appliance.access.enrolment import embed_photos
from appliance.access.loop import AccessLoop
from appliance.access.policy import AccessPolicy
from appliance.app.live_view import FRAME, INFO, LiveView, touch_watching
from appliance.app.wiring import (
    build_detector,
    build_door_detector,
    build_embedder,
    build_liveness,
    quality_limits,
)
from appliance.config import Config, load_config
from appliance.domain import Frame, Templates
from appliance.evaluation.bench import bench_input
from appliance.gallery.store import Gallery
from appliance.hardware.actuators import RelayDoorLock
from appliance.vision.images import read_image

PROJECT = Path(__file__).resolve().parents[1]
MODES = ("off", "idle", "watched")


class _Browser:
    """Opens the live view every second, as the page's meta refresh does: touch, read both files."""

    def __init__(self, folder: Path):
        self.folder, self.stop, self.reads = folder, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            touch_watching(self.folder)
            for name in (FRAME, INFO):
                try:
                    (self.folder / name).read_bytes()
                    self.reads += 1
                except FileNotFoundError:
                    pass
            self.stop.wait(1.0)


def run_once(
    cfg: Config, embedder: Any, templates: Templates, frames: list[np.ndarray], fps: float, mode: str
) -> dict[str, Any]:
    """One pass over `frames` in `mode`, on a fresh loop (and face follower); per-frame seconds,
    frames written, wall time."""
    loop = AccessLoop(
        detector=build_door_detector(cfg),
        embedder=embedder,
        templates=templates,
        policy=AccessPolicy(cfg.policy),
        door=DoorController(RelayDoorLock(17, active_high=True, pin_factory=MockFactory())),
        unlock_s=cfg.policy.unlock_s,
        limits=quality_limits(cfg),
        liveness=build_liveness(cfg),
    )
    with tempfile.TemporaryDirectory(prefix="facegate-live-bench-") as tmp:
        folder = Path(tmp)
        view = LiveView(folder) if mode != "off" else None
        browser = _Browser(folder) if mode == "watched" else None
        if browser is not None:
            touch_watching(folder)
            browser.thread.start()
        times = []
        t_start = time.perf_counter()
        for i, image in enumerate(frames):
            t0 = time.perf_counter()
            frame = Frame(image, i / fps, i)
            loop.step(frame, frame.t)
            if view is not None:
                view.offer(loop)
            times.append(time.perf_counter() - t0)
        wall = time.perf_counter() - t_start
        written = 0
        if view is not None:
            view.flush()
            written = view.frames_written
            view.close()
        if browser is not None:
            browser.stop.set()
            browser.thread.join()
    return {"times": times, "written": written, "wall": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, help="clip to replay (default: as `facegate bench`)")
    parser.add_argument("--repeats", type=int, default=5, help="passes per mode, interleaved (default 5)")
    parser.add_argument("--config", type=Path, default=PROJECT / "config.toml")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    size = (cfg.camera.width, cfg.camera.height)
    full = build_detector(cfg)
    data = bench_input(args.video, size, full)
    embedder = build_embedder(cfg)
    embeddings, _ = embed_photos(
        [(data.enrol_photo.name, read_image(data.enrol_photo))], full, embedder, quality_limits(cfg)
    )
    with Gallery(":memory:") as g:
        g.enrol("enrolled", embeddings, embedder.model_id)
        templates = g.templates_matrix(embedder.model_id)
    n, (w, h) = len(data.frames), size
    print(f"clip: {data.source}, {n} frames at {w}x{h}; {args.repeats} passes/mode")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    run_once(cfg, embedder, templates, data.frames[:20], data.fps, "off")  # warm-up
    for r in range(args.repeats):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            results[mode].append(run_once(cfg, embedder, templates, data.frames, data.fps, mode))
    base = None
    header = ("mode", "mean ms/frame", "median ms", "fps", "frames shared/s", "vs off")
    print(f"{header[0]:8} {header[1]:>14} {header[2]:>10} {header[3]:>7} {header[4]:>16} {header[5]:>8}")
    for mode in MODES:
        times = [t for res in results[mode] for t in res["times"]]
        mean = statistics.fmean(times) * 1000
        median = statistics.median(times) * 1000
        wall = sum(res["wall"] for res in results[mode])
        shared = sum(res["written"] for res in results[mode]) / wall
        base = mean if base is None else base
        print(
            f"{mode:8} {mean:14.2f} {median:10.2f} {len(times) / wall:7.1f} {shared:16.2f} "
            f"{(mean / base - 1) * 100:+7.1f}%"
        )
    per_pass = {m: [statistics.fmean(res["times"]) * 1000 for res in results[m]] for m in MODES}
    passes = "; ".join(f"{m} " + " ".join(f"{v:.2f}" for v in per_pass[m]) for m in MODES)
    print(f"mean ms/frame per pass: {passes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
