"""The MQTT connection, on paho-mqtt 2.x: the only module that imports paho.

`MqttConnection` keeps one broker connection up (paho reconnects with exponential backoff), sets the
Last Will, publishes retained state, and sends events through a bounded, ordered outbox: one event in
flight at a time, each kept until the broker has it (PUBACK at QoS 1), so events logged while the
broker is away are delivered in order when it returns; when the outbox is full the oldest is dropped,
with a log line.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from appliance.config import MqttSettings
from appliance.errors import ApplianceError, ConfigError

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
"""MQTT keepalive, seconds: the broker publishes the Will about 1.5x this after the bridge vanishes
without closing its socket (a power cut); a killed process's socket is closed at once by the kernel."""
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 30.0
"""paho's reconnect backoff: first wait, doubled up to the last, seconds."""
PUBLISH_WAIT_S = 0.05
"""Longest the outbox thread waits before looking again whether the event in flight was acknowledged,
seconds (paho's on_publish wakes it at once)."""


@dataclass(frozen=True)
class Incoming:
    """A message received on a subscribed topic."""

    topic: str
    payload: bytes
    retain: bool


def read_password(settings: MqttSettings) -> str | None:
    """The password from [mqtt] password_file (its first line), or None when no file is set."""
    if not settings.password_file:
        return None
    path = Path(settings.password_file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(
            f"mqtt.password_file {path}: cannot read it ({exc.strerror or exc}); "
            "check the path and that the service user may read it"
        ) from None
    if not lines or not lines[0]:
        raise ConfigError(f"mqtt.password_file {path}: is empty; put the password on its first line")
    return lines[0]


def _client(settings: MqttSettings, client_id: str) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv311,
        clean_session=True,
    )
    if settings.username:
        client.username_pw_set(settings.username, read_password(settings))
    if settings.tls or settings.ca_file:
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(settings, key)
            if value and not Path(value).is_file():
                raise ConfigError(f"mqtt.{key} {value}: no such file; give the PEM file's path")
        try:
            client.tls_set(
                ca_certs=settings.ca_file or None,
                certfile=settings.cert_file or None,
                keyfile=settings.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"mqtt TLS files cannot be used: {exc}") from None
    return client


