"""Shared fixtures: the real models, the sample photos, and the shared data folder when present."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_data import DATA as SHARED

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: it holds public data sets that a fresh clone does not have."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (public test data; only on development machines)")
    return SHARED


@pytest.fixture(scope="session")
def cfg():
    """The shipped config.toml, loaded as the appliance would."""
    from appliance.config import load_config

    return load_config(ROOT / "config.toml")


@pytest.fixture(scope="session")
def detector(cfg):
    """The real MTCNN detector of the shipped config."""
    from appliance.app.wiring import build_detector

    return build_detector(cfg)


@pytest.fixture(scope="session")
def embedder(cfg):
    """The real embedder of the shipped config."""
    from appliance.app.wiring import build_embedder

    return build_embedder(cfg)


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """The face_recognition 1.3.0 test photos, fetched with pip once (see appliance/evaluation/samples.py)."""
    from appliance.errors import ApplianceError
    from appliance.evaluation.samples import sample_photos

    try:
        return sample_photos()
    except ApplianceError as exc:
        pytest.skip(f"sample photos unavailable: {exc}")


@pytest.fixture
def cli_tmp(tmp_path, monkeypatch):
    """Run each command in tmp_path with no config file found by default: nothing else can be touched."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEGATE_CONFIG", raising=False)
    monkeypatch.delenv("DEBUG", raising=False)


@pytest.fixture
def staged_gallery(tmp_path, capsys) -> Path:
    """A real gallery file with one staged enrolment (and so one event), made by the CLI."""
    db = tmp_path / "g.db"
    from cli_run import run

    code, _, err = run(capsys, "enroll", "dana", "--at-door", "--db", db)
    assert code == 0, err
    return db


@pytest.fixture(scope="session")
def enrolment_clip(tmp_path_factory, detector, photos) -> Path:
    """A person in front of the door camera in three poses: walk-ups made from three photos of Obama."""
    from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
    from appliance.vision.images import read_image

    frames = []
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        image = read_image(photos[name])
        portrait = head_and_shoulders(image, detector.detect(image)[0].box)
        frames += walkup_frames(portrait, n_frames=30, start_scale=0.6)
    return write_video(frames, tmp_path_factory.mktemp("enrol") / "three_poses.mp4")


@pytest.fixture(scope="session")
def liveness_off(tmp_path_factory) -> Path:
    """A config file: the built-in defaults with [liveness] mode = "off".

    A walk-up clip made from a still photo is, by construction, a photo moved in front of the camera,
    which the liveness check refuses; the tests that need such a clip granted say so by running with it.
    """
    path = tmp_path_factory.mktemp("liveness-off") / "config.toml"
    path.write_text('[liveness]\nmode = "off"\n')
    return path
