"""Every command over a table of bad inputs: each gives one `facegate: error:` line that says what to do,
a non-zero exit and no traceback, and leaves the gallery as it was.

The table is what a hostile first week produces: damaged configs and model folders, galleries that are
not galleries, templates of the wrong size, media that is not media, outputs that cannot be written.
Each row runs in-process (the same `main` as the `facegate` command) in its own empty folder.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_run import one_line_error, run

from appliance.gallery.store import Gallery
from appliance.vision.model_files import MODELS_DIR

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("cli_tmp")

# Every command, with the arguments that make it do its job; {db}, {photo}, {config} are filled in.
COMMANDS: dict[str, list[str]] = {
    "run": ["run", "--headless", "--source", "{video}", "--db", "{db}"],
    "enroll": ["enroll", "newcomer", "{photo}", "--db", "{db}"],
    "users list": ["users", "list", "--db", "{db}"],
    "users show": ["users", "show", "dana", "--db", "{db}"],
    "users add-photos": ["users", "add-photos", "dana", "{photo}", "--db", "{db}"],
    "users rename": ["users", "rename", "dana", "dora", "--db", "{db}"],
    "users deactivate": ["users", "deactivate", "dana", "--db", "{db}"],
    "events": ["events", "--db", "{db}"],
    "check-config": ["check-config"],
    "doctor": ["doctor", "--headless", "--no-camera", "--db", "{db}"],
    "eval door": ["eval", "door", "--root", "{people}"],
    "bench": ["bench", "--video", "{video}"],
}
# Commands that read models (a damaged model folder must stop them, and only them).
MODEL_COMMANDS = ["run", "enroll", "users add-photos", "doctor", "eval door", "bench"]
GALLERY_COMMANDS = [c for c, argv in COMMANDS.items() if "{db}" in argv]


@pytest.fixture
def world(tmp_path, photos, enrolment_clip) -> dict[str, Path]:
    """A working setup: a gallery with user dana, a photo of someone else, a clip, a people folder."""
    db = tmp_path / "g.db"
    from appliance.vision.embedder import MODEL_ID

    with Gallery(db) as gallery:
        unit = np.zeros((1, 128), np.float32)
        unit[0, 0] = 1.0
        gallery.enrol("dana", unit, MODEL_ID)
    people = tmp_path / "people"
    for person, names in {"obama": ["obama.jpg", "obama2.jpg"], "biden": ["biden.jpg"]}.items():
        (people / person).mkdir(parents=True)
        for name in names:
            shutil.copy(photos[name], people / person / name)
    return {"db": db, "photo": photos["biden.jpg"], "video": enrolment_clip, "people": people}


def argv_of(command: str, world: dict[str, Path], **override: Path | str) -> list[str]:
    values = {k: str(v) for k, v in world.items()} | {k: str(v) for k, v in override.items()}
    return [part.format(**values) for part in COMMANDS[command]]


def snapshot(db: Path) -> list[tuple]:
    """The gallery's users and templates, to show that a failed command lost nothing."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT u.name, u.active, t.embedding FROM users u"
            " JOIN templates t ON t.user_id = u.id ORDER BY t.id"
        ).fetchall()


def assert_refused(capsys, argv: list[str], *fragments: str) -> str:
    """The command failed with one error line holding `fragments` (doctor: one FAIL line, as it reports)."""
    code, out, err = run(capsys, *argv)
    assert code != 0, f"{argv} exited 0\n{err}"
    if argv[0] != "doctor":
        return one_line_error(err, *fragments)
    assert "Traceback" not in err
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any(all(f in line for f in fragments) for line in failed), out
    return failed[0]


# -- damaged configs: every command ------------------------------------------------------------------

