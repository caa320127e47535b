"""Pieces of the `facegate run` process that involve the GPIO inputs (mock pins, chosen by --headless)."""

from __future__ import annotations

import dataclasses

from appliance.app.door_process import _DoorSensorWatch
from appliance.app.wiring import build_hardware
from appliance.gallery.store import Gallery

SENSOR = 5


def test_door_contact_changes_are_logged_and_opening_while_locked_is_forced(cfg, tmp_path):
    cfg = dataclasses.replace(cfg, gpio=dataclasses.replace(cfg.gpio, door_sensor_pin=SENSOR))
    hardware = build_hardware(cfg, headless=True)
    sensor_pin = hardware.buttons._sensor.pin  # the MockPin behind the reed switch
    try:
        with Gallery(tmp_path / "g.db") as gallery:
            sensor_pin.drive_low()  # switch closed: door shut
            watch = _DoorSensorWatch(hardware, gallery)
            sensor_pin.drive_high()  # opened while the strike is locked
            watch.poll()
            sensor_pin.drive_low()
            watch.poll()
            hardware.door.open_for(5.0, now=0.0)
            sensor_pin.drive_high()  # opened after a grant
            watch.poll()
            reasons = [e.reason for e in reversed(gallery.events()) if e.kind == "door"]
        assert reasons == ["forced", "closed", "opened"]
    finally:
        hardware.close()
    assert hardware.door.is_locked
