"""The door service's local link to the MQTT bridge: one Unix stream socket, newline-delimited JSON.

The door process has no network (its unit allows only AF_UNIX), so everything Home Assistant sees or
asks for passes here, between two processes on the same Pi:

- door -> bridge: ``{"type": "state", "locked": bool, "door_open": bool | null}`` whenever the relay or
  the door contact changes (and once on connect), and ``{"type": "event", "seq": n, "time": epoch s,
  "kind": ..., "name": ..., "score": ..., "reason": ...}`` for every event the door logs, at the moment
  it logs it (a decision reaches the bridge without waiting for the gallery write).
- bridge -> door: ``{"type": "command", "command": "unlock" | "lock", "origin": "..."}``. The door alone
  decides: an unlock is refused unless [mqtt] allow_remote_unlock, and either way logged as a "remote"
  event naming the origin; an accepted one goes through the door loop like the exit button, with the
  same hold time and relock as a grant.

`DoorLinkServer` is the door side, `DoorLinkClient` the bridge side. Neither side ever blocks the other:
a client that stops reading is dropped, and the door loop only ever appends to a socket buffer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

PROTOCOL = 1
"""Version sent in the "hello" message; a bridge refuses a door that speaks another."""
STATE_POLL_S = 0.02
"""How often the door side looks at the relay and the door contact for a change, seconds."""
SEND_TIMEOUT_S = 0.5
"""A client whose socket buffer stays full this long is dropped (the door never waits on it)."""
MAX_LINE = 64 * 1024
"""Longest message accepted, bytes; a longer line is a broken peer."""
REMOTE_UNLOCK_REASON = "remote unlock"
"""Start of the reason of a grant made by a remote (MQTT) unlock command."""
UNLOCK_REFUSED_REASON = "remote unlock refused"
"""Start of the reason of the "remote" event logged for a refused unlock command."""


class EventSink(Protocol):
    """Where the door's events go (app.event_writer.EventWriter, or a Gallery)."""

    def log_event(
        self, kind: str, *, name: str | None = None, score: float | None = None, reason: str = ""
    ) -> None: ...


