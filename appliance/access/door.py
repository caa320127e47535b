"""Door timing: unlock for a hold time, then relock. Pure logic over a ports.DoorLock.

Time is passed in (`now`, seconds), so replay runs on the video's clock and tests on a hand-set one;
on a live camera a small thread calls `tick` so the door relocks even if frames stop arriving.
"""

from __future__ import annotations

import threading

from appliance.ports import DoorLock


class DoorController:
    """Holds the door open until a deadline; locked is the state it returns to on every path."""

    def __init__(self, lock: DoorLock):
        self._lock = lock
        self._relock_at: float | None = None
        self._mutex = threading.Lock()  # tick() may run on the relock thread
        lock.lock()

    @property
    def is_locked(self) -> bool:
        """True while the strike is locked."""
        return self._lock.is_locked

    def open_for(self, seconds: float, now: float) -> None:
        """Unlock now and relock at now + seconds (extends a hold already running)."""
        with self._mutex:
            self._relock_at = max(self._relock_at or now, now + seconds)
            self._lock.unlock()

    def tick(self, now: float) -> None:
        """Relock if the hold time is over."""
        with self._mutex:
            if self._relock_at is not None and now >= self._relock_at:
                self._lock.lock()
                self._relock_at = None

    def lock_now(self) -> None:
        """Relock at once (errors, shutdown)."""
        with self._mutex:
            self._relock_at = None
            self._lock.lock()

    def close(self) -> None:
        """Lock and release the hardware. Idempotent."""
        self.lock_now()
        self._lock.close()
