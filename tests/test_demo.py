"""`make demo` (facegate demo), the first command a new user runs: it must show the door opening for the
enrolled person only, and refusing their photo with liveness on, with clean output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_opens_for_the_enrolled_person_only_and_refuses_their_photo(tmp_path, photos):
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "demo", "--workdir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    decisions = [line.split() for line in lines if " frame " in line]
    assert [d[3:5] for d in decisions] == [["GRANT", "obama"], ["DENY", "unknown"], ["DENY", "unknown"]]
    assert "(not live: held" in [line for line in lines if " frame " in line][-1]
    assert "result: the door opened for the enrolled person only" in done.stdout
    assert "Traceback" not in done.stderr and "INFO" not in done.stderr  # the door's log stays out of it
    assert (tmp_path / "demo.db").is_file()
