"""Build the concrete parts from a Config. The only module that names the concrete classes."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from appliance.access.door import DoorController
from appliance.access.quality import QualityLimits
from appliance.config import Config
from appliance.gallery.store import Gallery
from appliance.liveness.check import ChallengeLiveness, PassiveLiveness
from appliance.vision.detector import MtcnnDetector
from appliance.vision.embedder import TfliteEmbedder
from appliance.vision.tracking import TrackingDetector

log = logging.getLogger(__name__)


def build_detector(cfg: Config) -> MtcnnDetector:
    """The MTCNN detector of [detector] for photos; models are checked against SHA256SUMS and loaded once."""
    return _mtcnn(cfg, cfg.detector.min_face_px)


def build_door_detector(cfg: Config) -> TrackingDetector:
    """The detector of the door loop, for consecutive camera frames.

    It searches only for faces of at least [quality] min_face_px, since the loop ignores smaller ones
    (the image pyramid then starts at a coarser scale: about half the time at 80 px), and follows
    faces between full searches every [detector] redetect_every frames (appliance/vision/tracking.py).
    """
    min_face = max(cfg.detector.min_face_px, cfg.quality.min_face_px)
    return TrackingDetector(_mtcnn(cfg, min_face), cfg.detector.redetect_every)


def _mtcnn(cfg: Config, min_face: int) -> MtcnnDetector:
    d = cfg.detector
    return MtcnnDetector(
        Path(d.models_dir),
        variant=d.variant,
        min_face_size=float(min_face),
        thresholds=tuple(d.thresholds),
        threads=d.threads,
        refine_landmarks=d.refine_landmarks,
    )


def build_embedder(cfg: Config) -> TfliteEmbedder:
    """The embedder of [embedder], from the models folder of [detector]."""
    return TfliteEmbedder(
        Path(cfg.detector.models_dir), variant=cfg.embedder.variant, threads=cfg.embedder.threads
    )


def build_liveness(cfg: Config) -> PassiveLiveness | None:
    """The liveness check of [liveness] for one camera's door loop, or None when mode = "off"."""
    if cfg.liveness.mode == "off":
        return None
    if cfg.liveness.mode == "challenge":
        return ChallengeLiveness(cfg.liveness)
    return PassiveLiveness(cfg.liveness)


def quality_limits(cfg: Config) -> QualityLimits:
    """[quality] as the gate's limits (the field names are the same)."""
    return QualityLimits(**dataclasses.asdict(cfg.quality))


def open_gallery(cfg: Config, db: Path | None = None, *, create: bool = True) -> Gallery:
    """The gallery at --db if given, else at [gallery] path; create=False for commands that only read."""
    return Gallery(
        db if db is not None else Path(cfg.gallery.path),
        busy_timeout_s=cfg.gallery.busy_timeout_s,
        create=create,
    )


@dataclasses.dataclass
class Hardware:
    """The door's GPIO parts, closed together (the relay relocks first)."""

    door: DoorController
    indicators: object | None
    buttons: object | None
    stack: ExitStack

    def close(self) -> None:
        """Relock and release every pin. Idempotent."""
        try:
            self.door.close()
        finally:
            self.stack.close()


def build_hardware(
    cfg: Config,
    headless: bool,
    on_enrol: Callable[[], None] | None = None,
    on_exit: Callable[[], None] | None = None,
) -> Hardware:
    """Relay, LEDs, buzzer and buttons on the configured pins; --headless uses gpiozero's MockFactory.

    The mock factory is only ever used when asked for (config pin_factory = "mock" or --headless): a Pi
    whose GPIO fails to load reports a HardwareError instead of silently driving nothing.
    """
    from appliance.hardware.actuators import Buttons, Indicators, RelayDoorLock, make_pin_factory

    g = cfg.gpio
    factory = make_pin_factory("mock" if headless else g.pin_factory)
    stack = ExitStack()
    lock = RelayDoorLock(g.relay_pin, active_high=g.relay_active_high, pin_factory=factory)
    door = DoorController(lock)
    try:
        indicators = None
        if g.green_led_pin is not None or g.red_led_pin is not None or g.buzzer_pin is not None:
            indicators = stack.enter_context(
                Indicators(g.green_led_pin, g.red_led_pin, g.buzzer_pin, pin_factory=factory)
            )
        buttons = Buttons(
            enrol_pin=g.enrol_button_pin,
            exit_pin=g.exit_button_pin,
            door_sensor_pin=g.door_sensor_pin,
            enrol_hold_s=g.enrol_hold_s,
            on_enrol=on_enrol,
            on_exit=on_exit,
            pin_factory=factory,
        )
        stack.callback(buttons.close)
    except BaseException:
        door.close()
        stack.close()
        raise
    return Hardware(door, indicators, buttons, stack)
