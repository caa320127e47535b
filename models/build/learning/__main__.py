"""`make learn`: compare similarity-learning heads, WCCN, Joint Bayesian and cohort score normalisation with
raw cosine on LFW View 2 and the door benchmark, each model trained only on people it is not tested on.

    .venv/bin/python -m models.build.learning [--root ../shared/data/lfw] [--json out/learn.json]

Prints one table (method | LFW 10-fold accuracy +- std | EER | TAR at FAR 1e-3 | door rank-1 |
FNIR at FPIR 1% and 0.1% | training time) and writes the same rows, per-fold and per-half figures and the
shipping verdict as JSON. The embeddings come from the appliance's own pipeline, computed once and
cached under .cache/learning/ (about 3 minutes for LFW's 13,233 images on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

from appliance.evaluation.accuracy import read_lfw_pairs
from models.build.learning import evaluate, heads
from models.build.learning.embeddings import CACHE_DIR, REPO, load_or_embed
from models.build.learning.methods import CohortNorm, Cosine, HeadMethod, JointBayesian, Wccn
from models.build.learning.protocol import lfw_pairs

COLUMNS = (
    "method",
    "LFW acc (10-fold)",
    "EER",
    "TAR@FAR1e-3",
    "door rank-1",
    "FNIR@FPIR1%",
    "FNIR@FPIR0.1%",
    "train s",
)


def method_factories(settings: heads.TrainSettings) -> dict[str, evaluate.MethodFactory]:
    """Every method of the table by name, each a factory of a fresh unfitted method."""
    out: dict[str, evaluate.MethodFactory] = {
        "raw cosine": Cosine,
        "raw cosine + cohort norm": lambda: CohortNorm(Cosine()),
        "raw cosine + cohort norm (person means)": lambda: CohortNorm(Cosine(), per_person=True),
    }
    for kind in heads.HEADS:
        for loss in heads.LOSSES:
            out[f"{kind} head, {loss}"] = lambda k=kind, l=loss: HeadMethod(k, l, settings)  # noqa: E741
    out["WCCN"] = Wccn
    out["WCCN + cohort norm"] = lambda: CohortNorm(Wccn())
    out["Joint Bayesian"] = JointBayesian
    return out


MULTI_TEMPLATE = {
    # name -> (factory, door template rule); door only, 3 images enrolled per person
    "raw cosine, 3 templates, max": (Cosine, "max"),
    "raw cosine, 3 templates, centroid": (Cosine, "centroid"),
    "raw cosine + cohort norm, 3 templates, centroid": (lambda: CohortNorm(Cosine()), "centroid"),
    "raw cosine + cohort norm, 3 templates, max": (lambda: CohortNorm(Cosine()), "max"),
}


def _pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:.2f}"


def _num(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _call(gain: float, noise: float) -> str:
    """How a gain over raw cosine compares with the noise (twice its standard error)."""
    return "better" if gain > noise else "worse" if gain < -noise else "within the noise"


def table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    cells = [list(COLUMNS)]
    for r in rows:
        acc = (
            "-"
            if r["lfw_accuracy"] is None
            else f"{r['lfw_accuracy'] * 100:.2f} +- {r['lfw_accuracy_std'] * 100:.2f}"
        )
        cells.append(
            [
                r["method"],
                acc,
                _pct(r["eer"]),
                _pct(r["tar_at_far_1e-3"]),
                _pct(r["door_rank1"]),
                _num(r["fnir_at_fpir_1e-2"]),
                _num(r["fnir_at_fpir_1e-3"]),
                f"{r['train_time_s']:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = [
        " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.build.learning", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--root", type=Path, default=REPO.parent / "shared" / "data" / "lfw", help="LFW folder"
    )
    parser.add_argument("--pairs", type=Path, help="LFW View 2 pairs file (default ROOT/pairs.txt)")
    parser.add_argument(
        "--json", type=Path, default=REPO / "out" / "learn.json", help="where to write the JSON"
    )
    parser.add_argument(
        "--config", type=Path, help="config.toml whose detector and embedder embed the images"
    )
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the embeddings are cached")
    parser.add_argument("--only", help="method names to run, separated by semicolons (default: all)")
    parser.add_argument(
        "--steps", type=int, default=heads.TrainSettings.steps, help="training steps per head"
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"learn: error: {args.root}: no such folder; give the LFW folder with --root", file=sys.stderr)
        return 2
    pairs_file = args.pairs or args.root / "pairs.txt"
    data = load_or_embed(args.root, args.config, cache_dir=args.cache_dir)
    pairs = lfw_pairs(read_lfw_pairs(pairs_file), data.paths)
    settings = heads.TrainSettings(steps=args.steps)
    factories = method_factories(settings)
    multi = dict(MULTI_TEMPLATE)
    if args.only:
        wanted = [w.strip() for w in args.only.split(";")]
        factories = {k: v for k, v in factories.items() if k in wanted}
        multi = {k: v for k, v in multi.items() if k in wanted}
    start = time.monotonic()
    results: dict[str, tuple[evaluate.LfwResult, evaluate.DoorResult]] = {}
    rows: list[dict] = []
    for name, make in factories.items():
        t0 = time.monotonic()
        lfw = evaluate.lfw_view2(make, data, pairs)
        door = evaluate.door(make, data)
        results[name] = (lfw, door)
        rows.append(
            {
                "method": name,
                "lfw_accuracy": lfw.accuracy,
                "lfw_accuracy_std": lfw.accuracy_std,
                "eer": lfw.eer,
                "tar_at_far_1e-3": lfw.tar_at_far_1e3,
                "door_rank1": door.rank1,
                "fnir_at_fpir_1e-2": door.fnir_at_fpir_1e2,
                "fnir_at_fpir_1e-3": door.fnir_at_fpir_1e3,
                "train_time_s": sum(lfw.seconds) + sum(h.seconds for h in door.halves),
                "lfw_fold_accuracies": lfw.fold_accuracies,
                "lfw_fold_thresholds": lfw.fold_thresholds,
                "door_halves": [asdict(h) for h in door.halves],
                "enrol_images": 1,
            }
        )
        print(f"  {name}: done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    for name, (make, rule) in multi.items():
        door = evaluate.door(make, data, enrol_images=3, templates=rule)
        rows.append(
            {
                "method": name,
                "lfw_accuracy": None,
                "lfw_accuracy_std": None,
                "eer": None,
                "tar_at_far_1e-3": None,
                "door_rank1": door.rank1,
                "fnir_at_fpir_1e-2": door.fnir_at_fpir_1e2,
                "fnir_at_fpir_1e-3": door.fnir_at_fpir_1e3,
                "train_time_s": sum(h.seconds for h in door.halves),
                "lfw_fold_accuracies": None,
                "lfw_fold_thresholds": None,
                "door_halves": [asdict(h) for h in door.halves],
                "enrol_images": 3,
            }
        )
    verdicts = {}
    if "raw cosine" in results:
        for name, res in results.items():
            if name != "raw cosine":
                verdicts[name] = asdict(evaluate.beyond_noise(res, results["raw cosine"]))
    heads_that_beat = [n for n, v in verdicts.items() if v["beats"] and "head" in n]
    report = {
        "rows": rows,
        "verdicts": verdicts,
        "ships": heads_that_beat[0] if heads_that_beat else None,
        "model_id": data.model_id,
        "images": int(len(data.paths)),
        "no_face": int((~data.has_face).sum()),
        "train_settings": asdict(settings),
        "protocol": (
            "LFW View 2: per fold, train on the people of the other nine folds, threshold on their pairs; "
            "EER and TAR over the pooled test-fold scores, each fold z-normalised by its model's "
            "impostor scores on the training folds. "
            "Door: people split by SHA-256(name)[0] & 1, "
            "train on one half, open-set 1:N on the other (first image enrolled, or 3 for the template "
            "rows), both directions averaged."
        ),
        "seconds": time.monotonic() - start,
    }
    print(table(rows))
    print(f"\nembeddings {data.model_id}: {len(data.paths)} LFW images, no face in {report['no_face']}")
    for name, v in verdicts.items():
        print(
            f"  {name}: LFW accuracy {v['lfw_gain'] * 100:+.2f} points (noise {v['lfw_noise'] * 100:.2f}): "
            f"{_call(v['lfw_gain'], v['lfw_noise'])}; door FNIR@FPIR1% {-v['door_gain']:+.3f} "
            f"(noise {v['door_noise']:.3f}): {_call(v['door_gain'], v['door_noise'])}"
            + ("; BEATS raw cosine on both" if v["beats"] else "")
        )
    print(
        "ships: "
        + (report["ships"] or "nothing (no head beats raw cosine beyond the noise on both benchmarks)")
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
