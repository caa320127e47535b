"""The door loop with the passive liveness check, on real models and real video, with gpiozero's mock
pins: a photo moved in front of the camera is a deny event "not live: ..." with the red LED, never a
grant; the same clip with liveness off is granted (the baseline)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.access.door import DoorController
from appliance.access.enrolment import embed_photos
from appliance.access.loop import AccessLoop, DecisionRecord
from appliance.access.policy import AccessPolicy
from appliance.app.wiring import build_door_detector, build_liveness, quality_limits
from appliance.domain import Templates
from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
from appliance.gallery.store import Gallery
from appliance.hardware.actuators import Indicators, RelayDoorLock
from appliance.hardware.cameras import open_source
from appliance.vision.images import read_image

RELAY, GREEN, RED = 17, 27, 22


@pytest.fixture(scope="module")
def photo_walkup(tmp_path_factory, detector, photos) -> Path:
    image = read_image(photos["obama2.jpg"])
    portrait = head_and_shoulders(image, detector.detect(image)[0].box)
    return write_video(walkup_frames(portrait, n_frames=45), tmp_path_factory.mktemp("live") / "obama2.mp4")


@pytest.fixture(scope="module")
def obama(cfg, detector, embedder, photos) -> Templates:
    embeddings, _ = embed_photos(
        [("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, quality_limits(cfg)
    )
    with Gallery(":memory:") as gallery:
        gallery.enrol("obama", embeddings, embedder.model_id)
        return gallery.templates_matrix(embedder.model_id)


def replay(cfg, mode: str, embedder, templates: Templates, clip: Path):
    """The clip through a loop wired as `facegate run` wires it; (decisions, relay ever open, red ever on)."""
    cfg = dataclasses.replace(cfg, liveness=dataclasses.replace(cfg.liveness, mode=mode))
    factory = MockFactory()
    door = DoorController(RelayDoorLock(RELAY, active_high=True, pin_factory=factory))
    decisions: list[DecisionRecord] = []
    opened = False
    with Indicators(GREEN, RED, None, pin_factory=factory) as indicators:
        loop = AccessLoop(
            detector=build_door_detector(cfg),
            embedder=embedder,
            templates=templates,
            policy=AccessPolicy(cfg.policy),
            door=door,
            unlock_s=cfg.policy.unlock_s,
            limits=quality_limits(cfg),
            indicators=indicators,
            on_decision=decisions.append,
            liveness=build_liveness(cfg),
        )
        source = open_source(str(clip))
        try:
            for frame in source.frames():
                loop.step(frame, frame.t)
                opened |= bool(factory.pin(RELAY).state)
        finally:
            source.close()
        red_on = any(s.state for s in factory.pin(RED).states)
    door.close()
    return decisions, opened, red_on


def test_a_photo_of_an_enrolled_user_moved_in_front_of_the_camera_is_refused_not_live(
    cfg, embedder, obama, photo_walkup
):
    decisions, opened, red_on = replay(cfg, "passive", embedder, obama, photo_walkup)
    assert not opened
    assert [d.decision for d in decisions] == ["deny"]  # one event for the visit, not one per frame
    assert decisions[0].reason.startswith("not live: held") and decisions[0].user is None
    assert red_on


def test_the_same_clip_with_liveness_off_opens_the_door_for_the_enrolled_user(
    cfg, embedder, obama, photo_walkup
):
    decisions, opened, _ = replay(cfg, "off", embedder, obama, photo_walkup)
    assert opened
    assert [(d.decision, d.user) for d in decisions] == [("grant", "obama")]


def test_with_the_challenge_the_photo_is_refused_and_the_prompt_was_shown_and_logged(
    cfg, embedder, obama, photo_walkup, caplog
):
    with caplog.at_level("INFO", logger="appliance.access.loop"):
        decisions, opened, red_on = replay(cfg, "challenge", embedder, obama, photo_walkup)
    assert not opened
    assert [d.decision for d in decisions] == ["deny"]
    assert decisions[0].reason.startswith("not live: ")
    assert red_on
    asked = [r.getMessage() for r in caplog.records if "liveness challenge" in r.getMessage()]
    assert asked and asked[0].endswith(("turn left", "turn right"))
