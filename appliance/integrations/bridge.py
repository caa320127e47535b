"""`facegate mqtt`: the Home Assistant bridge, a process of its own beside the door service.

It reads the door's decisions and relay/contact state from the door link (app/door_link.py, a Unix
socket: the door process has no network) and publishes them to the broker as one Home Assistant
device (home_assistant.py); it passes the lock's commands back to the door, which alone decides
whether to unlock. Only decisions are published, never per-frame guesses.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from appliance.app.door_link import UNLOCK_REFUSED_REASON, DoorLinkClient
from appliance.config import Config
from appliance.integrations import home_assistant as ha
from appliance.integrations.mqtt_client import Incoming, MqttConnection

log = logging.getLogger(__name__)

PROBLEM_HOLD_S = 300.0
"""An "error" event from the door keeps `problem` on this long (unless another error comes), seconds."""
TICK_S = 0.5
"""How often the bridge's main loop looks at timers and the stop flag, seconds."""


class Bridge:
    """Door link <-> broker. Thread-safe: door messages and MQTT messages arrive on their own threads.

    Args:
        cfg: the config ([mqtt], and [gpio] door_sensor_pin: the door and tamper entities exist only
            where a contact is fitted).
        version: FaceGate's version, shown in Home Assistant's device page.
    """

    def __init__(self, cfg: Config, version: str) -> None:
        m = cfg.mqtt
        self.version = version
        self.topics = ha.Topics(m.topic_prefix, m.device_id, m.discovery_prefix)
        self.door_sensor = cfg.gpio.door_sensor_pin is not None
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}  # retained topic -> payload, published again on every connect
        self._linked = False
        self._error: tuple[str, float] | None = None  # last error event from the door: reason, when
        self.mqtt = MqttConnection(
            m,
            will_topic=self.topics.availability,
            will_payload=ha.OFFLINE,
            subscriptions=[self.topics.lock_command, self.topics.ha_status],
            on_connect=self.announce,
            on_message=self.on_mqtt,
        )
        self.link = DoorLinkClient(m.socket, self.on_door, self.on_link)
        self._update_problem()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker and to the door (both in the background, both retried)."""
        self.mqtt.start()
        self.link.start()

    def stop(self) -> None:
        """Close the door link, deliver queued events briefly, say offline and disconnect."""
        self.link.close()
        self.mqtt.stop()

    def tick(self, now: float | None = None) -> None:
        """Timers: clear an old door error from `problem`."""
        now = time.time() if now is None else now
        with self._lock:
            expired = self._error is not None and now - self._error[1] >= PROBLEM_HOLD_S
            if expired:
                self._error = None
        if expired:
            self._update_problem()

    # -- towards the broker ---------------------------------------------------------------------

    def announce(self) -> None:
        """Discovery, availability and every known state, retained: on connect and on HA's birth."""
        for topic, payload in ha.discovery(
            self.topics, door_sensor=self.door_sensor, qos=self.mqtt.qos, version=self.version
        ):
            self.mqtt.client.publish(topic, ha.encode(payload), qos=self.mqtt.qos, retain=True)
        self.mqtt.client.publish(self.topics.availability, ha.ONLINE, qos=self.mqtt.qos, retain=True)
        with self._lock:
            states = dict(self._states)
        for topic, payload in states.items():
            self.mqtt.client.publish(topic, payload, qos=self.mqtt.qos, retain=True)
        log.info("published Home Assistant discovery for %s and %d states", self.topics.base, len(states))

    def _set(self, topic: str, payload: str) -> None:
        with self._lock:
            if self._states.get(topic) == payload:
                return
            self._states[topic] = payload
        self.mqtt.publish_retained(topic, payload)

    def _update_problem(self) -> None:
        with self._lock:
            reasons = [] if self._linked else [f"the door service is not reachable at {self.link.path}"]
            if self._error is not None:
                reasons.append(f"{self._error[0]} (at {ha.iso(self._error[1])})")
        self._set(self.topics.problem_attributes, json.dumps({"reasons": reasons}))
        self._set(self.topics.problem_state, ha.ON if reasons else ha.OFF)

    # -- from the door ----------------------------------------------------------------------------

    def on_link(self, linked: bool) -> None:
        """The door link came up or went down."""
        with self._lock:
            self._linked = linked
            if linked:
                self._error = None  # a (re)started door: earlier errors are history
        log.info("door link %s", "up" if linked else "down")
        self._update_problem()

    def on_door(self, message: dict[str, Any]) -> None:
        """One message from the door: a state change or an event."""
        if message.get("type") == "state":
            locked, door_open = bool(message.get("locked", True)), message.get("door_open")
            self._set(self.topics.lock_state, ha.lock_state(locked, door_open))
            if self.door_sensor and door_open is not None:
                self._set(self.topics.door_state, ha.ON if door_open else ha.OFF)
                if not door_open or self.topics.tamper_state not in self._states:
                    self._set(self.topics.tamper_state, ha.OFF)
            return
        if message.get("type") != "event":
            return
        if message.get("kind") == "error":
            with self._lock:
                when = float(message.get("time") or time.time())
                self._error = (str(message.get("reason") or "error"), when)
            self._update_problem()
        payload = ha.ha_event(message)
        if payload is None:
            return
        self.mqtt.send_event(self.topics.event, json.dumps(payload))
        if payload["event_type"] == "door_forced" and self.door_sensor:
            self._set(self.topics.tamper_state, ha.ON)
        if payload["event_type"] == "granted" and payload["user"]:
            attributes = {"time": payload["time"], "at": payload["at"], "score": payload["score"]}
            self._set(self.topics.last_user_attributes, json.dumps(attributes))
            self._set(self.topics.last_user_state, str(payload["user"]))

    # -- from the broker --------------------------------------------------------------------------

    def on_mqtt(self, message: Incoming) -> None:
        """Home Assistant's birth message, or a lock command."""
        payload = message.payload.decode("utf-8", "replace").strip()
        if message.topic == self.topics.ha_status:
            if payload == ha.ONLINE:
                log.info("Home Assistant came online: publishing discovery again")
                self.announce()
            return
        if message.topic != self.topics.lock_command:
            return
        origin = f"mqtt {message.topic}"
        if message.retain:
            # A retained command would unlock the door again on every reconnect: never obeyed.
            log.warning("ignored retained %r on %s: commands must never be retained", payload, message.topic)
            return
        commands = {ha.COMMAND_UNLOCK: "unlock", ha.COMMAND_OPEN: "unlock", ha.COMMAND_LOCK: "lock"}
        command = commands.get(payload)
        if command is None:
            log.warning("ignored unknown lock command %r on %s", payload[:40], message.topic)
            return
        if not self.link.command(command, origin):
            log.error("%s from %s not passed on: the door service is not reachable", command, origin)
            if command == "unlock":
                refused = {
                    "kind": "remote",
                    "reason": f"{UNLOCK_REFUSED_REASON} from {origin}: the door service is not reachable",
                    "time": time.time(),
                }
                event = ha.ha_event(refused)
                assert event is not None
                self.mqtt.send_event(self.topics.event, json.dumps(event))


def run_bridge(cfg: Config, version: str, install_signals: bool = True) -> int:
    """Run the bridge until SIGTERM or SIGINT; returns the exit status (0)."""
    m = cfg.mqtt
    stop = threading.Event()
    bridge = Bridge(cfg, version)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    if install_signals:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    tls = " (TLS)" if m.tls or m.ca_file else ""
    log.info(
        "bridging the door at %s to mqtt %s:%d%s as %s (remote unlock %s)",
        m.socket,
        m.host,
        m.port,
        tls,
        bridge.topics.base,
        "allowed" if m.allow_remote_unlock else "refused",
    )
    bridge.start()
    try:
        while not stop.wait(TICK_S):
            bridge.tick()
    finally:
        bridge.stop()
    log.info("stopped")
    return 0
