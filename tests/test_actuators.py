"""GPIO adapters against gpiozero's own MockFactory, asserting on the recorded pin history."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.app.wiring import build_hardware
from appliance.errors import HardwareError
from appliance.hardware.actuators import Buttons, Indicators, RelayDoorLock, make_pin_factory

RELAY, GREEN, RED, BUZZER, ENROL, EXIT, SENSOR = 17, 22, 23, 24, 5, 6, 13


@pytest.fixture
def factory():
    factory = make_pin_factory("mock")
    yield factory
    factory.reset()


def levels(factory: MockFactory, pin: int) -> list[bool]:
    """Every level the pin has had, oldest first (gpiozero records each change)."""
    return [state.state for state in factory.pin(pin).states]


def test_mock_is_only_made_on_request():
    assert isinstance(make_pin_factory("mock"), MockFactory)
    assert isinstance(make_pin_factory(" Mock "), MockFactory)


def test_unknown_factory_is_a_clear_error():
    with pytest.raises(HardwareError, match="unknown GPIO pin factory 'gpio'.*lgpio"):
        make_pin_factory("gpio")


@pytest.mark.parametrize("name", ["lgpio", "rpigpio", "native"])
def test_real_factory_that_cannot_load_raises_instead_of_falling_back(name):
    # This machine is not a Pi: each real factory fails to load. On a Pi with the library
    # installed it would load, so skip there rather than assert something false.
    try:
        made = make_pin_factory(name)
    except HardwareError as exc:
        assert f"{name!r} pin factory" in str(exc)
        assert "\n" not in str(exc)
    else:
        assert not isinstance(made, MockFactory)
        made.close()
        pytest.skip(f"{name} loads on this machine")


def test_relay_is_locked_from_construction(factory):
    with RelayDoorLock(RELAY, active_high=True, pin_factory=factory) as door:
        assert door.is_locked
        assert factory.pin(RELAY).function == "output"
        assert levels(factory, RELAY) == [False]


def test_unlock_then_lock_drives_the_relay_pin(factory):
    with RelayDoorLock(RELAY, active_high=True, pin_factory=factory) as door:
        door.unlock()
        assert not door.is_locked
        door.lock()
        door.lock()  # idempotent: no extra edge
        assert door.is_locked
    assert levels(factory, RELAY) == [False, True, False]


def test_active_low_relay_inverts_the_pin_level(factory):
    with RelayDoorLock(RELAY, active_high=False, pin_factory=factory) as door:
        # Locked means the pin sits high on an active-low board, from the very first output.
        assert levels(factory, RELAY) == [False, True]
        door.unlock()
        assert factory.pin(RELAY).state is False
        door.lock()
    assert levels(factory, RELAY) == [False, True, False, True]


def test_close_relocks_and_is_idempotent(factory):
    door = RelayDoorLock(RELAY, active_high=True, pin_factory=factory)
    door.unlock()
    door.close()
    door.close()
    assert door.is_locked
    assert levels(factory, RELAY) == [False, True, False]
    assert factory.pin(RELAY).function == "input"  # released
    with pytest.raises(HardwareError, match="closed"):
        door.unlock()
    assert levels(factory, RELAY) == [False, True, False]


def test_interpreter_exit_relocks_a_lock_left_open(factory, monkeypatch):
    import atexit

    hooks: list = []
    # Capture the exit hook instead of running every process-wide atexit function.
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", lambda f: None)
    door = RelayDoorLock(RELAY, active_high=True, pin_factory=factory)
    door.unlock()
    for hook in hooks:  # what a normal exit does, with close() never called by the program
        hook()
    assert len(hooks) == 1
    assert levels(factory, RELAY) == [False, True, False]
    assert door.is_locked


def test_an_exception_inside_with_still_relocks(factory):
    with pytest.raises(RuntimeError), RelayDoorLock(RELAY, active_high=True, pin_factory=factory) as door:
        door.unlock()
        raise RuntimeError("detector crashed")
    assert levels(factory, RELAY) == [False, True, False]


def test_relay_pin_in_use_is_a_hardware_error(factory):
    with (
        RelayDoorLock(RELAY, active_high=True, pin_factory=factory),
        pytest.raises(HardwareError, match="door relay on GPIO 17"),
    ):
        RelayDoorLock(RELAY, active_high=True, pin_factory=factory)


def test_indicators_granted_and_idle(factory):
    with Indicators(GREEN, RED, None, pin_factory=factory) as ind:
        ind.granted()
        assert factory.pin(GREEN).state is True
        assert factory.pin(RED).state is False
        ind.idle()
    assert levels(factory, GREEN) == [False, True, False]
    assert levels(factory, RED) == [False]


def test_indicators_denied_blinks_red_and_idle_stops_it(factory):
    with Indicators(GREEN, RED, BUZZER, pin_factory=factory) as ind:
        ind.denied()
        ind.idle()  # joins the blink threads, so the history below is final
        red, buzzer = levels(factory, RED), levels(factory, BUZZER)
        # The blink thread always switches on first, whatever the thread timing.
        assert red[:2] == [False, True] and red[-1] is False
        assert buzzer[:2] == [False, True] and buzzer[-1] is False
        assert levels(factory, GREEN) == [False]


def test_indicators_capturing_blinks_green_until_off(factory):
    with Indicators(GREEN, RED, None, pin_factory=factory) as ind:
        ind.capturing(True)
        ind.capturing(False)
        green = levels(factory, GREEN)
        assert green[:2] == [False, True] and green[-1] is False


def test_exit_button_press_fires_the_callback(factory):
    pressed: list[str] = []
    buttons = Buttons(
        enrol_pin=None,
        exit_pin=EXIT,
        on_exit=lambda: pressed.append("exit"),
        bounce_s=None,
        pin_factory=factory,
    )
    try:
        pin = factory.pin(EXIT)
        assert pin.state is True  # pulled up while released
        pin.drive_low()
        pin.drive_high()
        assert pressed == ["exit"]
    finally:
        buttons.close()


def test_enrol_button_held_fires_the_callback(factory):
    held = threading.Event()
    buttons = Buttons(
        enrol_pin=ENROL,
        exit_pin=None,
        enrol_hold_s=0.01,
        on_enrol=held.set,
        bounce_s=None,
        pin_factory=factory,
    )
    try:
        factory.pin(ENROL).drive_low()
        # gpiozero's hold thread fires the callback; the timeout only stops a broken test hanging.
        assert held.wait(timeout=10)
    finally:
        buttons.close()


def test_enrol_button_tapped_does_not_fire(factory):
    fired: list[int] = []
    buttons = Buttons(
        enrol_pin=ENROL,
        exit_pin=None,
        enrol_hold_s=3600,
        on_enrol=lambda: fired.append(1),
        bounce_s=None,
        pin_factory=factory,
    )
    try:
        factory.pin(ENROL).drive_low()
        factory.pin(ENROL).drive_high()
        assert fired == []
    finally:
        buttons.close()


def test_door_sensor(factory):
    buttons = Buttons(enrol_pin=None, exit_pin=None, door_sensor_pin=SENSOR, pin_factory=factory)
    try:
        assert buttons.has_door_sensor
        assert buttons.is_door_open is True  # contact open: pin pulled high
        factory.pin(SENSOR).drive_low()  # the reed switch closes as the door shuts
        assert buttons.is_door_open is False
    finally:
        buttons.close()
    assert Buttons(enrol_pin=None, exit_pin=None, pin_factory=factory).is_door_open is None


def test_failing_callback_is_logged_not_raised(factory, caplog):
    def boom() -> None:
        raise ValueError("boom")

    buttons = Buttons(enrol_pin=None, exit_pin=EXIT, on_exit=boom, bounce_s=None, pin_factory=factory)
    try:
        factory.pin(EXIT).drive_low()
    finally:
        buttons.close()
    assert "button callback" in caplog.text


def test_every_change_of_the_relay_is_in_the_journal(factory, caplog):
    # The owner's proof after the fact that the door was relocked; the relock ticker's repeated
    # lock() calls must not flood the journal.
    with (
        caplog.at_level("INFO", logger="appliance.hardware.actuators"),
        RelayDoorLock(RELAY, active_high=True, pin_factory=factory) as door,
    ):
        door.unlock()
        door.unlock()
        door.lock()
        door.lock()
    relay_lines = [r.getMessage() for r in caplog.records if "relay" in r.getMessage()]
    assert relay_lines == [
        f"relay on GPIO {RELAY}: locked",
        f"relay on GPIO {RELAY}: unlocked",
        f"relay on GPIO {RELAY}: locked",
        f"relay on GPIO {RELAY}: locked and released",
    ]


def test_a_door_with_only_a_green_led_still_shows_grants(factory):
    with Indicators(GREEN, None, None, pin_factory=factory) as ind:
        ind.granted()
        assert factory.pin(GREEN).state is True
        ind.denied()  # nothing to blink: the green LED just goes off
        assert factory.pin(GREEN).state is False


def test_red_led_pin_minus_one_keeps_the_green_led_driven(cfg):
    # [gpio] red_led_pin = -1 (no red LED) used to leave the door with no indicators at all.
    cfg = dataclasses.replace(cfg, gpio=dataclasses.replace(cfg.gpio, red_led_pin=None, buzzer_pin=None))
    hardware = build_hardware(cfg, headless=True)
    try:
        assert hardware.indicators is not None
        hardware.indicators.granted()
        assert hardware.indicators._green.pin.state is True
    finally:
        hardware.close()
