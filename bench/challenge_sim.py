"""SIMULATION, not a measurement: liveness mode "challenge" with the prompt forced, per presentation.

    .venv/bin/python bench/challenge_sim.py --root ../shared/data/pad --also-live ../shared/data/video \\
        [--config config.toml] [--json OUT]

Recorded clips cannot answer a random prompt, so `facegate eval pad --mode challenge` measures how
replays fare against a prompt they cannot hear, and refuses live clips too. This replays every
presentation twice through the same door loop (`appliance.evaluation.pad.run_presentation`), once with
every prompt forced to "turn left" and once to "turn right" (a scripted RNG; the appliance always
draws from random.SystemRandom), and prints:

- per attack kind, the chance a replay gets in on one visit with a fair coin for the prompt (the mean
  of its two forced runs) and how many attacks get in under at least one of the two prompts (an
  attacker who retries until the prompt matches the recorded turn);
- for live presentations, a *responsive* BPCER: a live clip counts as let in when it is let in under
  either forced prompt, i.e. as if the person had been asked for the turn the clip happens to contain.
  Live clips without a head turn of challenge_min_yaw_deg within challenge_window_s cannot be made
  responsive this way and stay refused: they say how often people turn unprompted, not whether they
  follow a prompt. No real prompted visits were recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.app.wiring import build_door_detector, build_embedder
from appliance.config import load_config
from appliance.evaluation import pad
from appliance.liveness.check import ChallengeLiveness
from appliance.liveness.decision import Prompt


class Forced(random.Random):
    """Every prompt drawn is `prompt` (simulation only)."""

    def __init__(self, prompt: Prompt) -> None:
        super().__init__(0)
        self.prompt = prompt

    def choice(self, seq: Sequence[Prompt]) -> Prompt:  # type: ignore[override]
        """The forced prompt, whatever the choices."""
        return self.prompt


def main(argv: list[str] | None = None) -> int:
    """Run the simulation and print its table (and write --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--also-live", type=Path, action="append", default=[])
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    cfg = dataclasses.replace(cfg, liveness=dataclasses.replace(cfg.liveness, mode="challenge"))
    presentations = pad.group_presentations(args.root, pad.read_labels(args.root)) + pad.live_videos(
        args.also_live
    )
    detector, embedder = build_door_detector(cfg).detector, build_embedder(cfg)
    rows = []
    for i, p in enumerate(presentations, start=1):
        got = {}
        for prompt in Prompt:
            outcome = pad.run_presentation(
                p, cfg, detector, embedder, lambda c, pr=prompt: ChallengeLiveness(c.liveness, rng=Forced(pr))
            )
            got[str(prompt)] = outcome.accepted if outcome.usable else None
        rows.append({"name": p.name, "kind": p.kind, **got})
        print(f"\r{i}/{len(presentations)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    result: dict[str, object] = {"simulation": True, "per_kind": {}, "presentations": rows}
    print("SIMULATION (prompts forced; not a measurement of people following a prompt)")
    for kind in pad.KINDS:
        mine = [r for r in rows if r["kind"] == kind and r["turn left"] is not None]
        if not mine:
            continue
        left = sum(bool(r["turn left"]) for r in mine)
        right = sum(bool(r["turn right"]) for r in mine)
        either = sum(bool(r["turn left"] or r["turn right"]) for r in mine)
        n = len(mine)
        per_visit = (left + right) / (2 * n)
        result["per_kind"][kind] = {  # type: ignore[index]
            "n": n,
            "accepted_left": left,
            "accepted_right": right,
            "accepted_either": either,
            "accept_rate_random_prompt": per_visit,
        }
        if kind == "live":
            print(
                f"  live          {n:3d}: let in asked left {left}, right {right}; responsive (either) "
                f"{either} -> BPCER {100 * (n - either) / n:.1f}%"
            )
        else:
            print(
                f"  {kind:13s} {n:3d}: let in asked left {left}, right {right}; APCER per visit with a "
                f"random prompt {100 * per_visit:.1f}%, let in under some prompt {either}/{n}"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
