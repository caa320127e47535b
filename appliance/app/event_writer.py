"""Audit events written by a background thread, so a locked or full gallery never stalls the door loop.

The door loop hands each event to `EventWriter.log_event`, which stamps it with the wall clock and
queues it without touching the database. One thread stores the queue in order, keeping each event's
original time; when the gallery refuses a write (another process holds the write lock, the disk is
full, the card failed) the event stays at the head of the queue and is retried with a growing delay.
The queue is bounded: when it is full the oldest event is dropped, and every event that could not be
stored is written to the journal (logging) instead. Once the gallery takes writes again, an "error"
event records how many were lost, so `facegate doctor` and `facegate events` can see it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.errors import ApplianceError
from appliance.gallery.schema import EVENT_KINDS
from appliance.gallery.store import Gallery

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
"""Events kept while the gallery refuses writes; beyond that the oldest are dropped (and logged)."""
RETRY_INITIAL_S = 0.5
"""First delay before a refused write is tried again, seconds; doubled up to RETRY_MAX_S."""
RETRY_MAX_S = 10.0
FLUSH_S = 5.0
"""How long shutdown waits for the queue to be stored before logging the rest as lost, seconds."""
LOST_EVENTS_REASON = "events could not be stored"
"""Start of the reason of the "error" event that counts lost events (read by `facegate doctor`)."""


@dataclass(frozen=True)
class PendingEvent:
    """An event waiting to be stored; `time` is when it happened (epoch seconds)."""

    time: float
    kind: str
    name: str | None
    score: float | None
    reason: str

    def describe(self) -> str:
        """One line for the journal, with everything the event row would have held."""
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time))
        score = "" if self.score is None else f" score={self.score:.4f}"
        return f"{when}Z {self.kind} name={self.name or '-'}{score} reason={self.reason!r}"


class EventWriter:
    """A bounded queue of events stored in `gallery` by a background thread.

    Args:
        gallery: the connection the thread writes with. Give it a connection of its own (not the
            loop's): a write waiting for the lock holds that connection's lock, which would block
            the loop's reads of the same connection.
        maxsize: events kept while writes fail; the oldest are dropped beyond that.
        clock: wall clock stamping each event when it is logged (epoch seconds).

    `log_event` never blocks on the database and never raises for a database problem.
    The counters (`stored`, `dropped`, `failed_writes`, `pending`) may be read from any thread.
    """

    def __init__(
        self,
        gallery: Gallery,
        *,
        maxsize: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
        retry_initial_s: float = RETRY_INITIAL_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.gallery = gallery
        self.maxsize = maxsize
        self._clock = clock
        self._retry_initial_s, self._retry_max_s = retry_initial_s, retry_max_s
        self._queue: collections.deque[PendingEvent] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._abandoned = False
        self._lost_unreported = 0
        self.stored = 0
        self.dropped = 0
        self.failed_writes = 0
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Events queued and not yet stored."""
        with self._cond:
            return len(self._queue)

    def log_event(
        self, kind: str, *, name: str | None = None, score: float | None = None, reason: str = ""
    ) -> None:
        """Queue an event stamped now (same arguments as Gallery.log_event). Thread-safe, never blocks."""
        event = PendingEvent(self._clock(), kind, name, score, reason)
        if kind not in EVENT_KINDS:  # a bug, not a database problem: it could never be stored
            log.error("event of unknown kind %r not stored: %s", kind, event.describe())
            return
        with self._cond:
            if self._closing:
                self._lose(event, "the service is stopping")
                return
            if len(self._queue) >= self.maxsize:
                self._lose(self._queue.popleft(), f"the event queue is full ({self.maxsize})")
            self._queue.append(event)
            self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the queue to be stored; True if it was."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify_all()  # cut a retry delay short
            while self._queue or self._lost_unreported:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout_s: float = FLUSH_S) -> None:
        """Store what is queued (waiting up to `timeout_s`), then stop; what is left goes to the journal."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        with self._cond:
            self._abandoned = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for event in left:
            self.dropped += 1
            log.error("event not stored (the gallery refused writes until shutdown): %s", event.describe())
        if left or self.dropped:
            log.error(
                "%d event(s) could not be stored in the gallery this run; they are in this journal only",
                self.dropped,
            )

    # -- the writer thread --------------------------------------------------------------------

    def _lose(self, event: PendingEvent, why: str) -> None:
        """Count and journal an event that will never be stored (called with the condition held)."""
        self.dropped += 1
        self._lost_unreported += 1
        log.error("event not stored (%s): %s", why, event.describe())

    def _run(self) -> None:
        delay = self._retry_initial_s
        failing_since: float | None = None
        while True:
            with self._cond:
                while not self._queue and not self._lost_unreported and not self._closing:
                    self._cond.wait()
                if self._abandoned or (self._closing and not self._queue and not self._lost_unreported):
                    return
                event = self._queue[0] if self._queue else None
                lost = self._lost_unreported
            try:
                if event is not None:
                    self._store(event)
                else:  # the queue is stored: record in the gallery how many events were lost
                    self.gallery.log_event(
                        "error", reason=f"{LOST_EVENTS_REASON}: {lost} lost, see the journal"
                    )
            except Exception as exc:  # noqa: BLE001 - any failure to store must leave the loop running
                self.failed_writes += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                    what = event.describe() if event is not None else f"count of {lost} lost events"
                    why = exc if isinstance(exc, ApplianceError) else f"{type(exc).__name__}: {exc}"
                    log.warning("could not store event %s (%s); it stays queued and is retried", what, why)
                with self._cond:
                    if self._abandoned:
                        return
                    self._cond.wait(delay)  # close() and flush() wake it early for one more try
                delay = min(delay * 2, self._retry_max_s)
                continue
            with self._cond:
                if event is None:
                    self._lost_unreported -= lost
                elif self._queue and self._queue[0] is event:
                    self._queue.popleft()
                    self.stored += 1
                pending = len(self._queue)
                self._cond.notify_all()
            if failing_since is not None:
                log.warning(
                    "the gallery takes writes again after %.1f s (%d failed tries); %d event(s) still queued",
                    time.monotonic() - failing_since,
                    self.failed_writes,
                    pending,
                )
                failing_since = None
            delay = self._retry_initial_s

    def _store(self, event: PendingEvent) -> None:
        self.gallery.log_event(
            event.kind, name=event.name, score=event.score, reason=event.reason, time=event.time
        )
