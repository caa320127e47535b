"""`facegate sync`: replicate the door's gallery with the other doors of its site, over the MQTT broker.

A process of its own (the door service has no network). It writes the door's own gallery file, which
the door reloads when it changes; each door matches locally, so losing the broker changes nothing about
local decisions, only when changes arrive.

Topics, under [mqtt] topic_prefix and [site] site_id (PREFIX/site/SITE/...):
- users/KEY: the user's latest change record (retained): the broker keeps exactly one per user, the
  newest, so a door that was offline, or joins the site new, receives every user (and every removal,
  a retained tombstone) on subscribing, with no journal to replay or trim.
- acks/KEY/DOOR: DOOR has applied the removal of KEY (retained; the clock of the removal).
- doors/DOOR: "online" or "offline" (retained; the broker's Will says offline when a door vanishes).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

from appliance.config import Config
from appliance.errors import ConfigError
from appliance.gallery.replica import Arriving, Replica
from appliance.gallery.store import Gallery
from appliance.integrations.mqtt_client import Incoming, MqttConnection
from appliance.sites.records import RecordError, SiteKey, read_key_file

log = logging.getLogger(__name__)

TICK_S = 0.05
"""Longest the sync loop waits before looking for local changes again, seconds (one small read)."""
PUBLISH_WAIT_S = 10.0
"""Longest the loop waits for the broker to acknowledge a batch of records, seconds."""
BATCH = 200
"""Incoming records applied per pass of the loop, before local changes are looked at again."""
SETTLE_S = 1.0
"""After each connect, how long records are only received before this door publishes, seconds: the
broker's retained records arrive first, so a change made here offline is not put over a newer one
unseen (were it, the door holding the newer one puts it back when it sees the older: see `apply`)."""


@dataclass(frozen=True)
class SiteTopics:
    """The site's topics."""

    base: str

    @staticmethod
    def of(cfg: Config) -> SiteTopics:
        return SiteTopics(f"{cfg.mqtt.topic_prefix}/site/{cfg.site.site_id}")

    def user(self, key: str) -> str:
        return f"{self.base}/users/{key}"

    def ack(self, key: str, door: str) -> str:
        return f"{self.base}/acks/{key}/{door}"

    def door(self, door: str) -> str:
        return f"{self.base}/doors/{door}"


def check_site_config(cfg: Config) -> None:
    """Refuse site mode without a site, a broker over TLS, credentials and a key file (one line)."""
    where = cfg.path or "built-in defaults"
    m, s = cfg.mqtt, cfg.site
    if not s.site_id:
        raise ConfigError(
            f'{where}: [site] site_id is not set; set it to run `facegate sync` (README "Several doors")'
        )
    if not m.host:
        raise ConfigError(f"{where}: [mqtt] host is not set; site mode replicates over the MQTT broker")
    if not (m.tls or m.ca_file):
        raise ConfigError(
            f"{where}: site mode needs the broker over TLS (templates are biometric data): "
            "set [mqtt] tls = true or ca_file"
        )
    if not (m.username and m.password_file):
        raise ConfigError(
            f"{where}: site mode needs broker credentials: set [mqtt] username and password_file"
        )
    if not s.key_file:
        raise ConfigError(
            f"{where}: [site] key_file is not set; make one with `facegate sync --make-key FILE`"
        )


