"""The whole appliance on recorded video: `facegate enroll`, then `facegate run --headless --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def facegate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def decisions(clip: Path, db: Path) -> list[dict]:
    result = facegate("run", "--headless", "--json", "--source", str(clip), "--db", str(db))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def video(shared_data: Path) -> Path:
    return shared_data / "video"


def test_person_enrolled_from_a_still_is_granted_and_only_them(video, tmp_path):
    db = tmp_path / "g.db"
    enrol = facegate("enroll", "lin", str(video / "lin-manuel-miranda.png"), "--db", str(db))
    assert enrol.returncode == 0, enrol.stderr
    # A second user who also appears (briefly, in the audience) must not be granted.
    enrol = facegate("enroll", "alex", str(video / "alex-lacamoire.png"), "--db", str(db))
    assert enrol.returncode == 0, enrol.stderr
    seen = decisions(video / "short_hamilton_clip.mp4", db)
    grants = [d for d in seen if d["decision"] == "grant"]
    assert grants, "Lin-Manuel Miranda was not let in"
    assert {d["user"] for d in grants} == {"lin"}
    assert all(d["score"] >= 0.9 for d in grants)


def test_nobody_enrolled_means_no_grant(video, tmp_path):
    seen = decisions(video / "short_hamilton_clip.mp4", tmp_path / "empty.db")
    assert [d for d in seen if d["decision"] == "grant"] == []


def test_truncated_mp4_is_refused_in_one_line(video, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = (video / "short_hamilton_clip.mp4").read_bytes()
    cut.write_bytes(data[: len(data) // 3])  # the index (moov atom) is at the end: nothing decodes
    result = facegate("run", "--headless", "--json", "--source", str(cut), "--db", str(tmp_path / "g.db"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cut.mp4 cannot be decoded" in result.stderr


def test_truncated_mpeg_is_replayed_up_to_the_cut(video, tmp_path):
    clip = video / "grid" / "bbaf2n.mpg"
    cut = tmp_path / "cut.mpg"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    full = facegate("run", "--headless", "--source", str(clip), "--db", str(tmp_path / "a.db"))
    part = facegate("run", "--headless", "--source", str(cut), "--db", str(tmp_path / "b.db"))
    assert full.returncode == 0 and part.returncode == 0, part.stderr
    frames = [int(r.stderr.split(" after ")[1].split()[0]) for r in (full, part)]
    assert 0 < frames[1] < frames[0]
