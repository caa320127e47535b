"""A real mosquitto broker per test, a real paho subscriber, and `facegate mqtt` / `facegate run` as
processes: the pieces of tests/test_mqtt_*.py.

The broker is Debian's mosquitto (`apt-get install mosquitto`, done by .ci/run), started by the test on
a free localhost port with a generated config; tests skip, saying so, where it is not installed.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto; .ci/run does)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll `predicate` until true, or fail the test naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


class Broker:
    """mosquitto on 127.0.0.1:port with a generated config, in `folder`. `extra` lines go in the listener."""

    def __init__(self, folder: Path, extra: str = "", port: int | None = None, anonymous: bool = True):
        assert MOSQUITTO is not None
        self.folder = folder
        self.port = port or free_port()
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            # Started as root, mosquitto would drop to its own user, who cannot read the test's files.
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            f"persistence true\npersistence_location {folder}/\n"
            "log_dest stderr\nlog_type all\n" + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 10, f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistent sessions
            self.proc.wait(10)
        self.proc = None


@dataclass
class Received:
    topic: str
    payload: str
    retain: bool
    at: float  # time.time() when it arrived
    dup: bool = False  # the broker's redelivery of a QoS 1 message it sent before


@dataclass
class Subscriber:
    """A real paho client subscribed to everything on the broker, keeping what arrives."""

    port: int
    tls: dict[str, str] | None = None
    client_id: str = field(default_factory=lambda: f"test-{os.getpid()}-{time.monotonic_ns()}")
    persistent: bool = False
    auth: tuple[str, str] | None = None
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv311,
            clean_session=not self.persistent,
        )
        if self.tls:
            self.client.tls_set(**self.tls)
        if self.auth:
            self.client.username_pw_set(*self.auth)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "the test's subscriber could not connect"

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        client.subscribe("#", qos=1)
        # Subscribed only once the broker acknowledges: on_subscribe sets connected.
        client.on_subscribe = lambda *a: self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(
                Received(
                    message.topic,
                    message.payload.decode(),
                    bool(message.retain),
                    time.time(),
                    bool(message.dup),
                )
            )

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[str]:
        return [m.payload for m in self.on(topic)]

    def last(self, topic: str) -> str | None:
        got = self.payloads(topic)
        return got[-1] if got else None

    def wait_for(
        self, topic: str, payload: str | None = None, timeout_s: float = 15, after: int = 0
    ) -> Received:
        """The first message on `topic` (with `payload` if given) among those after index `after`."""
        found: list[Received] = []

        def seen() -> bool:
            for m in self.on(topic)[after:]:
                if payload is None or m.payload == payload:
                    found.append(m)
                    return True
            return False

        wait_until(seen, timeout_s, f"{payload or 'a message'} on {topic}")
        return found[0]

    def events(self, topic: str) -> list[dict]:
        """The JSON messages on `topic`, without the broker's redeliveries (DUP) of one already here:
        QoS 1 is at least once, e.g. when the broker stops before the test's client acknowledged."""
        out: list[dict] = []
        for m in self.on(topic):
            event = json.loads(m.payload)
            if not (m.dup and event in out):
                out.append(event)
        return out

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_config(folder: Path, port: int, *, mqtt: str = "", extra: str = "") -> Path:
    """A config.toml for a test: [mqtt] on the broker at `port`, the door link socket in `folder`."""
    path = folder / "config.toml"
    path.write_text(
        '[gpio]\npin_factory = "mock"\n'
        + extra
        + f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nsocket = "{folder / "door.sock"}"\n'
        + mqtt
    )
    return path


def facegate(*args: object, log: Path) -> subprocess.Popen[bytes]:
    """`facegate ARGS...` as a process of its own (python -m appliance), stderr and stdout to `log`."""
    out = open(log, "ab")  # noqa: SIM115 - closed with the process by stop()
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", *map(str, args)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
    )
    proc.log_file = out  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Send `sig`, wait for the exit, close its log; the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    proc.log_file.close()  # type: ignore[attr-defined]
    return proc.returncode


@contextlib.contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        stop(proc)


def topics(prefix: str = "facegate", device: str = "door"):
    from appliance.integrations.home_assistant import Topics

    return Topics(prefix, device, "homeassistant")
