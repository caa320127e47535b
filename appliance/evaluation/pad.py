"""`facegate eval pad`: presentation-attack detection error rates (ISO/IEC 30107-3) through the door loop.

A *presentation* is one visit to the door: a video, an image sequence (files `PREFIX_NUMBER.ext` of
one kind in one folder, e.g. NUAA's `0001_00_00_01_134.jpg`: subject, glasses, pose, session, then
the picture number, which orders them), or a still. Each is replayed through a fresh `AccessLoop`
built as `facegate run` builds it (tracking detector, quality gate, embedder, k-of-n policy, liveness
check of [liveness]), with an in-memory lock instead of the relay.

Identity is taken out of the measurement: before its replay, each presentation's own faces (every
distinct target face that passes the quality gate) are enrolled as the only user. That is the attack
that matters (a photo or video of an enrolled user), and it makes a live presentation's refusal the
liveness check's doing, not the matcher's. With [liveness] mode = "off" every usable presentation is
therefore granted (APCER 100%): the baseline.

- accepted: the door opened at least once during the presentation.
- APCER per attack kind: attack presentations accepted / attack presentations of that kind.
- BPCER: live presentations not accepted / live presentations.
- ACER: (APCER of the worst kind + BPCER) / 2.
- A presentation in which no face ever passes the quality gate cannot be enrolled; it is listed
  (`usable: false`) and left out of the rates.
- `refused_not_live` counts presentations with a "not live: ..." deny, `no_decision` those that ended
  with neither a grant nor a deny (the face was never judged live in time): both keep the door shut.

Images stand for camera frames that were sampled from a capture: each image of a sequence is shown
for IMAGE_HOLD_FRAMES frames, a still for STILL_FRAMES frames, at IMAGE_FPS.
"""

from __future__ import annotations

import csv
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.access.door import DoorController
from appliance.access.loop import AccessLoop, DecisionRecord, LivenessCheck
from appliance.access.policy import AccessPolicy
from appliance.access.quality import assess, pick_target
from appliance.app.wiring import build_liveness, quality_limits
from appliance.config import Config
from appliance.domain import Frame, Templates
from appliance.errors import ConfigError
from appliance.hardware.cameras.replay import IMAGE_SUFFIXES, ReplaySource
from appliance.vision.images import read_image
from appliance.vision.tracking import TrackingDetector

KINDS = ("live", "print", "screen_photo", "screen_video")
"""The `kind` values of labels.csv: bona fide, then the attack kinds (presentation attack instruments)."""
ATTACKS = KINDS[1:]
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mpg", ".mpeg", ".mov", ".mkv", ".webm", ".m4v"})
IMAGE_FPS = 15.0
"""The frame rate images are replayed at, frames per second (the door camera's [camera] fps)."""
IMAGE_HOLD_FRAMES = 5
"""Frames each image of a sequence is shown for (a third of a second at IMAGE_FPS)."""
STILL_FRAMES = 30
"""Frames a still is shown for: a face held still at the door for two seconds."""
ENROL_STRIDE = 3
"""Frames between two searches for faces to enrol (see _own_templates)."""
MAX_TEMPLATES = 10
"""Most templates enrolled from one presentation."""
_SEQUENCE = re.compile(r"^(?P<prefix>.+)_(?P<number>\d+)$")


