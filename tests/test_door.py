"""The door strike: locked at start, open for the hold time after a grant, locked after, and on close."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.access.door import DoorController
from appliance.hardware.actuators import RelayDoorLock

RELAY = 17


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def relay_high(factory: MockFactory) -> bool:
    return bool(factory.pin(RELAY).state)


def test_locked_at_start_unlocked_for_hold_time_then_locked(factory):
    door = DoorController(RelayDoorLock(RELAY, active_high=True, pin_factory=factory))
    assert door.is_locked and not relay_high(factory)
    door.open_for(5.0, now=100.0)
    assert not door.is_locked and relay_high(factory)
    door.tick(104.9)
    assert not door.is_locked
    door.tick(105.0)
    assert door.is_locked and not relay_high(factory)


def test_second_grant_extends_the_hold(factory):
    door = DoorController(RelayDoorLock(RELAY, active_high=True, pin_factory=factory))
    door.open_for(5.0, now=0.0)
    door.open_for(5.0, now=3.0)
    door.tick(6.0)
    assert not door.is_locked
    door.tick(8.0)
    assert door.is_locked


def test_active_low_relay_is_driven_high_while_locked(factory):
    door = DoorController(RelayDoorLock(RELAY, active_high=False, pin_factory=factory))
    assert door.is_locked and relay_high(factory)
    door.open_for(1.0, now=0.0)
    assert not relay_high(factory)


def test_close_relocks_an_open_door(factory):
    door = DoorController(RelayDoorLock(RELAY, active_high=True, pin_factory=factory))
    door.open_for(60.0, now=0.0)
    door.close()
    assert not relay_high(factory)
    door.close()  # idempotent
