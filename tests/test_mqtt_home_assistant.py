"""What Home Assistant is told, without a broker: the lock's state, which door events become `event`
messages (and as which type), and the door link's socket file handling."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.app.door_link import DoorLinkClient, DoorLinkServer
from appliance.errors import ApplianceError
from appliance.integrations.home_assistant import EVENT_TYPES, ha_event, lock_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("locked", "door_open", "state"),
    [
        (True, None, "LOCKED"),  # no contact fitted: the relay says
        (False, None, "UNLOCKED"),
        (True, False, "LOCKED"),
        (False, True, "UNLOCKED"),  # let in, walking through
        (False, False, "UNLOCKED"),
        (True, True, "JAMMED"),  # strike locked, door open: not secured
    ],
)
def test_lock_state(locked, door_open, state):
    assert lock_state(locked, door_open) == state


@pytest.mark.parametrize(
    ("kind", "reason", "event_type"),
    [
        ("grant", "matched", "granted"),
        ("deny", "unknown face", "denied"),
        ("deny", "not live: a screen", "not_live"),
        ("door", "forced", "door_forced"),
        ("door", "held open", "door_held_open"),
        ("exit", "exit button", "exit_button"),
        ("remote", "remote unlock from mqtt facegate/door/lock/set", "remote_unlock"),
        (
            "remote",
            "remote unlock refused from mqtt x: [mqtt] allow_remote_unlock is false",
            "unlock_refused",
        ),
        # Not decisions: the door's state topics carry them, or nothing does.
        ("door", "opened", None),
        ("door", "closed", None),
        ("remote", "locked from mqtt x", None),
        ("service", "started on picamera", None),
        ("error", "camera lost", None),
        ("enrol", "3 templates", None),
    ],
)
def test_which_door_events_become_home_assistant_events(kind, reason, event_type):
    got = ha_event({"kind": kind, "reason": reason, "name": "ann", "score": 0.97123, "time": 100.5, "seq": 3})
    if event_type is None:
        assert got is None
    else:
        assert got is not None and got["event_type"] == event_type and event_type in EVENT_TYPES
        assert (got["user"], got["score"], got["reason"], got["seq"]) == ("ann", 0.9712, reason, 3)
        assert got["at"] == "1970-01-01T00:01:40.500Z"


def test_door_link_replaces_a_stale_socket_but_never_another_file(tmp_path):
    stale = tmp_path / "door.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # what a killed door leaves behind
    with DoorLinkServer(stale, lambda: (True, None), lambda c, o: None):
        assert stale.is_socket()
        assert oct(stale.stat().st_mode & 0o777) == "0o660"
    assert not stale.exists()  # removed on close
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    with pytest.raises(ApplianceError, match="not a socket"):
        DoorLinkServer(other, lambda: (True, None), lambda c, o: None)
    assert other.read_text() == "keep me"
    with pytest.raises(ApplianceError, match="does not exist"):
        DoorLinkServer(tmp_path / "missing" / "door.sock", lambda: (True, None), lambda c, o: None)


def test_door_link_carries_state_events_and_commands_both_ways(tmp_path):
    import threading
    import time

    state = [True, None]
    commands: list[tuple[str, str]] = []
    got: list[dict] = []
    links: list[bool] = []
    ready = threading.Event()
    with DoorLinkServer(
        tmp_path / "d.sock", lambda: tuple(state), lambda c, o: commands.append((c, o))
    ) as server:
        client = DoorLinkClient(tmp_path / "d.sock", got.append, lambda up: (links.append(up), ready.set()))
        client.start()
        try:
            assert ready.wait(5) and links == [True]
            state[0] = False
            server.event("grant", "ann", 0.97, "matched", 12.5)
            assert client.command("unlock", "test")
            deadline = time.monotonic() + 5
            while (len(got) < 3 or not commands) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            client.close()
    assert got[0] == {"type": "state", "locked": True, "door_open": None}
    kinds = [(m["type"], m.get("locked", m.get("kind"))) for m in got[1:3]]
    assert sorted(kinds, key=str) == sorted([("state", False), ("event", "grant")], key=str)
    assert commands == [("unlock", "test")]


def test_the_door_runs_on_without_its_link(tmp_path, photos):
    # A socket folder that does not exist: the door logs it and keeps working (without Home Assistant).
    from test_mqtt_door import blank

    from appliance.evaluation.walkup import write_video

    clip = write_video(blank(10), tmp_path / "hall.mp4")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[mqtt]\nhost = "127.0.0.1"\nsocket = "{tmp_path / "nowhere" / "door.sock"}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--headless", "--source", str(clip), "--config", str(cfg)]
        + ["--db", str(tmp_path / "g.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "no link for the MQTT bridge" in result.stderr and "does not exist" in result.stderr
