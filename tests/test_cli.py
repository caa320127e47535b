"""The `facegate` command as a user and a script see it: output, exit status, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import build_parser
from appliance.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def facegate(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("facegate: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert command.description, name
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings}"


def test_version_runs_as_a_module():
    result = facegate("--version")
    assert result.returncode == 0 and result.stdout.startswith("facegate ")


def test_check_config_accepts_the_shipped_file_and_refuses_a_typo(tmp_path):
    assert facegate("check-config", "--config", str(ROOT / "config.toml")).returncode == 0
    bad = tmp_path / "config.toml"
    bad.write_text("[policy]\nmatch_treshold = 0.7\n")
    assert_one_line_error(facegate("check-config", "--config", str(bad)), "match_treshold")


@pytest.fixture(scope="module")
def enrolled_db(tmp_path_factory, photos) -> Path:
    db = tmp_path_factory.mktemp("gallery") / "facegate.db"
    result = facegate("enroll", "obama", str(photos["obama.jpg"]), "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["templates"] == 1
    return db


def users(db: Path) -> list[str]:
    result = facegate("users", "list", "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    return [u["name"] for u in json.loads(result.stdout)]


def test_headless_replay_prints_one_json_line_per_decision(enrolled_db, tmp_path, photos):
    from appliance.evaluation.walkup import walkup_frames, write_video
    from appliance.vision.images import read_image

    image = read_image(photos["obama2.jpg"])
    clip = write_video(walkup_frames(image[: image.shape[0] // 2 * 2]), tmp_path / "walk.mp4")
    db = tmp_path / "copy.db"
    db.write_bytes(enrolled_db.read_bytes())
    result = facegate("run", "--headless", "--json", "--source", str(clip), "--db", str(db))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines, "expected at least one decision"
    for line in lines:
        assert {"t", "frame", "decision", "user", "score", "reason"} <= line.keys()
        assert line["decision"] in ("grant", "deny")
    events = facegate("events", "--json", "--db", str(db))
    kinds = [json.loads(line)["kind"] for line in events.stdout.splitlines()]
    assert kinds.count("service") == 2  # started and stopped


def test_following_faces_and_full_detection_every_frame_grant_the_same_user(
    enrolled_db, tmp_path, photos, liveness_off
):
    from appliance.app.wiring import build_detector
    from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
    from appliance.vision.images import read_image

    image = read_image(photos["obama2.jpg"])
    face = build_detector(load_config(ROOT / "config.toml")).detect(image)[0]
    clip = write_video(walkup_frames(head_and_shoulders(image, face.box)), tmp_path / "walk.mp4")
    granted = {}
    for every in ("5", "1"):
        db = tmp_path / f"copy{every}.db"
        db.write_bytes(enrolled_db.read_bytes())
        result = facegate(
            "run",
            "--headless",
            "--json",
            "--source",
            str(clip),
            "--db",
            str(db),
            "--redetect-every",
            every,
            "--config",
            str(liveness_off),  # the clip is a photo moved in front of the camera
        )
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        granted[every] = [line["user"] for line in lines if line["decision"] == "grant"]
    assert granted["5"] == granted["1"] == ["obama"]


def test_redetect_every_must_be_positive(enrolled_db, tmp_path):
    clip = tmp_path / "none.mp4"
    assert_one_line_error(
        facegate(
            "run", "--headless", "--source", str(clip), "--db", str(enrolled_db), "--redetect-every", "0"
        ),
        "redetect-every",
    )


def test_corrupt_and_truncated_video_are_clear_errors_and_keep_the_gallery(enrolled_db, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01garbage" * 1000)
    assert_one_line_error(
        facegate("run", "--headless", "--source", str(corrupt), "--db", str(enrolled_db)), "corrupt.mp4"
    )
    assert users(enrolled_db) == ["obama"]


def test_text_file_named_jpg_is_refused_at_enrolment(enrolled_db, tmp_path):
    fake = tmp_path / "me.jpg"
    fake.write_text("hello")
    assert_one_line_error(facegate("enroll", "someone", str(fake), "--db", str(enrolled_db)), "me.jpg")
    assert users(enrolled_db) == ["obama"]


def test_runs_from_any_folder_without_a_config_file(photos, tmp_path):
    # No ./config.toml there: the built-in defaults, with the models FaceGate was installed with.
    result = facegate("enroll", "obama", str(photos["obama.jpg"]), "--db", "g.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "g.db").is_file()


def test_missing_camera_is_a_clear_error(enrolled_db):
    assert_one_line_error(facegate("run", "--headless", "--source", "usb:57", "--db", str(enrolled_db)))


def test_locked_database_is_reported_and_left_intact(enrolled_db, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[gallery]\nbusy_timeout_s = 0.2\n")
    holder = sqlite3.connect(enrolled_db)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        assert_one_line_error(
            facegate("users", "rename", "obama", "barack", "--config", str(cfg), "--db", str(enrolled_db)),
            "locked",
        )
    finally:
        holder.rollback()
        holder.close()
    assert users(enrolled_db) == ["obama"]


def test_altered_model_file_is_refused(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for f in (ROOT / "models").iterdir():
        if f.is_file():
            (models / f.name).write_bytes(f.read_bytes())
    victim = models / "embedder_int8.tflite"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[detector]\nmodels_dir = "{models}"\n[embedder]\nvariant = "int8"\n')
    db = tmp_path / "g.db"
    result = facegate("doctor", "--headless", "--no-camera", "--config", str(cfg), "--db", str(db))
    assert result.returncode == 1
    assert "FAIL  models" in result.stdout and "sha256" in result.stdout


def test_doctor_passes_on_a_healthy_headless_setup(tmp_path):
    result = facegate("doctor", "--headless", "--no-camera", "--db", str(tmp_path / "g.db"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout


def test_a_name_can_be_staged_for_enrolment_at_the_door(tmp_path):
    db = tmp_path / "g.db"
    result = facegate("enroll", "dana", "--at-door", "--role", "admin", "--db", str(db))
    assert result.returncode == 0, result.stderr
    from appliance.gallery.store import Gallery

    with Gallery(db) as gallery:
        assert gallery.take_staged_enrolment() == ("dana", "admin")
    assert_one_line_error(facegate("enroll", "erin", "--db", str(db)), "at least one photo")
