"""`facegate doctor`: check each part the door needs and say how to fix what is wrong.

Run by hand, and by the systemd unit before every start (ExecStartPre), so a broken part is reported in
the journal in words rather than as a crash loop. Each check is independent: one failure does not hide
the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from appliance.config import Config, load_config
from appliance.errors import ApplianceError


class Check(NamedTuple):
    """One line of the report."""

    name: str
    ok: bool
    detail: str


def _check(name: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, True, fn())
    except ApplianceError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # a doctor reports, it does not crash: show the unexpected error too
        return Check(name, False, f"unexpected {type(exc).__name__}: {exc}")


def run_checks(
    config_path: Path | None,
    db: Path | None,
    headless: bool,
    check_camera: bool,
    extra: Sequence[tuple[str, Callable[[Config], str | None]]] = (),
) -> list[Check]:
    """Config, models, gallery, events, GPIO, camera, then `extra`, in that order.

    `extra` holds checks of parts in other processes that this layer does not import (the MQTT
    broker, checked by the cli with integrations' client); one returning None does not apply here.
    """
    from appliance.app.wiring import build_detector, build_embedder, open_gallery

    cfg_box: list[Config] = []

    def config() -> str:
        cfg_box.append(load_config(config_path))
        return f"{config_path or 'built-in defaults'} is valid"

    results = [_check("config", config)]
    if not cfg_box:
        return results
    cfg = cfg_box[0]

    def models() -> str:
        build_detector(cfg)
        embedder = build_embedder(cfg)
        return (
            f"MTCNN ({cfg.detector.variant}) and embedder {embedder.model_id} match SHA256SUMS and load "
            f"in {cfg.detector.models_dir}"
        )

    gallery_path = Path(db if db is not None else cfg.gallery.path)
    # A check must not create what it checks: a mistyped --db would leave an empty gallery behind.
    # No gallery is still a pass: on a new install the first `run` or `enroll` creates it.
    no_gallery = (
        f"{gallery_path}: no gallery yet; `facegate enroll` or the service's first start creates it "
        "(if users should be there, check --db or [gallery] path)"
    )

    def gallery() -> str:
        from appliance.vision.embedder import MODEL_ID

        if not gallery_path.exists():
            return no_gallery
        with open_gallery(cfg, db, create=False) as g:
            problems = g.integrity_problems()
            if problems:
                raise ApplianceError(
                    f"{g.path}: damaged ({problems[0]}); restore a backup (facegate keeps none by itself)"
                )
            users = g.users()
            foreign = g.foreign_model_templates(MODEL_ID)
            note = ""
            if foreign:
                note = (
                    f"; warning: {', '.join(sorted(foreign))} have templates of another model and will not "
                    "be recognised: re-enrol them"
                )
            return f"{g.path}: {len(users)} users{note}"

    def events() -> str:
        # The service stores events from a queue and retries; it cannot tell this process how many
        # are waiting. What can be checked: is the gallery writable now, and did the service record
        # (once writable again) that events were lost.
        from appliance.app.event_writer import LOST_EVENTS_REASON
        from appliance.gallery.store import write_probe

        if not gallery_path.exists():
            return f"{gallery_path}: no gallery yet, so no events to check"
        with open_gallery(cfg, db, create=False) as g:
            path = g.path
            lost = [
                e
                for e in g.events(limit=1000)
                if e.kind == "error" and e.reason.startswith(LOST_EVENTS_REASON)
            ]
        note = write_probe(path)
        if lost:
            note += (
                f"; warning: {len(lost)} report(s) of lost events, newest: {lost[0].reason} (see the journal)"
            )
        return f"{path}: {note}"

    def gpio() -> str:
        from appliance.hardware.actuators import RelayDoorLock, make_pin_factory

        g = cfg.gpio
        factory_name = "mock" if headless else g.pin_factory
        factory = make_pin_factory(factory_name)
        with RelayDoorLock(g.relay_pin, active_high=g.relay_active_high, pin_factory=factory):
            pass
        return f"relay on GPIO{g.relay_pin} opens with the {factory_name} pin factory and is locked"

    def camera() -> str:
        from appliance.hardware.cameras import open_source

        c = cfg.camera
        source = open_source(c.source, c.width, c.height, False, c.reconnect_initial_s, c.reconnect_max_s)
        source.close()
        return f"{c.source} opens"

    results += [
        _check("models", models),
        _check("gallery", gallery),
        _check("events", events),
        _check("gpio", gpio),
    ]
    if check_camera:
        results.append(_check("camera", camera))
    for name, fn in extra:
        outcome = _check(name, lambda fn=fn: fn(cfg) or "")
        if not (outcome.ok and outcome.detail == ""):
            results.append(outcome)
    return results
