"""`facegate mqtt` against a real mosquitto: discovery, availability and the Will, commands, and events
delivered in order across a broker restart.

The door side here is the door process's own link server (app/door_link.py) run in the test, so each
test can make the door say exactly what it needs; tests/test_mqtt_door.py runs the real door process.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from mqtt_helpers import (
    Broker,
    Subscriber,
    facegate,
    needs_mosquitto,
    running,
    stop,
    topics,
    wait_until,
    write_config,
)

from appliance.app.door_link import DoorLinkServer
from appliance.integrations.home_assistant import EVENT_TYPES

pytestmark = needs_mosquitto
T = topics()


class FakeDoorState:
    """What the link server reports as the door's relay and contact; commands it receives."""

    def __init__(self) -> None:
        self.locked, self.door_open = True, None
        self.commands: list[tuple[str, str]] = []

    def read(self) -> tuple[bool, bool | None]:
        return self.locked, self.door_open

    def command(self, command: str, origin: str) -> None:
        self.commands.append((command, origin))


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def door(tmp_path: Path):
    state = FakeDoorState()
    with DoorLinkServer(tmp_path / "door.sock", state.read, state.command) as server:
        yield state, server


@pytest.fixture
def sub(broker: Broker):
    s = Subscriber(broker.port)
    yield s
    s.close()


def bridge(tmp_path: Path, broker: Broker, mqtt: str = "", extra: str = ""):
    cfg = write_config(tmp_path, broker.port, mqtt=mqtt, extra=extra)
    return facegate("mqtt", "--config", cfg, log=tmp_path / "bridge.log")


def test_discovery_is_valid_json_with_unique_ids_and_what_home_assistant_needs(tmp_path, broker, sub, door):
    with running(bridge(tmp_path, broker, extra="door_sensor_pin = 5\n")):
        sub.wait_for(T.availability, "online")
        sub.wait_for(T.config("sensor", "last_user"))
    configs = {m.topic: m for m in sub.messages if m.topic.startswith("homeassistant/")}
    payloads = {topic: json.loads(m.payload) for topic, m in configs.items()}  # every one valid JSON
    by_component = {topic.split("/")[1] for topic in payloads}
    assert by_component == {"lock", "binary_sensor", "event", "sensor"}
    ids = [p["unique_id"] for p in payloads.values()]
    assert len(ids) == len(set(ids)) == 6  # lock, door, problem, tamper, event, last user
    for topic, p in payloads.items():
        assert re.fullmatch(r"homeassistant/\w+/door/\w+/config", topic)
        assert p["availability_topic"] == T.availability
        assert p["device"]["identifiers"] == ["facegate_door"]
        assert p["state_topic"].startswith("facegate/door/")
        component = topic.split("/")[1]
        assert p["default_entity_id"] == f"{component}.{p['unique_id']}" and p["object_id"] == p["unique_id"]
    lock = payloads[T.config("lock", "lock")]
    assert lock["command_topic"] == T.lock_command and lock["state_jammed"] == "JAMMED"
    assert (lock["state_locked"], lock["state_unlocked"]) == ("LOCKED", "UNLOCKED")
    event = payloads[T.config("event", "access")]
    assert {"granted", "denied", "not_live", "door_forced", "door_held_open"} <= set(event["event_types"])
    assert set(event["event_types"]) == set(EVENT_TYPES)
    classes = {p.get("device_class") for t, p in payloads.items() if "/binary_sensor/" in t}
    assert classes == {"door", "problem", "tamper"}


def test_without_a_door_contact_the_door_and_tamper_entities_are_removed(tmp_path, broker, sub, door):
    with running(bridge(tmp_path, broker)):
        sub.wait_for(T.config("sensor", "last_user"))
        sub.wait_for(T.config("binary_sensor", "tamper"))
    assert sub.last(T.config("binary_sensor", "door")) == ""  # an empty config deletes the entity
    assert sub.last(T.config("binary_sensor", "tamper")) == ""


def test_online_retained_then_the_will_says_offline_when_the_bridge_is_killed(tmp_path, broker, sub, door):
    proc = bridge(tmp_path, broker)
    try:
        sub.wait_for(T.availability, "online")
        late = Subscriber(broker.port)  # joins later: sees the retained value
        try:
            got = late.wait_for(T.availability, "online")
            assert got.retain
        finally:
            late.close()
        n = len(sub.on(T.availability))
    finally:
        stop(proc, signal.SIGKILL)  # no chance to say goodbye: only the broker's Last Will can
    sub.wait_for(T.availability, "offline", after=n, timeout_s=10)
    late = Subscriber(broker.port)
    try:
        assert late.wait_for(T.availability).payload == "offline"  # retained too
    finally:
        late.close()


def test_a_clean_stop_says_offline_too(tmp_path, broker, sub, door):
    proc = bridge(tmp_path, broker)
    sub.wait_for(T.availability, "online")
    assert stop(proc) == 0
    assert sub.last(T.availability) == "offline"


def test_discovery_is_sent_again_when_home_assistant_comes_online(tmp_path, broker, sub, door):
    with running(bridge(tmp_path, broker)):
        sub.wait_for(T.config("lock", "lock"))
        n = len(sub.on(T.config("lock", "lock")))
        sub.publish("homeassistant/status", "offline")
        time.sleep(0.3)
        assert len(sub.on(T.config("lock", "lock"))) == n  # nothing for HA going away
        sub.publish("homeassistant/status", "online")
        sub.wait_for(T.config("lock", "lock"), after=n)
        sub.wait_for(T.availability, "online", after=1)


