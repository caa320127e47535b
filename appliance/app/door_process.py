"""The `facegate run` process: wire the parts, handle signals, run the loop, always leave the door locked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.access.enrol_button import enrol_button_refusal
from appliance.access.enrolment import LiveEnrolment
from appliance.access.loop import AccessLoop, DecisionRecord
from appliance.access.policy import AccessPolicy
from appliance.app.door_link import REMOTE_UNLOCK_REASON, UNLOCK_REFUSED_REASON, DoorLinkServer, LinkedEvents
from appliance.app.door_requests import DoorRequests
from appliance.app.event_writer import FLUSH_S, EventWriter
from appliance.app.live_view import LiveView, live_dir
from appliance.app.pictures import PictureStore, pictures_dir
from appliance.app.relay_memory import remember_relay
from appliance.app.shutdown import SignalThread
from appliance.app.wiring import (
    Hardware,
    build_door_detector,
    build_embedder,
    build_hardware,
    build_liveness,
    open_gallery,
    quality_limits,
)
from appliance.config import Config
from appliance.domain import Templates
from appliance.errors import ApplianceError, EnrolmentError
from appliance.gallery.store import Gallery
from appliance.hardware.cameras import open_source
from appliance.hardware.notify import Notifier, watchdog_interval_s

log = logging.getLogger(__name__)

RELOCK_TICK_S = 0.1
"""How often the relock thread checks the hold timer on a live camera, seconds."""
GALLERY_POLL_S = 2.0
"""How often the loop looks for users enrolled or removed by another process, seconds."""
FORCED_FLUSH_S = 0.5
"""How long a forced exit (a camera stuck after SIGTERM) waits for queued events to be stored, seconds."""
HELD_OPEN_S = 30.0
"""A door contact open this long raises one "door" event "held open", seconds."""


def is_live(spec: str) -> bool:
    """True for cameras and streams, False for recorded files and folders."""
    s = spec.strip().lower()
    return s.startswith(("picamera", "usb:", "rtsp://", "rtsps://", "http://", "https://"))


class _Reloader:
    """Reloads the gallery's templates when asked (SIGHUP) or when another process changed it."""

    def __init__(self, gallery: Gallery, model_id: str, loop: AccessLoop):
        self.gallery, self.model_id, self.loop = gallery, model_id, loop
        self.requested = threading.Event()
        self._revision = gallery.revision()
        self._checked_at = time.monotonic()

    def poll(self) -> None:
        now = time.monotonic()
        if not self.requested.is_set() and now - self._checked_at < GALLERY_POLL_S:
            return
        self._checked_at = now
        revision = self.gallery.revision()
        if self.requested.is_set() or revision != self._revision:
            asked = self.requested.is_set()
            self.requested.clear()
            self._revision = revision
            templates = self.gallery.templates_matrix(self.model_id)
            # Event writes (ours, on the event writer's connection, or the CLI's) change the revision
            # too; reloading the same templates would only reset the policy's window.
            if not asked and _same_templates(templates, self.loop.templates):
                return
            self.loop.replace_templates(templates)
            log.info("gallery reloaded")


def _same_templates(a: Templates, b: Templates) -> bool:
    return bool(
        a.matrix.shape == b.matrix.shape
        and np.array_equal(a.names, b.names)
        and np.array_equal(a.matrix, b.matrix)
    )


