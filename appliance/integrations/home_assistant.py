"""What Home Assistant sees of the door: topics, discovery payloads, states and event payloads. Pure.

One device per door, made of a `lock` (the strike), `binary_sensor`s for the door contact, problems
and tamper (the door contact ones only where a contact is fitted), an `event` entity for the door's
decisions and a `sensor` for the last user let in. Every payload is built here from plain values, so
what is published can be tested without a broker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from appliance.app.door_link import REMOTE_UNLOCK_REASON, UNLOCK_REFUSED_REASON

LOCKED, UNLOCKED, JAMMED = "LOCKED", "UNLOCKED", "JAMMED"
"""The lock's states (Home Assistant's defaults for an MQTT lock)."""
ONLINE, OFFLINE = "online", "offline"
"""Availability payloads; OFFLINE is also the broker's Last Will."""
ON, OFF = "ON", "OFF"
"""Binary sensor payloads."""
COMMAND_LOCK, COMMAND_UNLOCK, COMMAND_OPEN = "LOCK", "UNLOCK", "OPEN"
"""Lock command payloads Home Assistant sends (OPEN is treated as UNLOCK: a strike has no latch)."""

EVENT_TYPES = (
    "granted",
    "denied",
    "not_live",
    "door_forced",
    "door_held_open",
    "exit_button",
    "remote_unlock",
    "unlock_refused",
)
"""The `event` entity's event types; each message carries the attributes user, score and reason."""


@dataclass(frozen=True)
class Topics:
    """The topic layout of one door: PREFIX/DEVICE/... for state and commands, and the discovery topics."""

    prefix: str
    device_id: str
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        """PREFIX/DEVICE, the root of this door's own topics."""
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def lock_state(self) -> str:
        return f"{self.base}/lock/state"

    @property
    def lock_command(self) -> str:
        return f"{self.base}/lock/set"

    @property
    def door_state(self) -> str:
        return f"{self.base}/door/state"

    @property
    def problem_state(self) -> str:
        return f"{self.base}/problem/state"

    @property
    def problem_attributes(self) -> str:
        return f"{self.base}/problem/attributes"

    @property
    def tamper_state(self) -> str:
        return f"{self.base}/tamper/state"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def last_user_state(self) -> str:
        return f"{self.base}/last_user/state"

    @property
    def last_user_attributes(self) -> str:
        return f"{self.base}/last_user/attributes"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and will messages ("online" / "offline")."""
        return f"{self.discovery_prefix}/status"

    def config(self, component: str, object_id: str) -> str:
        """The discovery topic of one entity."""
        return f"{self.discovery_prefix}/{component}/{self.device_id}/{object_id}/config"


def lock_state(locked: bool, door_open: bool | None) -> str:
    """The lock's state: JAMMED when the relay is locked but the door contact says open (the strike is
    locked yet the door is not secured); without a contact, what the relay says."""
    if locked and door_open:
        return JAMMED
    return LOCKED if locked else UNLOCKED


def discovery(
    topics: Topics, *, door_sensor: bool, qos: int, version: str
) -> list[tuple[str, dict[str, Any] | None]]:
    """Every discovery (topic, payload) to publish, retained; payload None removes an entity that is not
    fitted (Home Assistant deletes an entity whose config is published empty)."""
    device = {
        "identifiers": [f"facegate_{topics.device_id}"],
        "name": f"FaceGate {topics.device_id}",
        "manufacturer": "FaceGate",
        "model": "Face-verification door access",
        "sw_version": version,
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device,
        "origin": {"name": "FaceGate", "sw_version": version},
        "qos": qos,
    }

    def entity(component: str, key: str, name: str | None, **extra: Any) -> tuple[str, dict[str, Any]]:
        unique = f"facegate_{topics.device_id}_{key}"
        return topics.config(component, key), {
            "name": name,
            "unique_id": unique,
            # The entity id: default_entity_id since Home Assistant 2025.10, object_id before it.
            "default_entity_id": f"{component}.{unique}",
            "object_id": unique,
            **common,
            **extra,
        }

    binary = {"payload_on": ON, "payload_off": OFF}
    out: list[tuple[str, dict[str, Any] | None]] = [
        entity(
            "lock",
            "lock",
            None,  # the device's main entity: Home Assistant shows it under the device's name
            state_topic=topics.lock_state,
            command_topic=topics.lock_command,
            payload_lock=COMMAND_LOCK,
            payload_unlock=COMMAND_UNLOCK,
            state_locked=LOCKED,
            state_unlocked=UNLOCKED,
            state_jammed=JAMMED,
            optimistic=False,
            retain=False,
        ),
        entity(
            "binary_sensor",
            "problem",
            "Problem",
            state_topic=topics.problem_state,
            json_attributes_topic=topics.problem_attributes,
            device_class="problem",
            entity_category="diagnostic",
            **binary,
        ),
        entity(
            "event",
            "access",
            "Access",
            state_topic=topics.event,
            event_types=list(EVENT_TYPES),
            icon="mdi:door-closed-lock",
        ),
        entity(
            "sensor",
            "last_user",
            "Last user let in",
            state_topic=topics.last_user_state,
            json_attributes_topic=topics.last_user_attributes,
            icon="mdi:account-key",
        ),
    ]
    for key, name, device_class, state in (
        ("door", "Door", "door", topics.door_state),
        ("tamper", "Tamper", "tamper", topics.tamper_state),
    ):
        if door_sensor:
            out.append(
                entity("binary_sensor", key, name, state_topic=state, device_class=device_class, **binary)
            )
        else:
            out.append((topics.config("binary_sensor", key), None))
    return out


def encode(payload: dict[str, Any] | None) -> str:
    """A discovery or attributes payload as published ("" for None: removes the entity)."""
    return "" if payload is None else json.dumps(payload, separators=(",", ":"))


def ha_event(event: dict[str, Any]) -> dict[str, Any] | None:
    """The `event` entity's message for one door event (from the door link), or None if the event is
    not a decision Home Assistant is told about (service start, door opened or closed, errors).

    Keys: event_type (one of EVENT_TYPES), user, score, reason, time (epoch seconds of the decision,
    and `at` the same in ISO 8601 UTC), seq (the door's event counter, for ordering)."""
    kind, reason = event.get("kind"), str(event.get("reason") or "")
    event_type: str | None = None
    if kind == "grant":
        event_type = "granted"
    elif kind == "exit":
        event_type = "exit_button"
    elif kind == "deny":
        event_type = "not_live" if "not live" in reason else "denied"
    elif kind == "door" and reason in ("forced", "held open"):
        event_type = "door_forced" if reason == "forced" else "door_held_open"
    elif kind == "remote" and reason.startswith(UNLOCK_REFUSED_REASON):
        event_type = "unlock_refused"
    elif kind == "remote" and reason.startswith(REMOTE_UNLOCK_REASON):
        event_type = "remote_unlock"
    if event_type is None:
        return None
    when = float(event.get("time") or time.time())
    score = event.get("score")
    return {
        "event_type": event_type,
        "user": event.get("name"),
        "score": None if score is None else round(float(score), 4),
        "reason": reason,
        "time": round(when, 3),
        "at": iso(when),
        "seq": event.get("seq"),
    }


def iso(when: float) -> str:
    """Epoch seconds as ISO 8601 UTC, milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z"