def test_decisions_become_events_and_the_lock_follows_the_relay(tmp_path, broker, sub, door):
    state, server = door
    with running(bridge(tmp_path, broker, extra="door_sensor_pin = 5\n")):
        sub.wait_for(T.problem_state, "OFF")  # the door link is up
        sub.wait_for(T.lock_state, "LOCKED")
        server.event("grant", "ann", 0.9712, "matched", time.time())
        state.locked = False
        sub.wait_for(T.lock_state, "UNLOCKED")
        state.door_open = True
        sub.wait_for(T.door_state, "ON")
        state.locked = True  # relocked while the door is still open: the strike cannot secure it
        sub.wait_for(T.lock_state, "JAMMED")
        n = len(sub.on(T.lock_state))
        state.door_open = False
        sub.wait_for(T.lock_state, "LOCKED", after=n)
        server.event("deny", None, 0.84, "unknown face", time.time())
        server.event("door", None, None, "opened", time.time())  # a state, not an event entity message
        server.event("door", None, None, "forced", time.time())
        server.event("service", None, None, "started on picamera", time.time())
        sub.wait_for(T.tamper_state, "ON")
        sub.wait_for(T.event, after=2)
        time.sleep(0.3)  # the service event, sent last, must not follow
    events = sub.events(T.event)
    assert [e["event_type"] for e in events] == ["granted", "denied", "door_forced"]
    assert events[0]["user"] == "ann" and events[0]["score"] == 0.9712 and events[0]["reason"] == "matched"
    assert events[1]["user"] is None and events[1]["reason"] == "unknown face"
    assert sub.last(T.last_user_state) == "ann"
    assert json.loads(sub.last(T.last_user_attributes))["score"] == 0.9712
    assert not any(m.retain for m in sub.on(T.event))


def test_commands_are_passed_to_the_door_once_and_retained_ones_never(tmp_path, broker, sub, door):
    state, _ = door
    sub.publish(T.lock_command, "UNLOCK", retain=True)  # e.g. a misconfigured automation
    with running(bridge(tmp_path, broker)):
        sub.wait_for(T.problem_state, "OFF")
        time.sleep(0.5)
        assert state.commands == []  # the retained UNLOCK was not obeyed
        sub.publish(T.lock_command, "", retain=True)  # clear it
        sub.publish(T.lock_command, "UNLOCK")
        sub.publish(T.lock_command, "LOCK")
        sub.publish(T.lock_command, "WIGGLE")
        time.sleep(0.5)
    assert state.commands == [("unlock", f"mqtt {T.lock_command}"), ("lock", f"mqtt {T.lock_command}")]
    assert "ignored retained 'UNLOCK'" in (tmp_path / "bridge.log").read_text()


def test_unlock_while_the_door_service_is_down_is_refused_and_reported(tmp_path, broker, sub):
    with running(bridge(tmp_path, broker)):
        sub.wait_for(T.problem_state, "ON")
        attributes = json.loads(sub.wait_for(T.problem_attributes).payload)
        assert "not reachable" in attributes["reasons"][0]
        sub.publish(T.lock_command, "UNLOCK")
        event = json.loads(sub.wait_for(T.event).payload)
    assert event["event_type"] == "unlock_refused" and "not reachable" in event["reason"]


def test_events_while_the_broker_is_away_arrive_in_order_when_it_returns(tmp_path, broker, door):
    _, server = door
    # A persistent session, so the test's subscriber gets what was sent while it was reconnecting.
    sub = Subscriber(broker.port, client_id="test-persistent", persistent=True)
    proc = bridge(tmp_path, broker)
    try:
        sub.wait_for(T.problem_state, "OFF")
        server.event("grant", "u0", 0.97, "matched", time.time())
        sub.wait_for(T.event)
        broker.stop()
        # Logged once the bridge knows the broker is away (an event in flight as it goes may be
        # delivered twice: QoS 1 is at least once).
        wait_until(
            lambda: "lost the broker" in (tmp_path / "bridge.log").read_text(), 10, "the bridge to notice"
        )
        for i in range(1, 6):
            server.event("grant", f"u{i}", 0.97, "matched", time.time())
        time.sleep(1.0)
        broker.start()  # same port, sessions restored
        sub.wait_for(T.event, after=5, timeout_s=40)
    finally:
        stop(proc)
        sub.close()
    users = [e["user"] for e in sub.events(T.event)]
    assert users == [f"u{i}" for i in range(6)]
    seqs = [e["seq"] for e in sub.events(T.event)]
    assert seqs == sorted(seqs)


def test_the_queue_is_bounded_and_drops_the_oldest_with_a_log_line(tmp_path, broker, door):
    _, server = door
    sub = Subscriber(broker.port, client_id="test-persistent-2", persistent=True)
    proc = bridge(tmp_path, broker, mqtt="queue_size = 3\n")
    try:
        sub.wait_for(T.problem_state, "OFF")
        broker.stop()
        wait_until(
            lambda: "lost the broker" in (tmp_path / "bridge.log").read_text(), 10, "the bridge to notice"
        )
        for i in range(6):
            server.event("grant", f"u{i}", 0.97, "matched", time.time())
        time.sleep(0.5)
        broker.start()
        sub.wait_for(T.event, after=2, timeout_s=40)
        time.sleep(0.5)
    finally:
        stop(proc)
        sub.close()
    assert [e["user"] for e in sub.events(T.event)] == ["u3", "u4", "u5"]
    log = (tmp_path / "bridge.log").read_text()
    assert log.count("event queue full (3)") == 3 and '"user": "u0"' in log


def test_mqtt_without_a_host_is_a_one_line_error(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[mqtt]\nport = 1883\n")
    proc = facegate("mqtt", "--config", cfg, log=tmp_path / "out.log")
    assert proc.wait(30) == 1
    stop(proc)
    text = (tmp_path / "out.log").read_text()
    assert "facegate: error:" in text and "[mqtt] host is not set" in text and "Traceback" not in text
