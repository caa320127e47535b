"""What the admin page does, without the web framework: enrol from uploaded photos with the CLI's checks,
filter and export events, run the doctor's checks, record lock / unlock requests.

The gallery is opened per request (SQLite WAL: the door process reads it at the same time and picks up
changes within 2 s). The detector and embedder are loaded once, on the first enrolment, and used under
a lock: a TFLite interpreter must not run in two threads at once.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.access.enrolment import embed_photos
from appliance.app.checked_enrolment import add_user_photos, enrol_new_user
from appliance.app.doctor import Check, run_checks
from appliance.app.door_requests import DOOR_REQUESTS
from appliance.app.live_view import FRAME, WATCH_FRESH_S, live_dir, read_info, touch_watching
from appliance.app.pictures import PictureStore, pictures_dir
from appliance.app.wiring import build_detector, build_embedder, open_gallery, quality_limits
from appliance.config import Config
from appliance.errors import ApplianceError, EnrolmentError, ImageError
from appliance.gallery.schema import EVENT_KINDS
from appliance.gallery.store import Event, Gallery, User
from appliance.vision.images import read_image

log = logging.getLogger(__name__)

MAX_PHOTOS = 10
"""Photos one upload may carry."""
MAX_PHOTO_BYTES = 15 * 1024 * 1024
"""Largest photo file accepted, bytes (a 48 MP phone JPEG is about 12 MB)."""
EVENTS_SHOWN = 200
"""Events listed on one page; the CSV has them all."""


@dataclass(frozen=True)
class Upload:
    """One uploaded photo: the name the browser gave it and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class EventFilter:
    """Which events to show: kind ("" any), user name ("" any, case-insensitive substring), and a time
    range in epoch seconds (None: unbounded; `until` itself is outside)."""

    kind: str = ""
    user: str = ""
    since: float | None = None
    until: float | None = None

    def matches(self, e: Event) -> bool:
        """True if event `e` passes every part of the filter."""
        return (
            (not self.kind or e.kind == self.kind)
            and (not self.user or self.user.casefold() in (e.name or "").casefold())
            and (self.since is None or e.time >= self.since)
            and (self.until is None or e.time < self.until)
        )


def parse_day(text: str, field: str, *, end: bool = False) -> float | None:
    """A YYYY-MM-DD form field as epoch seconds at the start of that local day (the next day's start
    when `end`, so that "until 2026-12-02" includes that day); None for an empty field."""
    text = text.strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise ApplianceError(f"{field} {text!r}: give a date as YYYY-MM-DD.") from None
    start = day.timestamp()  # naive datetime: local time, as the page shows times
    return start + 86400 if end else start


def _label(filename: str, index: int) -> str:
    """A photo's name for messages: its base name, without odd characters, or "photo N"."""
    base = re.sub(r"[^\w.\- ]", "_", Path(filename or "").name)[:80]
    return base or f"photo {index + 1}"


