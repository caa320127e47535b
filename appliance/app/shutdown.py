"""Stop and reload signals for `facegate run`, handled on a thread of their own from the first instant.

Python runs signal handlers on the main thread, between bytecodes: while the main thread waits in a
camera driver (an RTSP stream that stalls blocks OpenCV for 30 s) or loads models at start-up, a
handler would not run and SIGTERM would have to wait for it. So the signals are blocked in every
thread and one thread takes them with ``sigwait``: on SIGTERM or SIGINT it relocks the door at once,
asks the loop to stop, and if the main thread has not finished within ``STOP_GRACE_S`` (a camera
stuck in a read), it exits the process itself, with status 0, after a short flush of the events.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.0
"""How long the main thread gets to wind down after SIGTERM before the process exits anyway, seconds.

systemd waits TimeoutStopSec; FaceGate promises a relocked door and exit 0 within 2 s of the signal."""

_HANDLED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


class SignalThread:
    """Takes SIGTERM, SIGINT and SIGHUP for the whole process; see the module docstring.

    Call ``start()`` on the main thread before any other thread exists (threads inherit the blocked
    mask), register what stopping must do with ``on_stop`` and ``on_force_exit`` as the parts come up,
    set ``on_reload`` once there is a gallery to reload, and call ``finish()`` when the main thread is
    done (from then on a signal does nothing more: the process is already on its way out).
    """

    def __init__(self, grace_s: float = STOP_GRACE_S, exit: Callable[[int], None] = os._exit):
        self.grace_s = grace_s
        self.stop_requested = threading.Event()
        self.on_reload: Callable[[], None] | None = None
        self._on_stop: list[Callable[[], None]] = []
        self._on_force_exit: list[Callable[[], None]] = []
        self._done = threading.Event()
        self._exit = exit
        self._old_mask: set[signal.Signals] | None = None
        self._thread: threading.Thread | None = None

    def on_stop(self, action: Callable[[], None]) -> None:
        """Run `action` on the signal thread when a stop signal arrives (relock, wake the loop)."""
        self._on_stop.append(action)

    def on_force_exit(self, action: Callable[[], None]) -> None:
        """Run `action` just before exiting because the main thread did not finish in time."""
        self._on_force_exit.append(action)

    def start(self) -> None:
        """Block the signals here and in every thread started later, and start taking them."""
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        self._thread = threading.Thread(target=self._run, name="signals", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """The main thread is done: restore its signal mask and end the signal thread. Idempotent."""
        if self._done.is_set():
            return
        self._done.set()
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            # Wake its sigwait with a signal meant for that thread alone; it sees _done and returns.
            # Left waiting, it would take a later Ctrl-C meant for whoever called `run` in-process.
            signal.pthread_kill(thread.ident, signal.SIGHUP)  # type: ignore[arg-type]
            thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            signum = signal.sigwait(_HANDLED)
            if self._done.is_set():
                return
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if self.on_reload is None:
                    log.info("%s during start-up: nothing to reload yet; the gallery is read on start", name)
                else:
                    self.on_reload()
                continue
            log.info("signal %s: stopping", name)
            self.stop_requested.set()
            for action in self._on_stop:
                _run_guarded(action)
            if self._done.wait(self.grace_s):
                return
            log.warning(
                "still busy %.1f s after %s (a camera stuck in a read, or start-up); "
                "the door is locked, exiting now",
                self.grace_s,
                name,
            )
            for action in self._on_force_exit:
                _run_guarded(action)
            self._exit(0)
            return


def _run_guarded(action: Callable[[], None]) -> None:
    """Run one shutdown step; a failing step is logged and must not keep the next from running."""
    try:
        action()
    except Exception:
        log.exception("shutdown step %s failed", getattr(action, "__qualname__", action))