@dataclass(frozen=True)
class Presentation:
    """One visit: its label and the files it is replayed from (one video, or images in order)."""

    name: str
    kind: str
    subject: str
    paths: tuple[Path, ...]

    @property
    def is_video(self) -> bool:
        """True for a video file, False for images."""
        return len(self.paths) == 1 and self.paths[0].suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Outcome:
    """What the door loop did with one presentation."""

    presentation: Presentation
    frames: int = 0
    usable: bool = True
    decisions: list[DecisionRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def accepted(self) -> bool:
        """The door opened (the presentation was accepted as a live enrolled user)."""
        return any(d.decision == "grant" for d in self.decisions)

    @property
    def first_decision(self) -> DecisionRecord | None:
        """The first grant or deny, if any."""
        return self.decisions[0] if self.decisions else None

    def as_json(self) -> dict[str, object]:
        """One row of `presentations` in the JSON output."""
        first = self.first_decision
        return {
            "name": self.presentation.name,
            "kind": self.presentation.kind,
            "subject": self.presentation.subject,
            "frames": self.frames,
            "usable": self.usable,
            "accepted": self.accepted,
            "decision": None if first is None else first.decision,
            "reason": None if first is None else first.reason,
            "time_to_decision_s": None if first is None else round(first.t, 3),
        }


def read_labels(root: Path, labels: Path | None = None) -> list[dict[str, str]]:
    """The rows (path, kind, subject) of labels.csv (default ROOT/labels.csv); ConfigError on bad ones."""
    labels = labels if labels is not None else root / "labels.csv"
    if not root.is_dir():
        raise ConfigError(f"--root {root}: no such folder; give the folder that holds the labelled media.")
    if not labels.is_file():
        raise ConfigError(
            f"{labels}: no labels file; give --labels FILE (CSV with columns path,kind,subject)."
        )
    with labels.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "kind"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(
                f"{labels}: no column {', '.join(sorted(missing))}; it needs path,kind,subject."
            )
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if row["kind"] not in KINDS:
            raise ConfigError(f"{labels} line {number}: kind {row['kind']!r}; use one of {', '.join(KINDS)}.")
        if not (root / row["path"]).is_file():
            raise ConfigError(f"{labels} line {number}: {root / row['path']} does not exist.")
    if not rows:
        raise ConfigError(f"{labels}: no rows; nothing to measure.")
    return rows


def group_presentations(root: Path, rows: list[dict[str, str]]) -> list[Presentation]:
    """Videos and stills one each; images named PREFIX_NUMBER of one kind in one folder as one sequence."""
    out: list[Presentation] = []
    sequences: dict[tuple[str, str, str], list[tuple[int, Path, str]]] = {}
    for row in rows:
        path = root / row["path"]
        subject = row.get("subject") or path.stem
        suffix = path.suffix.lower()
        match = _SEQUENCE.match(path.stem)
        if suffix in VIDEO_SUFFIXES:
            out.append(Presentation(row["path"], row["kind"], subject, (path,)))
        elif suffix in IMAGE_SUFFIXES and match:
            parent = str(Path(row["path"]).parent)
            key = (parent, match["prefix"], row["kind"])
            sequences.setdefault(key, []).append((int(match["number"]), path, subject))
        elif suffix in IMAGE_SUFFIXES:
            out.append(Presentation(row["path"], row["kind"], subject, (path,)))
        else:
            raise ConfigError(f"{path}: neither a video nor an image; remove its row from the labels.")
    for (parent, prefix, kind), items in sequences.items():
        items.sort()
        name = f"{parent}/{prefix}_*" if parent != "." else f"{prefix}_*"
        out.append(Presentation(name, kind, items[0][2], tuple(p for _, p, _ in items)))
    return sorted(out, key=lambda p: (KINDS.index(p.kind), p.name))


def live_videos(paths: list[Path]) -> list[Presentation]:
    """Extra bona fide presentations: the given videos, and every video under the given folders."""
    out = []
    for given in paths:
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        elif given.is_file():
            found = [given]
        else:
            raise ConfigError(f"--also-live {given}: no such file or folder.")
        out += [Presentation(str(p), "live", p.stem, (p,)) for p in found]
    return out


def presentation_frames(p: Presentation) -> Iterator[Frame]:
    """The frames of one presentation, as the door loop sees them (t in seconds from its start)."""
    if p.is_video:
        source = ReplaySource(p.paths[0])
        try:
            yield from source.frames()
        finally:
            source.close()
        return
    hold = STILL_FRAMES if len(p.paths) == 1 else IMAGE_HOLD_FRAMES
    index = 0
    for path in p.paths:
        image = read_image(path)
        for _ in range(hold):
            yield Frame(image, index, index / IMAGE_FPS)
            index += 1


class _MemoryLock:
    """The strike of an evaluation: remembers whether it is locked, drives nothing."""

    def __init__(self) -> None:
        self.is_locked = True

    def lock(self) -> None:
        self.is_locked = True

    def unlock(self) -> None:
        self.is_locked = False

    def close(self) -> None:
        self.is_locked = True


def _own_templates(p: Presentation, cfg: Config, detector: object, embedder: object) -> Templates | None:
    """Every distinct quality-passing target face of the presentation, enrolled as one user; or None.

    A clip may show more than one person (the Hamilton clip cuts to the audience): each target face
    that matches none of the templates so far is added, up to MAX_TEMPLATES, so that identity never
    decides a presentation. Every ENROL_STRIDE-th frame is searched.
    """
    limits = quality_limits(cfg)
    rows: list[np.ndarray] = []
    for frame in presentation_frames(p):
        if len(rows) >= MAX_TEMPLATES:
            break  # enough: the rest of the presentation need not be decoded
        if frame.index % ENROL_STRIDE:
            continue
        faces = detector.detect(frame.image)  # type: ignore[attr-defined]
        target = pick_target(faces, frame.image.shape, limits.min_face_px)
        if target is None or not assess(frame.image, target, limits).ok:
            continue
        embedding = np.asarray(embedder.embed(frame.image, [target])[0], np.float32)  # type: ignore[attr-defined]
        if not rows or float(np.max(np.stack(rows) @ embedding)) < cfg.policy.match_threshold:
            rows.append(embedding)
    if not rows:
        return None
    return Templates(np.array([p.subject] * len(rows)), np.stack(rows))


def run_presentation(
    p: Presentation,
    cfg: Config,
    detector: object,
    embedder: object,
    make_liveness: Callable[[Config], LivenessCheck | None] = build_liveness,
) -> Outcome:
    """Replay one presentation through a fresh door loop with its own face enrolled.

    Args:
        detector: the full-frame MTCNN detector (the loop follows faces with it as `facegate run` does).
        make_liveness: the loop's liveness check, built as `facegate run` builds it; only a simulation
            (bench/challenge_sim.py: prompts forced to a direction) passes another.
    """
    outcome = Outcome(p)
    started = time.perf_counter()
    templates = _own_templates(p, cfg, detector, embedder)
    if templates is None:
        outcome.usable = False
        outcome.frames = sum(1 for _ in presentation_frames(p))
        return outcome
    loop = AccessLoop(
        detector=TrackingDetector(detector, cfg.detector.redetect_every),  # type: ignore[arg-type]
        embedder=embedder,  # type: ignore[arg-type]
        templates=templates,
        policy=AccessPolicy(cfg.policy),
        door=DoorController(_MemoryLock()),
        unlock_s=cfg.policy.unlock_s,
        limits=quality_limits(cfg),
        on_decision=outcome.decisions.append,
        liveness=make_liveness(cfg),
    )
    for frame in presentation_frames(p):
        loop.step(frame, frame.t)
        outcome.frames += 1
    outcome.seconds = time.perf_counter() - started
    return outcome


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def summarise(outcomes: list[Outcome], mode: str) -> dict[str, object]:
    """The JSON object of `eval pad`: rates, counts, times to decision and one row per presentation.

    `time_to_decision_s` is, per kind, the median seconds from a presentation's first frame to its
    first grant or deny; `ms_per_frame` the wall time per replayed frame, enrolment pass included.
    """
    usable = [o for o in outcomes if o.usable]
    counts = {k: sum(1 for o in usable if o.presentation.kind == k) for k in KINDS}
    accepted = {k: sum(1 for o in usable if o.presentation.kind == k and o.accepted) for k in KINDS}
    # Neither let in nor refused: the face was never judged live in time (too short a visit, or a
    # track that kept restarting, e.g. a sequence whose face jumps between sampled images).
    undecided = {k: sum(1 for o in usable if o.presentation.kind == k and not o.decisions) for k in KINDS}
    not_live = {
        k: sum(
            1
            for o in usable
            if o.presentation.kind == k and any(d.reason.startswith("not live") for d in o.decisions)
        )
        for k in KINDS
    }
    apcer = {k: _rate(accepted[k], counts[k]) for k in ATTACKS}
    measured = [v for v in apcer.values() if v is not None]
    apcer_max = max(measured) if measured else None
    bpcer = _rate(counts["live"] - accepted["live"], counts["live"])
    acer = None if apcer_max is None or bpcer is None else (apcer_max + bpcer) / 2
    times: dict[str, float | None] = {}
    for k in KINDS:
        ts = [o.first_decision.t for o in usable if o.presentation.kind == k and o.first_decision]
        times[k] = round(statistics.median(ts), 3) if ts else None
    frames = sum(o.frames for o in outcomes)
    wall = sum(o.seconds for o in outcomes)
    return {
        "mode": mode,
        "apcer": apcer,
        "apcer_max": apcer_max,
        "bpcer": bpcer,
        "acer": acer,
        "counts": counts,
        "accepted": accepted,
        "refused_not_live": not_live,
        "no_decision": undecided,
        "unusable": len(outcomes) - len(usable),
        "time_to_decision_s": times,
        "frames": frames,
        "ms_per_frame": round(1000 * wall / frames, 2) if frames else None,
        "presentations": [o.as_json() for o in outcomes],
    }


def eval_pad(
    presentations: list[Presentation],
    cfg: Config,
    detector: object,
    embedder: object,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, object]:
    """Run every presentation through the door loop of `cfg` and summarise (see `summarise`)."""
    outcomes = []
    for done, p in enumerate(presentations, start=1):
        outcomes.append(run_presentation(p, cfg, detector, embedder))
        progress(done, len(presentations))
    return summarise(outcomes, cfg.liveness.mode)


def format_summary(result: dict[str, object]) -> str:
    """The lines `eval pad` prints: one per kind, then the rates."""

    def pct(v: object) -> str:
        return "-" if v is None else f"{100 * float(v):.1f}%"  # type: ignore[arg-type]

    counts, accepted = result["counts"], result["accepted"]
    times = result["time_to_decision_s"]
    lines = [f"PAD through the door loop, liveness mode {result['mode']}:"]
    for k in KINDS:
        n, a = counts[k], accepted[k]  # type: ignore[index]
        rate = pct(result["bpcer"]) + " BPCER" if k == "live" else pct(result["apcer"][k]) + " APCER"  # type: ignore[index]
        t = times[k]  # type: ignore[index]
        lines.append(
            f"  {k:12s} {a:3d} of {n:3d} accepted  {rate}  first decision after "
            f"{'-' if t is None else f'{t:.2f} s'} (median); {result['refused_not_live'][k]} refused "  # type: ignore[index]
            f"'not live', {result['no_decision'][k]} without a decision"  # type: ignore[index]
        )
    lines.append(
        f"  APCER max {pct(result['apcer_max'])}, BPCER {pct(result['bpcer'])}, ACER {pct(result['acer'])}; "
        f"{result['unusable']} presentation(s) without a usable face left out; "
        f"{result['ms_per_frame']} ms per frame"
    )
    return "\n".join(lines)