BAD_CONFIGS: dict[str, Callable[[Path], Path | str]] = {
    "a TOML syntax error": lambda d: _write(d / "c.toml", "[policy\nmatch_threshold = 0.95\n"),
    "an unknown key": lambda d: _write(d / "c.toml", "[policy]\nmatch_treshold = 0.95\n"),
    "a value out of range": lambda d: _write(d / "c.toml", "[policy]\nmatch_threshold = 1.5\n"),
    "a folder": lambda d: _mkdir(d / "conf.d"),
    "/dev/zero": lambda d: "/dev/zero",
    "binary junk": lambda d: _write_bytes(d / "c.toml", bytes(range(256)) * 8),
    "a missing file": lambda d: d / "nowhere.toml",
}
CONFIG_FRAGMENT = {
    "a TOML syntax error": "c.toml",
    "an unknown key": "did you mean",
    "a value out of range": "match_threshold",
    "a folder": "conf.d",
    "/dev/zero": "/dev/zero",
    "binary junk": "c.toml",
    "a missing file": "nowhere.toml",
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("bad", list(BAD_CONFIGS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_config_stops_every_command_with_one_line(capsys, tmp_path, world, command, bad):
    config = BAD_CONFIGS[bad](tmp_path)
    before = snapshot(world["db"])
    assert_refused(capsys, [*argv_of(command, world), "--config", str(config)], CONFIG_FRAGMENT[bad])
    assert snapshot(world["db"]) == before


# -- damaged model folders: every command that loads models -----------------------------------------


def _models_copy(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models, ignore=shutil.ignore_patterns("build", "*.png", "README.md"))
    return models


BAD_MODELS: dict[str, tuple[Callable[[Path], None], str]] = {
    "a SHA256SUMS line that is not `digest  name`": (
        lambda m: (m / "SHA256SUMS").write_text((m / "SHA256SUMS").read_text() + "garbage\n"),
        "SHA256SUMS, line",
    ),
    "SHA256SUMS that is binary": (
        lambda m: (m / "SHA256SUMS").write_bytes(b"\xff\xfe\x00" * 50),
        "not a text file",
    ),
    "no SHA256SUMS": (lambda m: (m / "SHA256SUMS").unlink(), "cannot read the model manifest"),
    "a model file truncated": (
        lambda m: (m / "embedder_int8.tflite").write_bytes((m / "embedder_int8.tflite").read_bytes()[:1000]),
        "embedder_int8.tflite",
    ),
    "a model file that is a folder": (
        lambda m: ((m / "mtcnn_pnet_int8.tflite").unlink(), (m / "mtcnn_pnet_int8.tflite").mkdir()),
        "mtcnn_pnet_int8.tflite",
    ),
}


@pytest.mark.parametrize("bad", list(BAD_MODELS))
@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_a_damaged_model_folder_stops_every_model_command_with_one_line(
    capsys, tmp_path, world, command, bad
):
    models = _models_copy(tmp_path)
    damage, fragment = BAD_MODELS[bad]
    damage(models)
    config = _write(tmp_path / "c.toml", f'[detector]\nmodels_dir = "{models}"\n')
    before = snapshot(world["db"])
    argv = [*argv_of(command, world), "--config", str(config)]
    assert_refused(capsys, argv, fragment)
    assert snapshot(world["db"]) == before


# -- galleries that are not galleries, and damaged templates ----------------------------------------

BAD_GALLERIES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a text file": (lambda d: _write(d / "notes.db", "not a database\n" * 100), "not a FaceGate gallery"),
    "a folder": (lambda d: _mkdir(d / "gallery.db"), "gallery.db"),
    "in a missing folder": (lambda d: d / "missing" / "g.db", "missing"),
}


@pytest.mark.parametrize("bad", list(BAD_GALLERIES))
@pytest.mark.parametrize("command", [c for c in GALLERY_COMMANDS if c != "doctor"])
def test_a_gallery_that_is_not_one_stops_every_gallery_command(capsys, tmp_path, world, command, bad):
    make, fragment = BAD_GALLERIES[bad]
    db = make(tmp_path)
    before = db.read_bytes() if db.is_file() else None
    assert_refused(capsys, argv_of(command, world, db=db), fragment)
    assert (db.read_bytes() if db.is_file() else None) == before
    assert not (db.parent / f"{db.name}-wal").exists()


@pytest.mark.parametrize("command", ["run", "enroll", "users add-photos"])
@pytest.mark.parametrize("size", [0, 3, 508])
def test_a_template_of_the_wrong_size_is_named_and_kept(capsys, world, command, size):
    from appliance.vision.embedder import MODEL_ID

    with Gallery(world["db"]) as gallery:  # healthy users beside the damaged one, who must be named
        for k, name in enumerate(["erin", "fay"], 1):
            unit = np.zeros((1, 128), np.float32)
            unit[0, k] = 1.0
            gallery.enrol(name, unit, MODEL_ID)
    with sqlite3.connect(world["db"]) as conn:
        conn.execute(
            "UPDATE templates SET embedding = ? WHERE user_id = (SELECT id FROM users WHERE name = 'dana')",
            [b"\x01" * size],
        )
    before = snapshot(world["db"])
    # enroll compares the newcomer with everyone enrolled, so it reads the damaged template too.
    assert_refused(capsys, argv_of(command, world), "'dana'", "damaged", "facegate users remove dana")
    assert snapshot(world["db"]) == before


# -- media that is not media -----------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


BAD_PHOTOS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "text named .jpg": (lambda d: _write(d / "face.jpg", "hello\n"), "face.jpg"),
    "an empty file": (lambda d: _write(d / "face.png", ""), "face.png"),
    "a folder": (lambda d: _mkdir(d / "face.jpg"), "face.jpg"),
    "a missing file": (lambda d: d / "nowhere.jpg", "nowhere.jpg"),
    "a PNG claiming 2^31 pixels": (
        lambda d: _write_bytes(d / "huge.png", _png_claiming(65536, 32768)),
        "pixels",
    ),
    "a truncated JPEG": (
        lambda d: _write_bytes(d / "cut.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 40),
        "cut.jpg",
    ),
}


@pytest.mark.parametrize("bad", list(BAD_PHOTOS))
@pytest.mark.parametrize("command", ["enroll", "users add-photos"])
def test_a_photo_that_is_not_a_photo_is_named_and_nothing_is_stored(capsys, tmp_path, world, command, bad):
    make, fragment = BAD_PHOTOS[bad]
    before = snapshot(world["db"])
    assert_refused(capsys, argv_of(command, world, photo=make(tmp_path)), fragment)
    assert snapshot(world["db"]) == before


BAD_VIDEOS: dict[str, Callable[[Path], Path]] = {
    "random bytes named .mp4": lambda d: _write_bytes(d / "clip.mp4", np.random.default_rng(0).bytes(50_000)),
    "an empty file": lambda d: _write(d / "clip.mp4", ""),
    "a missing file": lambda d: d / "clip.mp4",
    "an empty folder": lambda d: _mkdir(d / "clip.mp4"),
}


@pytest.mark.parametrize("bad", list(BAD_VIDEOS))
@pytest.mark.parametrize("command", ["run", "bench"])
def test_a_video_that_is_not_a_video_is_named(capsys, tmp_path, world, command, bad):
    before = snapshot(world["db"])
    assert_refused(capsys, argv_of(command, world, video=BAD_VIDEOS[bad](tmp_path)), "clip.mp4")
    assert snapshot(world["db"]) == before


# -- outputs that cannot be written ----------------------------------------------------------------

BAD_OUTPUTS: dict[str, tuple[Callable[[Path], Path | str], str]] = {
    "a missing folder": (lambda d: d / "missing" / "out", "missing"),
    "a folder": (lambda d: _mkdir(d / "outdir"), "outdir"),
    "/dev/full": (lambda d: "/dev/full", "the disk is full"),
}


@pytest.mark.parametrize("bad", list(BAD_OUTPUTS))
@pytest.mark.parametrize(
    "argv",
    [
        ["events", "--db", "{db}", "--csv", "{out}"],
        ["eval", "door", "--root", "{people}", "--json", "{out}"],
        ["bench", "--video", "{video}", "--json", "{out}"],
    ],
    ids=["events --csv", "eval --json", "bench --json"],
)
def test_an_output_that_cannot_be_written_is_one_line(capsys, tmp_path, world, argv, bad):
    make, fragment = BAD_OUTPUTS[bad]
    values = {k: str(v) for k, v in world.items()} | {"out": str(make(tmp_path))}
    assert_refused(capsys, [part.format(**values) for part in argv], fragment)


@pytest.mark.parametrize(
    "command", [["users", "list"], ["users", "list", "--json"], ["events"], ["events", "--json"]]
)
def test_stdout_onto_a_full_disk_is_one_line(world, command):
    """`facegate events > /dev/full`: the write fails when Python flushes stdout, often at exit."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "appliance", *command, "--db", str(world["db"])],
            cwd=ROOT,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    one_line_error(done.stderr, "full")


def test_a_number_too_large_is_one_line(capsys, world):
    assert_refused(capsys, ["events", "--db", str(world["db"]), "--limit", str(10**20)], "out of range")
    assert_refused(
        capsys, ["eval", "door", "--root", str(world["people"]), "--enrol-images", str(10**20)], "enrol"
    )


def test_templates_of_two_sizes_with_no_majority_name_both_users(capsys, world):
    from appliance.vision.embedder import MODEL_ID

    with Gallery(world["db"]) as gallery:
        unit = np.zeros((1, 128), np.float32)
        unit[0, 1] = 1.0
        gallery.enrol("erin", unit, MODEL_ID)
    with sqlite3.connect(world["db"]) as conn:
        conn.execute(
            "UPDATE templates SET embedding = ? WHERE user_id = (SELECT id FROM users WHERE name = 'dana')",
            [b"\x01" * 508],
        )
    # Which of the two is damaged cannot be told from sizes alone: both are named, neither is blamed.
    assert_refused(capsys, argv_of("run", world), "'dana' 508 bytes", "'erin' 512 bytes")


def test_benchmarks_over_nothing_are_errors_not_nan(capsys, tmp_path):
    empty = _mkdir(tmp_path / "empty")
    assert_refused(capsys, ["eval", "door", "--root", str(empty)], "no person has more than 1 image")
    assert_refused(
        capsys, ["eval", "detect", "--images", str(empty), "--annotations", "/dev/null"], "no images listed"
    )


def test_doctor_with_a_mistyped_db_says_there_is_no_gallery_and_creates_none(capsys, tmp_path):
    typo = tmp_path / "galery.db"
    code, out, err = run(capsys, "doctor", "--headless", "--no-camera", "--db", typo)
    assert code == 0, out + err  # a new install has no gallery yet: the service's ExecStartPre must pass
    assert f"{typo}: no gallery yet" in out
    assert not typo.exists() and not list(tmp_path.glob("galery.db*"))