class WebAdmin:
    """The admin page's use cases over one config and gallery file.

    Args:
        cfg: the loaded config.
        db: gallery file (overrides [gallery] path), or None.
    """

    def __init__(self, cfg: Config, db: Path | None = None):
        self.cfg, self.db = cfg, db
        self._models: tuple[Any, Any] | None = None
        self._models_lock = threading.Lock()
        gallery_path = db if db is not None else cfg.gallery.path
        self.pictures = PictureStore(pictures_dir(gallery_path), cfg.web.pictures_days)
        self.live = live_dir(gallery_path)

    def gallery(self) -> Gallery:
        """The gallery, opened for one request (close it, or use `with`)."""
        return open_gallery(self.cfg, self.db, create=False)

    # -- enrolment -----------------------------------------------------------------------------

    def _embed(self, uploads: list[Upload]) -> tuple[np.ndarray, list[Any], str, list[str]]:
        """Embeddings, qualities, model id and labels of uploaded photos, with `facegate enroll`'s
        checks: one good face per photo, all of one person."""
        if not uploads:
            raise EnrolmentError("choose at least one photo of the person (3 to 5 varied ones work best).")
        if len(uploads) > MAX_PHOTOS:
            raise EnrolmentError(f"{len(uploads)} photos: give at most {MAX_PHOTOS} at a time.")
        labels = [_label(u.filename, i) for i, u in enumerate(uploads)]
        photos = []
        with tempfile.TemporaryDirectory(prefix="facegate-web-") as tmp:
            for i, (upload, label) in enumerate(zip(uploads, labels, strict=True)):
                if len(upload.data) > MAX_PHOTO_BYTES:
                    raise ImageError(
                        f"{label}: {len(upload.data) / 1e6:.0f} MB is more than the "
                        f"{MAX_PHOTO_BYTES / 1e6:.0f} MB a photo may have; use a smaller photo."
                    )
                path = Path(tmp) / f"upload-{i}"
                path.write_bytes(upload.data)
                try:
                    image = read_image(path)  # the CLI's reader: size guard, decoding, scaling
                except ImageError as exc:
                    raise ImageError(str(exc).replace(str(path), label)) from None
                photos.append((label, image))
        with self._models_lock:
            if self._models is None:
                self._models = (build_detector(self.cfg), build_embedder(self.cfg))
            detector, embedder = self._models
            embeddings, qualities = embed_photos(photos, detector, embedder, quality_limits(self.cfg))
        return embeddings, qualities, embedder.model_id, labels

    def enrol(self, name: str, role: str, uploads: list[Upload]) -> User:
        """A new user from photos, refused like `facegate enroll` (no face, two faces, poor face, photos
        of two people, a face already enrolled)."""
        with self.gallery() as g:
            if name.strip() and name in g:  # before the slow part: a taken name is refused anyway
                raise EnrolmentError(f"there is already a user called {name!r}; choose another name.")
        embeddings, qualities, model_id, _ = self._embed(uploads)
        with self.gallery() as g:
            threshold = self.cfg.enrolment.duplicate_threshold
            sharpness = [q.sharpness for q in qualities]
            return enrol_new_user(g, name, embeddings, sharpness, model_id, threshold, role=role)

    def add_photos(self, name: str, uploads: list[Upload]) -> int:
        """More templates for an existing user, checked like `facegate users add-photos`: not another
        enrolled user, and the same person as the user's own templates."""
        with self.gallery() as g:
            g.user(name)  # an unknown name fails before the slow part
        embeddings, qualities, model_id, labels = self._embed(uploads)
        with self.gallery() as g:
            threshold = self.cfg.enrolment.duplicate_threshold
            sharpness = [q.sharpness for q in qualities]
            return add_user_photos(g, name, embeddings, sharpness, model_id, threshold, labels)[1]

    def remove(self, name: str) -> tuple[int, int]:
        """Delete a user, their templates and their face pictures; (templates, pictures) deleted."""
        with self.gallery() as g:
            user = g.user(name)
            own = [(e.id, e.kind, e.time) for e in g.events(limit=None) if e.user_id == user.id]
            pictures = self.pictures.delete(own)  # first: a picture must not outlive its user
            return g.remove(user.name), pictures

    # -- events --------------------------------------------------------------------------------

    def pictures_of(self, events: list[Event]) -> dict[int, str]:
        """Event id -> its picture's file name, for the grants and denies among `events` that have one."""
        found = self.pictures.find((e.id, e.kind, e.time) for e in events if e.kind in ("grant", "deny"))
        return {event_id: path.name for event_id, path in found.items()}

    def picture(self, event_id: int) -> bytes | None:
        """The JPEG of event `event_id`'s face picture, or None."""
        with self.gallery() as g:
            event = g.event(event_id)
        events = [] if event is None else [event]
        found = self.pictures.find((e.id, e.kind, e.time) for e in events if e.kind in ("grant", "deny"))
        path = found.get(event_id)
        try:
            return None if path is None else path.read_bytes()
        except FileNotFoundError:
            return None

    def events(self, flt: EventFilter, limit: int | None = EVENTS_SHOWN) -> list[Event]:
        """Events passing `flt`, newest first, at most `limit` (None: all)."""
        with self.gallery() as g:
            found = [e for e in g.events(limit=None, since=flt.since) if flt.matches(e)]
        return found if limit is None else found[:limit]

    def events_csv(self, flt: EventFilter) -> str:
        """The events passing `flt`, oldest first, as `facegate events --csv` writes them."""
        out = io.StringIO()
        with self.gallery() as g:
            g.export_events_csv(out, since=flt.since, keep=flt.matches)
        return out.getvalue()

    # -- status and the door -------------------------------------------------------------------

    def status(self) -> list[Check]:
        """`facegate doctor`'s config, models, gallery and events checks. GPIO and the camera belong to
        the door process, which this process cannot reach; its doctor runs before every start."""
        results = run_checks(self.cfg.path, db=self.db, headless=True, check_camera=False)
        return [r for r in results if r.name != "gpio"]

    def last_door_events(self) -> dict[str, Event | None]:
        """The newest "service", "grant" and lock/unlock request events (None where there is none)."""
        wanted = ("service", "grant", *DOOR_REQUESTS)
        newest: dict[str, Event | None] = dict.fromkeys(wanted)
        with self.gallery() as g:
            for e in g.events(limit=2000):
                if e.kind in newest and newest[e.kind] is None:
                    newest[e.kind] = e
        return newest

    def request_door(self, kind: str, admin: str, address: str) -> int:
        """Record a lock now / unlock now request by `admin` from `address` as an event; its id."""
        if kind not in DOOR_REQUESTS:
            raise ValueError(kind)
        with self.gallery() as g:
            return g.log_event(kind, reason=f"requested by web admin {admin} from {address}")

    # -- live view -----------------------------------------------------------------------------

    def live_info(self) -> dict[str, Any] | None:
        """Ask the door for frames (touch `watching`) and return its last live.json, with "age_s" (seconds
        since that frame) added; None if the door has written none or the last is older than
        WATCH_FRESH_S (door service stopped, or just asked)."""
        touch_watching(self.live)
        info = read_info(self.live)
        if info is None:
            return None
        info["age_s"] = max(0.0, time.time() - float(info.get("time", 0)))
        return info if info["age_s"] <= WATCH_FRESH_S else None

    def live_frame(self) -> bytes | None:
        """Ask the door for frames and return the JPEG of the latest one, or None (none written in the
        last WATCH_FRESH_S: an old frame would show a door that may have changed since)."""
        touch_watching(self.live)
        path = self.live / FRAME
        try:
            if time.time() - path.stat().st_mtime > WATCH_FRESH_S:
                return None
            return path.read_bytes()
        except OSError:
            return None


def event_kinds() -> tuple[str, ...]:
    """Every kind the events filter offers."""
    return EVENT_KINDS
