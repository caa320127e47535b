"""The relay settings the door last ran with, kept for `facegate lock` when the config cannot say.

After a crash, systemd's ExecStopPost runs `facegate lock`. If the config is damaged so badly that the
relay's pin or polarity cannot be read from it, the built-in defaults (GPIO 17, active-high) are a
guess, and on an active-low relay a wrong guess *energises* the strike: it unlocks the door. So
`facegate run` records the settings it drives in the service's state directory ($STATE_DIRECTORY,
which systemd sets for both ExecStart and ExecStopPost), and `facegate lock` prefers them to a guess.
Outside systemd (no $STATE_DIRECTORY) nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from appliance.config import GpioSettings

log = logging.getLogger(__name__)

STATE_ENV = "STATE_DIRECTORY"
"""Set by systemd (StateDirectory=facegate) to /var/lib/facegate for every command of the unit."""
FILE_NAME = "last-relay.json"


def memory_path() -> Path | None:
    """Where the settings are kept, or None outside a systemd unit with a state directory."""
    state = os.environ.get(STATE_ENV, "").split(":")[0]
    return Path(state) / FILE_NAME if state else None


def remember_relay(gpio: GpioSettings) -> None:
    """Record the relay settings in use (atomically); a failure is a warning, never a stop."""
    path = memory_path()
    if path is None:
        return
    data = {
        "pin_factory": gpio.pin_factory,
        "relay_pin": gpio.relay_pin,
        "relay_active_high": gpio.relay_active_high,
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data) + "\n")
        os.replace(tmp, path)  # a reader never sees half a file
    except OSError as exc:
        log.warning(
            "cannot record the relay settings in %s (%s); `facegate lock` falls back to defaults", path, exc
        )


def recall_relay() -> tuple[GpioSettings, Path] | None:
    """The recorded relay settings and their file, or None when there are none (or they are unreadable)."""
    path = memory_path()
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        pin, high, factory = data["relay_pin"], data["relay_active_high"], data["pin_factory"]
        if not (isinstance(pin, int) and isinstance(high, bool) and isinstance(factory, str)):
            raise ValueError("wrong types")
        return GpioSettings(pin_factory=factory, relay_pin=pin, relay_active_high=high), path
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignored %s: not the relay settings FaceGate writes (%s)", path, exc)
        return None
