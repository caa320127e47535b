"""`facegate demo` / `make demo`: the whole appliance on sample input, on any machine.

Enrols Barack Obama from one packaged photo, then replays two walk-up clips made from other photos
(Obama, then Joe Biden who is not enrolled) through the real door loop with mock GPIO pins, printing
each decision. A walk-up clip made from a still is a photo moved in front of the camera, so these
run with [liveness] mode = "off"; the last step replays Obama's clip again with mode = "passive",
where the photo is refused as not live. Only the repository and the package registry are needed
(see appliance/evaluation/samples.py).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from appliance.access.enrolment import embed_photos
from appliance.access.loop import DecisionRecord
from appliance.app.door_process import run_door
from appliance.app.wiring import build_detector, build_embedder, open_gallery, quality_limits
from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.evaluation.samples import cache_dir, sample_photos
from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
from appliance.vision.images import read_image

CLIPS = (
    ("obama2.jpg", "off", "Barack Obama walks up (enrolled), liveness off"),
    ("biden.jpg", "off", "Joe Biden walks up (not enrolled), liveness off"),
    ("obama2.jpg", "passive", "the same photo of Obama moved in front of the camera, liveness passive"),
)


def run_demo(cfg: Config, workdir: Path | None = None) -> int:
    """Run the demo; returns 0 when the door opened for the enrolled person only, else 1."""
    workdir = workdir or cache_dir().parent / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db = workdir / "demo.db"
    cfg = dataclasses.replace(cfg, gpio=dataclasses.replace(cfg.gpio, pin_factory="mock"))
    photos = sample_photos()

    print("FaceGate demo (mock GPIO, sample photos from the face_recognition 1.3.0 package)\n")
    detector, embedder = build_detector(cfg), build_embedder(cfg)
    embeddings, _ = embed_photos(
        [("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, quality_limits(cfg)
    )
    with open_gallery(cfg, db) as gallery:
        gallery.enrol("obama", embeddings, embedder.model_id)
    print(f"1. enrolled 'obama' from obama.jpg into {db}\n")

    granted: dict[tuple[str, str], list[str]] = {}
    refused: dict[tuple[str, str], bool] = {}
    for step, (photo, mode, title) in enumerate(CLIPS, start=2):
        clip = workdir / f"{Path(photo).stem}_walkup.mp4"
        if not clip.exists():
            image = read_image(photos[photo])
            faces = detector.detect(image)
            if len(faces) != 1:
                raise ApplianceError(
                    f"{photos[photo]}: expected one face, found {len(faces)}; delete {cache_dir()}"
                )
            # A walk-up starts from a head-and-shoulders portrait, so the face grows to door size.
            portrait = head_and_shoulders(image, faces[0].box)
            write_video(walkup_frames(portrait), clip)
        print(f"{step}. {title}: replaying {clip.name}")
        decisions: list[DecisionRecord] = []

        def show(rec: DecisionRecord, decisions: list[DecisionRecord] = decisions) -> None:
            decisions.append(rec)
            score = "-" if rec.score is None else f"{rec.score:.3f}"
            who = rec.user or "unknown"
            print(
                f"   {rec.t:5.2f}s frame {rec.frame:3d}  {rec.decision.upper():5s} {who}  "
                f"score {score} ({rec.reason})"
            )

        run_cfg = dataclasses.replace(cfg, liveness=dataclasses.replace(cfg.liveness, mode=mode))
        run_door(run_cfg, source_spec=str(clip), headless=True, db=db, emit=show)
        if not decisions:
            print("   no decision: the door stayed locked")
        granted[photo, mode] = [d.user or "" for d in decisions if d.decision == "grant"]
        refused[photo, mode] = any(d.reason.startswith("not live") for d in decisions)
        print()

    ok = (
        granted["obama2.jpg", "off"] == ["obama"]
        and not granted["biden.jpg", "off"]
        and not granted["obama2.jpg", "passive"]
        and refused["obama2.jpg", "passive"]
    )
    print(
        "result:",
        "the door opened for the enrolled person only, and not for their photo with liveness on"
        if ok
        else f"UNEXPECTED grants {granted}",
    )
    print(f"events: facegate events --db {db}")
    return 0 if ok else 1