class SiteSync:
    """Gallery <-> broker for one door. Records arrive on paho's thread and are applied on the caller's.

    Args:
        cfg: the config ([mqtt], [site]).
        gallery: the door's gallery.
        model_id: the door's embedder model (records with templates of another one are refused).
    """

    def __init__(self, cfg: Config, gallery: Gallery, model_id: str) -> None:
        check_site_config(cfg)
        self.door = cfg.site.door_id or cfg.mqtt.device_id
        self.key = SiteKey(read_key_file(cfg.site.key_file), cfg.site.site_id)
        self.topics = SiteTopics.of(cfg)
        self.replica = Replica(gallery, self.door, self.key.user_key, self.key.seal, model_id)
        self.gallery = gallery
        self._incoming: queue.Queue[Incoming] = queue.Queue()
        self._wake = threading.Event()
        self._connected_at = float("inf")  # monotonic time of the last connect
        self._seen: set[str] = set()  # user keys the broker has sent since then
        self._checked = True  # whether the broker's store was compared with ours since then
        self.applied = self.refused = 0
        self.mqtt = MqttConnection(
            cfg.mqtt,
            will_topic=self.topics.door(self.door),
            will_payload="offline",
            subscriptions=[self.topics.user("+"), self.topics.ack("+", "+"), self.topics.door("+")],
            on_connect=self._announce,
            on_message=self._received,
            client_id=f"facegate-sync-{cfg.site.site_id}-{self.door}",
        )

    def start(self) -> None:
        """Publish users enrolled before the door joined, and connect (in the background, retried)."""
        n = self.replica.join(self.key.site_id)
        if n:
            log.info("site: %d user(s) enrolled here before this door joined the site will be published", n)
        self.mqtt.start()

    def stop(self) -> None:
        self.mqtt.stop()

    def _announce(self) -> None:
        self._seen, self._checked = set(), False
        self._connected_at = time.monotonic()
        self.mqtt.client.publish(self.topics.door(self.door), "online", qos=1, retain=True)
        self._wake.set()

    def _received(self, message: Incoming) -> None:
        self._incoming.put(message)
        self._wake.set()

    # -- one pass ---------------------------------------------------------------------------------

    def step(self) -> None:
        """Stamp local changes, apply what arrived, publish what is queued; waits up to TICK_S for work."""
        self.replica.stamp_local()
        records: list[Arriving] = []
        for _ in range(BATCH):
            try:
                message = self._incoming.get_nowait()
            except queue.Empty:
                break
            record = self._handle(message)
            if record is not None:
                records.append(record)
        if records:
            self._apply(records)
        settled = time.monotonic() - self._connected_at >= SETTLE_S and self._incoming.empty()
        if self.mqtt.connected and settled:
            if not self._checked:
                # Records the broker did not send on subscribing are missing there (a new broker, or
                # one that lost its store): put ours back, so that a door joining later gets them.
                self._checked = True
                n = self.replica.republish_except(self._seen)
                if n:
                    log.warning(
                        "site: the broker lacked %d record(s) this door holds: publishing them again", n
                    )
            self._publish()
        if self._incoming.empty():
            self._wake.wait(TICK_S)
            self._wake.clear()

    def _handle(self, message: Incoming) -> Arriving | None:
        """An acknowledgement or door state is noted at once; a user's record is opened and returned."""
        rest = message.topic.removeprefix(self.topics.base + "/").split("/")
        if rest[0] == "users" and len(rest) == 2:
            self._seen.add(rest[1])
            return self._open(rest[1], message.payload)
        if rest[0] == "acks" and len(rest) == 3:
            try:
                self.replica.note_ack(rest[1], rest[2], int(message.payload))
            except ValueError:
                log.warning("site: ignored a malformed acknowledgement on %s", message.topic)
        elif rest[0] == "doors" and len(rest) == 2:
            # An empty retained message retires a door: it is no longer waited for.
            self.replica.note_door(rest[1], message.payload.decode("utf-8", "replace")[:16] or None)
        return None

    def _open(self, key: str, payload: bytes) -> Arriving | None:
        """The verified record, or None (refused: logged, and never applied)."""
        if not payload:
            return None  # a cleared retained topic: not a record
        try:
            record = self.key.open(payload, topic_key=key)
        except RecordError as exc:
            self.refused += 1
            log.error("site: refused a record on users/%s: %s", key[:32], exc)
            self.gallery.log_event("site", reason=f"refused a record on users/{key[:32]}: {exc}")
            return None
        return Arriving(record.key, record.version, record.state, payload, record.base)

    def _apply(self, records: list[Arriving]) -> None:
        for record, outcome in zip(records, self.replica.apply_all(records), strict=True):
            if outcome == "applied":
                self.applied += 1
                what = "removal of" if record.state.deleted else "change to"
                log.info("site: applied the %s %s from door %s", what, record.state.name, record.version.door)
            elif outcome.startswith("refused"):
                self.refused += 1

    def _publish(self) -> None:
        client, pending = self.mqtt.client, []
        for out in self.replica.outbox():
            pending.append((out, client.publish(self.topics.user(out.key), out.payload, qos=1, retain=True)))
        for out, info in pending:
            # Marked published only once the broker has it (PUBACK); after a crash it is sent again,
            # and the other doors take the same version twice as a duplicate.
            try:
                info.wait_for_publish(PUBLISH_WAIT_S)
            except (RuntimeError, ValueError):
                return
            if not info.is_published():
                return
            self.replica.mark_published(out.key, out.version)
        for key, clock in self.replica.acks_to_send():
            info = client.publish(self.topics.ack(key, self.door), str(clock), qos=1, retain=True)
            try:
                info.wait_for_publish(PUBLISH_WAIT_S)
            except (RuntimeError, ValueError):
                return
            if info.is_published():
                self.replica.mark_acked(key, clock)
                self.replica.note_ack(key, self.door, clock)


def run_sync(cfg: Config, gallery: Gallery, model_id: str, install_signals: bool = True) -> int:
    """Run `facegate sync` until SIGTERM or SIGINT; returns the exit status (0)."""
    stop = threading.Event()
    sync = SiteSync(cfg, gallery, model_id)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        sync._wake.set()

    if install_signals:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    log.info(
        "site %s: door %s syncing %s over mqtt %s:%d (TLS) as %s",
        cfg.site.site_id,
        sync.door,
        gallery.path,
        cfg.mqtt.host,
        cfg.mqtt.port,
        cfg.mqtt.username,
    )
    sync.start()
    try:
        while not stop.is_set():
            sync.step()
    finally:
        sync.stop()
    log.info("stopped (%d record(s) applied, %d refused)", sync.applied, sync.refused)
    return 0