def run_door(
    cfg: Config,
    *,
    source_spec: str | None = None,
    headless: bool = False,
    realtime: bool = False,
    db: Path | None = None,
    emit: Callable[[DecisionRecord], None] = lambda record: None,
    signals: SignalThread | None = None,
) -> int:
    """Run the door until the input ends or SIGTERM/SIGINT; returns the exit status (0).

    The relay is opened (locked) before anything else, and relocked on every way out: end of input,
    signal, or any exception, which then propagates. `signals`, started by the caller before any
    other thread exists (see app/shutdown.py), stops the door on SIGTERM/SIGINT from the first instant,
    start-up included, and SIGHUP reloads the gallery; without it signals are left alone (tests, demo).
    """
    if signals is None:
        signals = SignalThread()  # never started: it only collects the stop actions
    notifier = Notifier()
    loop_ref: list[AccessLoop] = []
    admin_granted_at = [float("-inf")]

    def on_exit_button() -> None:
        if loop_ref:
            loop_ref[0].press_exit()

    def on_enrol_button() -> None:
        if not loop_ref:
            return
        try:
            admin_enrolled = gallery is not None and gallery.has_active_admin()
        except ApplianceError as exc:  # runs in the button's thread: a gallery problem must not kill it
            log.error("enrol button ignored: cannot check for an admin: %s", exc)
            return
        refusal = enrol_button_refusal(
            require_admin=cfg.enrolment.require_admin,
            admin_enrolled=admin_enrolled,
            now=time.monotonic(),
            admin_granted_at=admin_granted_at[0],
        )
        if refusal:
            log.warning("%s", refusal)
            return
        name = time.strftime("user-%Y%m%d-%H%M%S")
        e = cfg.enrolment
        loop_ref[0].request_enrolment(name, e.shots, e.min_shots_interval_s, e.timeout_s)

    hardware = build_hardware(cfg, headless, on_enrol=on_enrol_button, on_exit=on_exit_button)
    signals.on_stop(hardware.door.lock_now)  # relock first, whatever the main thread is waiting for
    remember_relay(cfg.gpio)  # for `facegate lock` after a crash, should the config be damaged by then
    signals.on_force_exit(notifier.stopping)
    source = None
    gallery = None
    events_gallery: Gallery | None = None
    events: EventWriter | None = None
    link: DoorLinkServer | None = None
    live_view: LiveView | None = None
    stop_relock = threading.Event()
    stop_logged = threading.Event()  # the "service stopped" event is queued
    try:
        detector = build_door_detector(cfg)
        embedder = build_embedder(cfg)
        gallery = open_gallery(cfg, db)
        # Events are stored by a thread on a connection of its own, so a locked or full gallery
        # delays them (queued, retried, journaled when lost) instead of stalling or ending the loop.
        events_gallery = _events_connection(gallery, cfg.gallery.busy_timeout_s)
        events = EventWriter(events_gallery)
        writer = events
        signals.on_force_exit(lambda: _last_events(writer, stop_logged))
        event_log: EventWriter | LinkedEvents = events
        if cfg.mqtt.host:  # the MQTT bridge's local link (this process itself has no network)
            link = _open_link(cfg, hardware, loop_ref, lambda: event_log)
            if link is not None:
                event_log = LinkedEvents(events, link)
        foreign = gallery.foreign_model_templates(embedder.model_id)
        if foreign:
            log.warning(
                "%d user(s) have templates of another model and cannot be recognised until re-enrolled: %s",
                len(foreign),
                ", ".join(sorted(foreign)),
            )
        templates = gallery.templates_matrix(embedder.model_id)
        spec = source_spec or cfg.camera.source
        c = cfg.camera
        source = open_source(
            spec, c.width, c.height, realtime, c.reconnect_initial_s, c.reconnect_max_s, fps=c.fps
        )
        signals.on_stop(source.interrupt)  # wake a loop waiting for a frame from a stalled camera
        live = is_live(spec)
        open_gallery_ = gallery
        keep = cfg.web.pictures_days
        pictures = PictureStore(pictures_dir(gallery.path), keep) if keep else None

        def record(rec: DecisionRecord) -> None:
            emit(rec)
            kind = "exit" if rec.reason == "exit button" else rec.decision
            if rec.reason.startswith(REMOTE_UNLOCK_REASON):
                kind = "remote"
            event_log.log_event(kind, name=rec.user, score=rec.score, reason=rec.reason)
            # A picture only of what the camera decided: an exit-button or remote grant has no face.
            if pictures is not None and kind in ("grant", "deny") and loop_ref and loop_ref[0].decision_face:
                pictures.save(kind, *loop_ref[0].decision_face)  # for the admin page; never raises
            # Only an admin's grant enables the enrol button, and only when the config asks for it.
            if cfg.enrolment.require_admin and rec.decision == "grant" and rec.user:
                try:
                    is_admin = open_gallery_.user(rec.user).role == "admin"
                except ApplianceError as exc:  # e.g. removed meanwhile: no approval, and no crash
                    log.warning("cannot look up %s's role: %s", rec.user, exc)
                    is_admin = False
                if is_admin:
                    admin_granted_at[0] = time.monotonic()

        def store(session: LiveEnrolment) -> Templates:
            name = session.name
            try:
                # A name staged with `facegate enroll NAME --at-door` wins over the automatic one; it
                # stays staged if this fails.
                user = open_gallery_.enrol_at_door(
                    session.name,
                    np.stack(session.embeddings),
                    embedder.model_id,
                    [q.sharpness for q in session.qualities],
                )
                name, role = user.name, user.role
                templates = open_gallery_.templates_matrix(embedder.model_id)
            except Exception as exc:  # e.g. the staged name was taken by `facegate enroll` meanwhile
                why = exc if isinstance(exc, ApplianceError) else f"unexpected {type(exc).__name__}: {exc}"
                name = _staged_name(open_gallery_) or name  # the name it was to be stored under
                log.error("enrolment of %s at the door failed: %s", name, why)
                event_log.log_event("error", name=name, reason=f"enrolment at the door failed: {why}")
                if isinstance(exc, ApplianceError):
                    raise  # the loop ends the session (red LED) and goes on watching the door
                raise EnrolmentError(f"enrolment of {name} failed: {why}") from exc
            log.info("enrolled %s (%s) at the door", name, role)
            return templates

        watchdog = _Watchdog(notifier, cfg.service.watchdog)
        loop = AccessLoop(
            detector=detector,
            embedder=embedder,
            templates=templates,
            policy=AccessPolicy(cfg.policy),
            door=hardware.door,
            unlock_s=cfg.policy.unlock_s,
            limits=quality_limits(cfg),
            indicators=hardware.indicators,  # type: ignore[arg-type]
            on_decision=record,
            store_enrolment=store,
            duplicate_threshold=cfg.enrolment.duplicate_threshold,
            enrol_detector=detector.detector,  # the full search, not the face follower
            liveness=build_liveness(cfg),
        )
        reloader = _Reloader(gallery, embedder.model_id, loop)

        door_watch = _DoorSensorWatch(hardware, event_log)
        # Lock now / unlock now from the admin page (app/door_requests.py); live cameras only, whose
        # loop clock is the monotonic one the requests are timed on.
        requests = DoorRequests(gallery, hardware.door, cfg.policy.unlock_s, event_log) if live else None
        # The admin page's live view: frames shared only while someone watches (app/live_view.py).
        live_view = LiveView(live_dir(gallery.path)) if gallery.path != ":memory:" else None
        shared = live_view

        def heartbeat() -> None:
            watchdog.beat()
            reloader.poll()
            door_watch.poll()
            if requests is not None:
                requests.poll()
            if shared is not None:
                shared.offer(loop)

        loop.heartbeat = heartbeat
        loop_ref.append(loop)
        signals.on_stop(loop.stop_requested.set)  # at once if a signal came during start-up
        signals.on_reload = reloader.requested.set
        if live:
            threading.Thread(
                target=_relock_ticker, args=(hardware.door, stop_relock), name="relock", daemon=True
            ).start()
        event_log.log_event("service", reason=f"started on {spec}")
        notifier.ready(f"watching {spec}; {len(set(templates.names.tolist()))} users")
        loop.run(source, (lambda f: time.monotonic()) if live else (lambda f: f.t))
        why = "signal" if loop.stop_requested.is_set() else "end of input"
        event_log.log_event("service", reason=f"stopped: {why}")
        stop_logged.set()
        log.info("stopped (%s) after %d frames", why, loop.frames_processed)
        return 0
    except Exception as exc:
        if events is not None:  # the journal has the error; the event log says the door stopped
            events.log_event("service", reason=f"stopped: error: {_one_line(exc)}")
            stop_logged.set()
        raise
    finally:
        stop_relock.set()
        notifier.stopping()
        hardware.close()  # relock first: nothing below may leave the door open
        if link is not None:
            link.close()
        if live_view is not None:
            live_view.close()
        if source is not None:
            source.close()
        if events is not None:
            events.close(FLUSH_S)  # bounded: what the gallery still refuses is written to the journal
        if events_gallery is not None and events_gallery is not gallery:
            events_gallery.close()
        if gallery is not None:
            gallery.close()
        notifier.close()
        signals.finish()  # only now: a camera stuck in close() above is what the signal thread's grace is for