class MqttConnection:
    """One broker connection with a Will, retained-state publishing and an ordered event outbox.

    Args:
        settings: [mqtt].
        will_topic: where the broker publishes OFFLINE (retained) if the bridge vanishes.
        subscriptions: topics to (re)subscribe on every connect.
        on_connect: called (from paho's thread) after every successful connect and subscribe.
        on_message: called (from paho's thread) with each Incoming message.
        client_id: default a random one per process.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        will_topic: str,
        will_payload: str,
        subscriptions: list[str],
        on_connect: Callable[[], None],
        on_message: Callable[[Incoming], None],
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.qos = settings.qos
        self._subscriptions = subscriptions
        self._on_connect, self._on_message = on_connect, on_message
        self.client = _client(settings, client_id or f"facegate-{settings.device_id}-{uuid.uuid4().hex[:8]}")
        self.client.will_set(will_topic, will_payload, qos=max(1, settings.qos), retain=True)
        self._will = (will_topic, will_payload)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_message = self._message
        self.client.on_publish = self._published
        self._outbox: collections.deque[tuple[str, str]] = collections.deque()
        self._acked: collections.deque[int] = collections.deque(maxlen=64)  # recent message ids done
        self._cond = threading.Condition()
        self._connected_flag = False
        self._ready = False  # connected and the on_connect publishes (availability, discovery) are done
        self._epoch = 0  # counts connections, so the outbox knows a QoS 0 send may have been lost
        self._stop = False
        self._sender = threading.Thread(target=self._send_events, name="mqtt-outbox", daemon=True)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with backoff until the broker answers)."""
        s = self.settings
        self.client.connect_async(s.host, s.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self._sender.start()

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected_flag

    def stop(self, flush_s: float = 2.0) -> None:
        """Send what is queued (up to `flush_s`), publish the Will's words ourselves (retained), and
        disconnect cleanly (a clean disconnect does not fire the Will, hence the explicit words)."""
        deadline = time.monotonic() + flush_s
        with self._cond:
            while self._outbox and self._connected_flag and time.monotonic() < deadline:
                self._cond.wait(0.05)
            self._stop = True
            self._cond.notify_all()
        if self._connected_flag:
            info = self.client.publish(*self._will, qos=max(1, self.qos), retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()
        if self._sender.is_alive():
            self._sender.join(1.0)
        with self._cond:
            left = len(self._outbox)
        if left:
            log.error("mqtt: %d event(s) not delivered before stopping (the gallery has them all)", left)

    # -- publishing ---------------------------------------------------------------------------

    def publish_retained(self, topic: str, payload: str) -> None:
        """Publish a state (retained). While disconnected it is skipped: every state is published
        again on the next connect, so only the newest ever matters."""
        if self._connected_flag:
            self.client.publish(topic, payload, qos=self.qos, retain=True)

    def send_event(self, topic: str, payload: str) -> None:
        """Queue an event (never retained) for in-order delivery; drops the oldest when full."""
        with self._cond:
            if len(self._outbox) >= self.settings.queue_size:
                old_topic, old_payload = self._outbox.popleft()
                log.error(
                    "mqtt: event queue full (%d) while the broker is away: dropped the oldest, %s %s",
                    self.settings.queue_size,
                    old_topic,
                    old_payload,
                )
            self._outbox.append((topic, payload))
            self._cond.notify_all()

    def _send_events(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not (self._outbox and self._ready):
                    self._cond.wait()
                if self._stop:
                    return
                head = self._outbox[0]
                epoch = self._epoch
            info = self.client.publish(head[0], head[1], qos=self.qos, retain=False)
            # paho keeps a QoS 1/2 message it could not finish and sends it again after a reconnect,
            # so it is waited for, never published twice; a QoS 0 one is lost with the connection.
            while True:
                with self._cond:
                    if info.mid in self._acked or info.is_published():
                        done = True
                        break
                    if self._stop:
                        return
                    if self.qos == 0 and (self._epoch != epoch or not self._connected_flag):
                        done = False
                        break
                    self._cond.wait(PUBLISH_WAIT_S)
            if done:
                with self._cond:
                    if self._outbox and self._outbox[0] is head:
                        self._outbox.popleft()
                    self._cond.notify_all()

    # -- paho callbacks (paho's network thread) -------------------------------------------------

    def _connected(
        self, client: paho.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            s = self.settings
            log.error("mqtt: broker %s:%d refused the connection: %s", s.host, s.port, rc)
            return
        for topic in self._subscriptions:
            client.subscribe(topic, qos=self.qos)
        log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
        with self._cond:
            self._connected_flag = True
            self._epoch += 1
        try:
            self._on_connect()  # availability and discovery go out before the queued events
        finally:
            with self._cond:
                self._ready = self._connected_flag
                self._cond.notify_all()

    def _disconnected(
        self, client: paho.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        with self._cond:
            was = self._connected_flag
            self._connected_flag = self._ready = False
            self._cond.notify_all()
        if was and not self._stop:
            log.warning("mqtt: lost the broker (%s); reconnecting with backoff", rc)

    def _published(self, client: paho.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        # paho calls this just before it marks the message published: remember the id, wake the outbox.
        with self._cond:
            self._acked.append(mid)
            self._cond.notify_all()

    def _message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            self._on_message(Incoming(message.topic, bytes(message.payload), bool(message.retain)))
        except Exception:  # noqa: BLE001 - a bad message must not stop paho's thread
            log.exception("mqtt: handling a message on %s failed", message.topic)


def check_broker(settings: MqttSettings, timeout_s: float = 5.0) -> str:
    """Connect to the broker of [mqtt] once and disconnect (for `facegate doctor`); a line saying so.

    Raises:
        ApplianceError: not configured, files missing, the broker unreachable, TLS or login refused.
    """
    if not settings.host:
        raise ConfigError("[mqtt] host is not set")
    client = _client(settings, f"facegate-doctor-{uuid.uuid4().hex[:8]}")
    result: list[object] = []
    done = threading.Event()

    def connected(c: paho.Client, u: object, f: object, rc: object, p: object) -> None:
        result.append(rc)
        done.set()

    client.on_connect = connected
    where = f"{settings.host}:{settings.port}"
    try:
        client.connect(settings.host, settings.port, keepalive=10)
    except ssl.SSLError as exc:
        raise ApplianceError(
            f"mqtt broker {where}: TLS failed ({exc.reason or exc}); "
            "check mqtt.ca_file and the broker's certificate"
        ) from None
    except OSError as exc:
        raise ApplianceError(
            f"mqtt broker {where}: cannot connect ({exc.strerror or exc}); is the broker running, "
            "and are mqtt.host and mqtt.port right?"
        ) from None
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise ApplianceError(f"mqtt broker {where}: no answer within {timeout_s:g} s")
        rc = result[0]
        if getattr(rc, "is_failure", False):
            raise ApplianceError(
                f"mqtt broker {where}: refused the connection ({rc}); check mqtt.username and password_file"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    tls = " over TLS" if settings.tls or settings.ca_file else ""
    user = f" as {settings.username}" if settings.username else ""
    return f"broker {where} accepts FaceGate{tls}{user}"
