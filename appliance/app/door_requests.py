"""Lock now / unlock now from the admin page, carried out by the door process.

The web process has no GPIO: it records a request as a `lock_now` or `unlock_now` event in the gallery.
The door process, which alone drives the relay and keeps no network, reads the new requests from the
gallery about once a second and carries them out. Only requests made after it started and at most
MAX_AGE_S old are carried out, so a request can never wait in the log to unlock the door later; unlock
holds the door open for [policy] unlock_s, as a grant does, and relocks on the door's usual timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from appliance.access.door import DoorController
from appliance.errors import ApplianceError
from appliance.gallery.store import Gallery

log = logging.getLogger(__name__)

DOOR_REQUESTS = ("lock_now", "unlock_now")
"""The event kinds of the admin page's lock now / unlock now buttons."""
POLL_S = 1.0
"""Seconds between two looks at the gallery for new requests."""
MAX_AGE_S = 10.0
"""A request older than this many seconds (wall clock) is never carried out."""


class _EventLog(Protocol):
    def log_event(self, kind: str, *, reason: str = "") -> object: ...


class DoorRequests:
    """Carries out fresh lock / unlock requests; call `poll` from the door loop (it returns at once
    between polls).

    Args:
        gallery: the door process's gallery connection, read from the loop's thread.
        door: the door controller the loop uses.
        unlock_s: seconds an unlock request holds the door open.
        events: where to record what was done ("service" events).
        clock: the door loop's clock (seconds), the one `door.tick` is called with.
        wall: wall clock, epoch seconds, to judge a request's age.
    """

    def __init__(
        self,
        gallery: Gallery,
        door: DoorController,
        unlock_s: float,
        events: _EventLog,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.gallery, self.door, self.unlock_s, self.events = gallery, door, unlock_s, events
        self._clock, self._wall = clock, wall
        newest = gallery.events(limit=1)
        self._last_id = newest[0].id if newest else 0  # what is in the log already is never done
        self._checked_at = clock()

    def poll(self) -> int:
        """Carry out the requests that came since the last poll; returns how many."""
        now = self._clock()
        if now - self._checked_at < POLL_S:
            return 0
        self._checked_at = now
        try:
            recent = self.gallery.events(limit=None, since=self._wall() - MAX_AGE_S)
        except ApplianceError as exc:  # a busy or damaged gallery must not stop the door loop
            log.warning("cannot read lock / unlock requests: %s", exc)
            return 0
        new = sorted(
            (e for e in recent if e.id > self._last_id and e.kind in DOOR_REQUESTS), key=lambda e: e.id
        )
        for e in new:
            self._last_id = e.id
            if e.kind == "lock_now":
                self.door.lock_now()
                what = "locked"
            else:
                self.door.open_for(self.unlock_s, now)
                what = f"unlocked for {self.unlock_s:g} s"
            log.info("door %s: %s", what, e.reason)
            self.events.log_event("service", reason=f"door {what} on request #{e.id}: {e.reason}")
        return len(new)
