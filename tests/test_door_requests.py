"""Lock now / unlock now from the admin page, carried out by the door process (app/door_requests.py):
a real gallery file, the real door controller and relay adapter on gpiozero's MockFactory pins."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.access.door import DoorController
from appliance.app.door_requests import MAX_AGE_S, POLL_S, DoorRequests
from appliance.gallery.store import Gallery
from appliance.hardware.actuators import RelayDoorLock

RELAY, UNLOCK_S = 17, 5.0


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup(tmp_path):
    factory = MockFactory()
    door = DoorController(RelayDoorLock(RELAY, active_high=True, pin_factory=factory))
    gallery = Gallery(tmp_path / "g.db")
    web = Gallery(tmp_path / "g.db")  # the web process's own connection
    mono, wall = Clock(100.0), Clock(1_800_000_000.0)
    yield door, gallery, web, mono, wall, factory
    door.close()
    gallery.close()
    web.close()
    factory.reset()


def test_an_unlock_request_opens_the_door_for_unlock_s_and_says_so(setup):
    door, gallery, web, mono, wall, factory = setup
    requests = DoorRequests(gallery, door, UNLOCK_S, gallery, clock=mono, wall=wall)
    web.log_event("unlock_now", reason="requested by web admin ann from 127.0.0.1", time=wall())
    mono.t += POLL_S
    assert requests.poll() == 1
    assert not door.is_locked and factory.pin(RELAY).state
    done = [e for e in gallery.events(limit=None) if e.kind == "service"]
    assert "unlocked for 5 s" in done[0].reason and "web admin ann" in done[0].reason
    door.tick(mono.t + UNLOCK_S)  # the loop's usual relock
    assert door.is_locked and not factory.pin(RELAY).state
    mono.t += POLL_S
    assert requests.poll() == 0  # carried out once only


def test_a_lock_request_ends_a_hold_at_once(setup):
    door, gallery, web, mono, wall, _ = setup
    requests = DoorRequests(gallery, door, UNLOCK_S, gallery, clock=mono, wall=wall)
    door.open_for(UNLOCK_S, mono())
    web.log_event("lock_now", reason="requested by web admin ann", time=wall())
    mono.t += POLL_S
    assert requests.poll() == 1 and door.is_locked


def test_old_requests_are_never_carried_out(setup):
    door, gallery, web, mono, wall, _ = setup
    web.log_event("unlock_now", reason="made before the door started", time=wall())
    requests = DoorRequests(gallery, door, UNLOCK_S, gallery, clock=mono, wall=wall)
    web.log_event("unlock_now", reason="stale", time=wall() - MAX_AGE_S - 1)
    mono.t += POLL_S
    assert requests.poll() == 0 and door.is_locked


def test_the_gallery_is_read_at_most_once_per_poll_interval(setup):
    door, gallery, web, mono, wall, _ = setup
    requests = DoorRequests(gallery, door, UNLOCK_S, gallery, clock=mono, wall=wall)
    mono.t += POLL_S
    requests.poll()
    web.log_event("unlock_now", reason="now", time=wall())
    mono.t += POLL_S / 2
    assert requests.poll() == 0 and door.is_locked  # not yet looked at
    mono.t += POLL_S / 2
    assert requests.poll() == 1 and not door.is_locked