class DoorLinkServer:
    """The door process's end of the link: a listening Unix socket and two small threads.

    Args:
        path: socket file; its folder must exist (/run/facegate, the unit's RuntimeDirectory). A stale
            socket file left by a killed door is replaced; any other file there is refused.
        read_state: returns (locked, door_open or None when no sensor is fitted); polled every
            STATE_POLL_S from the link's thread, so it must be thread-safe and quick.
        on_command: called with (command, origin) from a client's reader thread.
    """

    def __init__(
        self,
        path: str | Path,
        read_state: Callable[[], tuple[bool, bool | None]],
        on_command: Callable[[str, str], None],
    ) -> None:
        self.path = Path(path)
        self._read_state = read_state
        self._on_command = on_command
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = 0
        self._state: tuple[bool, bool | None] | None = None
        self._sock = _listen(self.path)
        self._threads = [
            threading.Thread(target=self._accept, name="door-link-accept", daemon=True),
            threading.Thread(target=self._watch_state, name="door-link-state", daemon=True),
        ]
        for t in self._threads:
            t.start()
        log.info("door link listening on %s", self.path)

    def event(self, kind: str, name: str | None, score: float | None, reason: str, when: float) -> None:
        """Send one event to every connected bridge. Thread-safe; never blocks for long, never raises."""
        with self._lock:
            self._seq += 1
            message = {
                "type": "event",
                "seq": self._seq,
                "time": when,
                "kind": kind,
                "name": name,
                "score": score,
                "reason": reason,
            }
            self._broadcast(message)

    def close(self) -> None:
        """Stop listening, disconnect the bridges and remove the socket file. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            for client in self._clients:
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                client.close()
            self._clients.clear()
        for t in self._threads:
            t.join(1.0)
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()

    def __enter__(self) -> DoorLinkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- threads --------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return  # closed
            client.settimeout(SEND_TIMEOUT_S)
            with self._lock:
                self._clients.append(client)
                state = self._state if self._state is not None else self._read_state()
                self._send(client, {"type": "hello", "protocol": PROTOCOL, "pid": os.getpid()})
                self._send(client, _state_message(state))
            threading.Thread(target=self._read, args=(client,), name="door-link-read", daemon=True).start()
            log.info("a bridge connected to the door link")

    def _read(self, client: socket.socket) -> None:
        for message in _messages(client, self._stop):
            if message.get("type") != "command":
                continue
            command, origin = str(message.get("command", "")), str(message.get("origin", "unknown"))
            try:
                self._on_command(command, origin)
            except Exception:  # noqa: BLE001 - a bad command must not end the link (or the door)
                log.exception("door link: command %r from %s failed", command, origin)
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        client.close()

    def _watch_state(self) -> None:
        while not self._stop.wait(STATE_POLL_S):
            try:
                state = self._read_state()
            except Exception:  # noqa: BLE001 - the pins are being closed at shutdown
                continue
            with self._lock:
                if state != self._state:
                    self._state = state
                    self._broadcast(_state_message(state))

    # -- sending (with self._lock held) ------------------------------------------------------------

    def _broadcast(self, message: dict[str, Any]) -> None:
        for client in list(self._clients):
            if not self._send(client, message):
                self._clients.remove(client)
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                log.warning("door link: a bridge stopped reading and was disconnected")

    @staticmethod
    def _send(client: socket.socket, message: dict[str, Any]) -> bool:
        try:
            client.sendall(_line(message))
            return True
        except OSError:
            return False


def _state_message(state: tuple[bool, bool | None]) -> dict[str, Any]:
    return {"type": "state", "locked": state[0], "door_open": state[1]}


def _listen(path: Path) -> socket.socket:
    if not path.parent.is_dir():
        raise ApplianceError(
            f"door link {path}: folder {path.parent} does not exist (the service creates /run/facegate); "
            "create it or set [mqtt] socket"
        )
    try:
        info = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise ApplianceError(f"door link {path}: a file that is not a socket is there; remove it")
        path.unlink()  # left by a door that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Owner and group (the bridge runs as the same service user): nobody else may send commands.
        os.chmod(path, 0o660)
        sock.listen(4)
    except OSError as exc:
        sock.close()
        raise ApplianceError(f"door link {path}: cannot listen ({exc.strerror or exc})") from exc
    return sock


def _line(message: dict[str, Any]) -> bytes:
    """One message on the link: a JSON object and a newline."""
    return json.dumps(message).encode() + b"\n"


def _messages(sock: socket.socket, stop: threading.Event) -> Any:
    """The JSON objects arriving on `sock`, until it closes or `stop` is set."""
    buffer = b""
    # One timeout serves both ways on this socket: how often a read looks at `stop`, and how long a send
    # to a bridge that stopped reading may block (the door's side), so it is the send timeout.
    sock.settimeout(SEND_TIMEOUT_S)
    while not stop.is_set():
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("door link: ignored a message that is not JSON")
                continue
            if isinstance(message, dict):
                yield message
        if len(buffer) > MAX_LINE:
            log.warning("door link: message over %d bytes; closing the connection", MAX_LINE)
            return


class LinkedEvents:
    """The door's event log, also sent live to the bridge: `log_event` stores (queued) and relays.

    The relay is stamped with the wall clock when the event is logged, which is when the door decided.
    """

    def __init__(self, store: EventSink, link: DoorLinkServer, clock: Callable[[], float] = time.time):
        self.store, self.link, self._clock = store, link, clock

    def log_event(
        self, kind: str, *, name: str | None = None, score: float | None = None, reason: str = ""
    ) -> None:
        """Relay first (it is the latency Home Assistant sees), then queue for the gallery."""
        self.link.event(kind, name, score, reason, self._clock())
        self.store.log_event(kind, name=name, score=score, reason=reason)


class DoorLinkClient:
    """The bridge's end: connects to the door's socket, reconnects when the door restarts.

    Args:
        path: the door's socket.
        on_message: called with each message from the door (a dict), from the client's thread.
        on_link: called with True when connected, False when the connection is lost or cannot be made
            (once per change).
        retry_initial_s, retry_max_s: wait between connection attempts, doubled each time.
    """

    def __init__(
        self,
        path: str | Path,
        on_message: Callable[[dict[str, Any]], None],
        on_link: Callable[[bool], None],
        *,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._on_message, self._on_link = on_message, on_link
        self._retry = (retry_initial_s, retry_max_s)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._linked: bool | None = None
        self._thread = threading.Thread(target=self._run, name="door-link-client", daemon=True)

    def start(self) -> None:
        """Start connecting (in the background)."""
        self._thread.start()

    def command(self, command: str, origin: str) -> bool:
        """Send a lock command to the door; False when the door is not connected."""
        with self._send_lock:
            sock = self._sock
            if sock is None:
                return False
            try:
                sock.sendall(_line({"type": "command", "command": command, "origin": origin}))
                return True
            except OSError:
                return False

    def close(self) -> None:
        """Disconnect and stop. Idempotent."""
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _set_linked(self, linked: bool) -> None:
        if linked != self._linked:
            self._linked = linked
            self._on_link(linked)

    def _run(self) -> None:
        delay = self._retry[0]
        while not self._stop.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                sock.close()
                if self._linked is not False:
                    log.warning("door link %s: cannot connect (%s); retrying", self.path, exc.strerror or exc)
                self._set_linked(False)
                self._stop.wait(delay)
                delay = min(delay * 2, self._retry[1])
                continue
            delay = self._retry[0]
            self._sock = sock
            log.info("connected to the door at %s", self.path)
            first = True
            for message in _messages(sock, self._stop):
                if first:
                    first = False
                    if message.get("type") != "hello" or message.get("protocol") != PROTOCOL:
                        log.error("door link: the door speaks another protocol (%s); update both", message)
                        break
                    self._set_linked(True)
                    continue
                try:
                    self._on_message(message)
                except Exception:  # noqa: BLE001 - one bad message must not end the bridge
                    log.exception("door link: handling %s failed", message.get("type"))
            with self._send_lock:
                self._sock = None
            sock.close()
            if not self._stop.is_set():
                log.warning("door link: the door closed the connection; reconnecting")
                self._set_linked(False)
