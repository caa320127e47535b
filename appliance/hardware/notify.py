"""systemd notifications (sd_notify) over the standard library: READY, WATCHDOG, STOPPING, STATUS.

Everything is a no-op when NOTIFY_SOCKET is unset (run by hand, or under a unit without
Type=notify), so the service loop calls these unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to the socket systemd names in NOTIFY_SOCKET.

    Args:
        socket_path: overrides NOTIFY_SOCKET (tests). A leading "@" means Linux's abstract
            namespace, as systemd writes it.
        env: the environment to read (defaults to os.environ).
    """

    def __init__(self, socket_path: str | None = None, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        path = socket_path if socket_path is not None else environ.get("NOTIFY_SOCKET", "")
        self._address = ("\0" + path[1:]) if path.startswith("@") else path
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return bool(self._address)

    def ready(self, status: str | None = None) -> None:
        """Tell systemd start-up is done (models, camera and gallery are up)."""
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        """Keep-alive from the frame loop; call at least every ``watchdog_interval_s()`` seconds."""
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """Tell systemd a clean shutdown has begun."""
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        """A one-line status shown by ``systemctl status`` (newlines become spaces)."""
        self.send("STATUS=" + " ".join(text.splitlines()))

    def send(self, message: str) -> bool:
        """Send one datagram; returns False (and logs once) if it could not be delivered.

        A lost notification must not stop the door loop, so errors are logged, not raised.
        """
        if not self._address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._warned:
                logger.warning("sd_notify to %r failed: %s", self._address.replace("\0", "@"), exc)
                self._warned = True
            return False
        return True

    def close(self) -> None:
        """Close the socket. Idempotent."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of systemd's WatchdogSec, or None without a watchdog.

    Reads WATCHDOG_USEC (microseconds) and, like sd_watchdog_enabled(), ignores it when
    WATCHDOG_PID names another process.
    """
    environ = os.environ if env is None else env
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    try:
        value = int(usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        logger.warning("ignoring bad WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, pid)
        return None
    return value / 2 / 1_000_000 if value > 0 else None