def _open_link(
    cfg: Config,
    hardware: Hardware,
    loop_ref: list[AccessLoop],
    event_log: Callable[[], EventWriter | LinkedEvents],
) -> DoorLinkServer | None:
    """The door link for `facegate mqtt` on [mqtt] socket, or None (logged) if it cannot listen:
    the door works on without Home Assistant."""

    def read_state() -> tuple[bool, bool | None]:
        buttons = hardware.buttons
        return hardware.door.is_locked, None if buttons is None else buttons.is_door_open  # type: ignore[attr-defined]

    def on_command(command: str, origin: str) -> None:
        if command == "lock":  # always allowed: locking is the safe state
            hardware.door.lock_now()
            event_log().log_event("remote", reason=f"locked from {origin}")
        elif command != "unlock":
            log.warning("door link: unknown command %r from %s ignored", command, origin)
        elif not cfg.mqtt.allow_remote_unlock:
            log.warning("remote unlock from %s refused: [mqtt] allow_remote_unlock is false", origin)
            event_log().log_event(
                "remote", reason=f"{UNLOCK_REFUSED_REASON} from {origin}: [mqtt] allow_remote_unlock is false"
            )
        elif not loop_ref:
            why = "the door is starting"
            event_log().log_event("remote", reason=f"{UNLOCK_REFUSED_REASON} from {origin}: {why}")
        else:
            log.info("remote unlock from %s", origin)
            loop_ref[0].request_unlock(f"{REMOTE_UNLOCK_REASON} from {origin}")

    try:
        return DoorLinkServer(cfg.mqtt.socket, read_state, on_command)
    except ApplianceError as exc:
        log.error("no link for the MQTT bridge: %s", exc)
        return None


