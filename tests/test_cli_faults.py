"""Bad input and faults through every kind of `facegate` command: one `facegate: error:` line that says
what to do, a non-zero exit, no traceback, and nothing created or lost on the way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import one_line_error, run

from appliance.cli import main

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("cli_tmp")


@pytest.mark.parametrize(
    "command",
    [["users", "list"], ["users", "show", "dana"], ["users", "remove", "dana"], ["events"]],
)
def test_a_mistyped_db_is_an_error_and_creates_nothing(capsys, tmp_path, command):
    typo = tmp_path / "galery.db"
    code, _, err = run(capsys, *command, "--db", typo)
    assert code == 1
    one_line_error(err, "there is no gallery at", "galery.db")
    assert not typo.exists()


def test_a_limit_too_large_for_sqlite_is_one_line(capsys, staged_gallery):
    gallery = staged_gallery
    code, _, err = run(capsys, "events", "--db", gallery, "--limit", str(10**20))
    assert code == 1
    one_line_error(err, "out of range")


def test_a_closed_pipe_ends_quietly(staged_gallery):
    gallery = staged_gallery
    # `facegate events | head -1`: the reader goes away after one line.
    for i in range(200):
        main(["enroll", f"p{i}", "--at-door", "--db", str(gallery)])
    facegate = [sys.executable, "-m", "appliance", "events", "--db", str(gallery), "--limit", "200"]
    writer = subprocess.Popen(facegate, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None
    writer.stdout.readline()
    writer.stdout.close()
    _, err = writer.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert writer.returncode in (0, 141)


def test_check_config_warns_about_a_threshold_that_lets_strangers_in(capsys, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[policy]\nmatch_threshold = 0.0\n")
    code, out, err = run(capsys, "check-config", "--config", config)
    assert code == 0
    assert "facegate: warning: policy.match_threshold = 0.0 is below 0.9" in err


def test_add_photos_adds_templates_to_an_existing_user_and_is_named_by_the_duplicate_message(
    capsys, tmp_path, photos
):
    db = tmp_path / "g.db"
    code, _, err = run(capsys, "enroll", "obama", photos["obama.jpg"], "--db", db)
    assert code == 0, err
    code, _, err = run(capsys, "enroll", "obama", photos["obama2.jpg"], "--db", db)
    assert code == 1
    one_line_error(err, "facegate users add-photos obama PHOTO")
    code, out, err = run(capsys, "users", "add-photos", "obama", photos["obama2.jpg"], "--db", db)
    assert code == 0, err
    assert "added 1 template(s)" in out
    code, out, _ = run(capsys, "users", "show", "obama", "--db", db, "--json")
    assert '"templates": 2' in out


def test_add_photos_refuses_a_photo_of_another_enrolled_user(capsys, tmp_path, photos):
    db = tmp_path / "g.db"
    assert run(capsys, "enroll", "obama", photos["obama.jpg"], "--db", db)[0] == 0
    assert run(capsys, "enroll", "biden", photos["biden.jpg"], "--db", db)[0] == 0
    code, _, err = run(capsys, "users", "add-photos", "biden", photos["obama2.jpg"], "--db", db)
    assert code == 1
    one_line_error(err, "already matches enrolled user 'obama'")


def test_add_photos_to_a_missing_user_is_one_line(capsys, staged_gallery, photos):
    gallery = staged_gallery
    code, _, err = run(capsys, "users", "add-photos", "nobody", photos["obama.jpg"], "--db", gallery)
    assert code == 1
    one_line_error(err, "nobody")


def test_add_photos_refuses_a_photo_of_someone_not_enrolled(capsys, tmp_path, photos):
    db = tmp_path / "g.db"
    assert run(capsys, "enroll", "obama", photos["obama.jpg"], photos["obama2.jpg"], "--db", db)[0] == 0
    code, _, err = run(capsys, "users", "add-photos", "obama", photos["biden.jpg"], "--db", db)
    assert code == 1
    one_line_error(err, "biden.jpg")
    code, out, _ = run(capsys, "users", "show", "obama", "--db", db, "--json")
    assert '"templates": 2' in out