def _events_connection(gallery: Gallery, busy_timeout_s: float) -> Gallery:
    """A second connection to `gallery`'s file for the event writer (the same one for ":memory:").

    Its busy timeout is short: the writer retries anyway, and shutdown's flush must not wait long.
    """
    if gallery.path == ":memory:":
        return gallery
    return Gallery(gallery.path, busy_timeout_s=min(busy_timeout_s, 1.0))


class _DoorSensorWatch:
    """Logs the door contact's changes as "door" events: opened, closed, forced (opened while locked),
    and once per opening "held open" when it stays open HELD_OPEN_S."""

    def __init__(self, hardware: Hardware, events: EventWriter | Gallery | LinkedEvents):
        self.hardware, self.events = hardware, events
        self._was_open = self._is_open()
        self._opened_at: float | None = time.monotonic() if self._was_open else None

    def _is_open(self) -> bool | None:
        buttons = self.hardware.buttons
        return None if buttons is None else buttons.is_door_open  # type: ignore[attr-defined]

    def poll(self) -> None:
        now_open = self._is_open()
        if now_open and self._opened_at is not None and time.monotonic() - self._opened_at >= HELD_OPEN_S:
            self._opened_at = None  # once per opening
            log.warning("door held open for %.0f s", HELD_OPEN_S)
            self.events.log_event("door", reason="held open")
        if now_open is None or now_open == self._was_open:
            return
        self._was_open = now_open
        self._opened_at = time.monotonic() if now_open else None
        if now_open and self.hardware.door.is_locked:
            log.warning("door opened while locked")
            self.events.log_event("door", reason="forced")
        else:
            self.events.log_event("door", reason="opened" if now_open else "closed")


class _Watchdog:
    """Sends WATCHDOG=1 from the frame loop, at most twice per watchdog interval."""

    def __init__(self, notifier: Notifier, enabled: bool):
        interval = watchdog_interval_s()
        self.notifier = notifier
        self.every_s = interval / 2 if (enabled and interval) else 0.5
        self.enabled = enabled and notifier.enabled
        self._last = float("-inf")

    def beat(self) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every_s:
            self.notifier.watchdog()
            self._last = now


def _relock_ticker(door: object, stop: threading.Event) -> None:
    """Relock on time even while no frame arrives (a stalled or lost camera)."""
    while not stop.wait(RELOCK_TICK_S):
        door.tick(time.monotonic())  # type: ignore[attr-defined]


def _staged_name(gallery: Gallery) -> str | None:
    """The name staged for the door, for an error message; None when none is, or it cannot be read."""
    try:
        staged = gallery.staged_enrolment()
    except ApplianceError:
        return None
    return None if staged is None else staged[0]


def _last_events(events: EventWriter, stop_logged: threading.Event) -> None:
    """Before a forced exit: record the stop unless the main thread did, then a short, bounded flush."""
    if not stop_logged.is_set():
        events.log_event("service", reason="stopped: signal (the camera did not respond)")
    events.close(FORCED_FLUSH_S)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
