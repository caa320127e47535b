"""GPIO parts of the door: the relay that drives the strike, indicator LEDs and buzzer, and buttons.

The only module that imports gpiozero. Every part takes an explicit ``pin_factory`` made by
:func:`make_pin_factory`, so the choice between real GPIO and gpiozero's ``MockFactory`` is made once,
at the edge, and a failure to load real GPIO is an error, never a silent switch to the mock.

Wiring assumed (see README): the relay energises to *unlock* a fail-secure strike, so a Pi that is
off, rebooting or crashed leaves the door locked. For a fail-safe magnetic lock, wire the maglock
through the relay's normally-closed contact so that "relay on" still means "unlocked".
"""

from __future__ import annotations

import atexit
import logging
import math
from collections.abc import Callable
from types import TracebackType

from gpiozero import LED, Button, Buzzer, OutputDevice
from gpiozero.pins import Factory

from appliance.errors import HardwareError

logger = logging.getLogger(__name__)

PROMPT_LEFT = "turn left"
"""The text of the liveness challenge's left prompt (appliance.liveness.decision.Prompt.LEFT; the
hardware folder does not import liveness); any other prompt is shown as "turn right"."""

# Factory names gpiozero registers as entry points, with the fix for each when it cannot load.
_FACTORY_HINTS = {
    "lgpio": "install it with `sudo apt install python3-lgpio` (Pi OS Bookworm has it) and create the "
    "venv with --system-site-packages, or `pip install lgpio`",
    "rpigpio": "install it with `sudo apt install python3-rpi.gpio` or `pip install RPi.GPIO` "
    "(it does not work on a Pi 5: use lgpio there)",
    "pigpio": "install pigpio and start the daemon: `sudo apt install pigpio python3-pigpio && "
    "sudo systemctl enable --now pigpiod`",
    "native": "it needs /dev/gpiomem (a Pi 4 or older, not a Pi 5)",
}


def make_pin_factory(name: str) -> Factory:
    """Build the gpiozero pin factory called ``name``.

    Args:
        name: "lgpio" (the default on Pi OS Bookworm and the only one for a Pi 5), "rpigpio",
            "pigpio", "native", or "mock" (gpiozero's ``MockFactory``, for tests and development
            only: it switches nothing).

    Raises:
        HardwareError: the name is unknown, or that factory cannot load here (library missing, no
            GPIO chip, no permission). Never falls back to another factory.
    """
    key = name.strip().lower()
    if key == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if key not in _FACTORY_HINTS:
        known = ", ".join([*_FACTORY_HINTS, "mock"])
        raise HardwareError(f"unknown GPIO pin factory {name!r}: use one of {known}")
    try:
        if key == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory as cls
        elif key == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory as cls
        elif key == "pigpio":
            from gpiozero.pins.pigpio import PiGPIOFactory as cls
        else:
            from gpiozero.pins.native import NativeFactory as cls
        return cls()
    except Exception as exc:  # ImportError, OSError, lgpio.error, PinFactoryFallback, ...
        raise HardwareError(
            f"cannot open GPIO with the {key!r} pin factory ({type(exc).__name__}: {exc}): "
            f"{_FACTORY_HINTS[key]}; check that this user is in the 'gpio' group"
        ) from exc


class RelayDoorLock:
    """The door strike on a relay; implements ``ports.DoorLock``. Locked is the safe state.

    The pin is driven to "locked" inside the constructor (gpiozero ``initial_value=False``), so the
    door is never unlocked by starting the program. ``close()`` locks before it releases the pin,
    and is idempotent; use the lock as a context manager so every exit path relocks, and an atexit
    hook relocks on a normal interpreter exit. A SIGTERM only runs these if the program turns it
    into an exception (the service must install a handler); a hard crash runs none of them, which
    is what the unit's ExecStopPost=facegate lock is for.

    Args:
        pin: GPIO pin in gpiozero notation (BCM number like 17, or "GPIO17", "BOARD11").
        active_high: True if the relay board switches on when the pin is high; False for the
            common opto-isolated boards that switch on when the pin is low (the pin then sits high
            while locked).
        pin_factory: from :func:`make_pin_factory`.
    """

    def __init__(self, pin: int | str, *, active_high: bool, pin_factory: Factory) -> None:
        try:
            self._device = OutputDevice(
                pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
            )
        except Exception as exc:
            raise HardwareError(
                f"cannot drive the door relay on GPIO {pin} ({type(exc).__name__}: {exc}): "
                "check [gpio] relay_pin and that no other program holds the pin"
            ) from exc
        self._pin = pin
        self._closed = False
        # The journal is how an owner confirms after the fact that the door was relocked: every
        # change of the relay is logged (not every idempotent lock() of the relock ticker).
        logger.info("relay on GPIO %s: locked", pin)
        # Relock at interpreter exit even if the caller forgot close(). atexit runs last-in
        # first-out, so this runs before gpiozero's own exit hook releases the pin unlocked-as-is.
        atexit.register(self.close)

    @property
    def is_locked(self) -> bool:
        """True while the relay is off (door locked), and always after ``close()``."""
        return self._closed or not self._device.value

    def lock(self) -> None:
        """Switch the relay off. Idempotent; does nothing once closed (the door is already locked)."""
        if not self._closed and self._device.value:
            self._device.off()
            logger.info("relay on GPIO %s: locked", self._pin)

    def unlock(self) -> None:
        """Switch the relay on until ``lock()``; the caller times how long the door stays open.

        Raises:
            HardwareError: the lock was closed (a closed lock must never unlock).
        """
        if self._closed:
            raise HardwareError("the door lock is closed and cannot unlock: restart the service")
        if not self._device.value:
            self._device.on()
            logger.info("relay on GPIO %s: unlocked", self._pin)

    def close(self) -> None:
        """Lock, then release the pin. Idempotent."""
        if self._closed:
            return
        try:
            self._device.off()
            logger.info("relay on GPIO %s: locked and released", self._pin)
        finally:
            self._closed = True
            atexit.unregister(self.close)
            self._device.close()

    def __enter__(self) -> RelayDoorLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Indicators:
    """Green and red LEDs and an optional buzzer that tell the person at the door what happened.

    Every method returns at once: steady states are set directly, and blinking or beeping runs in
    gpiozero's background threads. A new call replaces whatever was showing.

    Args:
        green_pin: the "granted" LED, or None for none.
        red_pin: the "denied" LED, or None for none (a door with one LED still shows grants).
        buzzer_pin: an active buzzer, or None for none.
        pin_factory: from :func:`make_pin_factory`.
    """

    def __init__(
        self,
        green_pin: int | str | None,
        red_pin: int | str | None,
        buzzer_pin: int | str | None,
        *,
        pin_factory: Factory,
    ) -> None:
        try:
            self._green = None if green_pin is None else LED(green_pin, pin_factory=pin_factory)
            self._red = None if red_pin is None else LED(red_pin, pin_factory=pin_factory)
            self._buzzer = None if buzzer_pin is None else Buzzer(buzzer_pin, pin_factory=pin_factory)
        except Exception as exc:
            self.close()
            raise HardwareError(
                f"cannot open the indicator pins ({type(exc).__name__}: {exc}): check the LED and "
                "buzzer pins in [gpio]; each pin may be used once"
            ) from exc

    def granted(self) -> None:
        """Green on (steady, until ``idle()``), red off, one short beep (0.15 s)."""
        if self._red is not None:
            self._red.off()
        if self._green is not None:
            self._green.on()
        if self._buzzer is not None:
            self._buzzer.beep(on_time=0.15, off_time=0.0, n=1, background=True)

    def denied(self) -> None:
        """Green off, red blinks three times (0.2 s on / 0.2 s off), two short beeps."""
        if self._green is not None:
            self._green.off()
        if self._red is not None:
            self._red.blink(on_time=0.2, off_time=0.2, n=3, background=True)
        if self._buzzer is not None:
            self._buzzer.beep(on_time=0.1, off_time=0.1, n=2, background=True)

    def capturing(self, on: bool) -> None:
        """While enrolling: green blinks slowly (0.5 s / 0.5 s) when ``on``; all off when not."""
        if on:
            if self._red is not None:
                self._red.off()
            if self._green is not None:
                self._green.blink(on_time=0.5, off_time=0.5, n=None, background=True)
        else:
            self.idle()

    def prompt(self, prompt: str, seconds: float) -> None:
        """A liveness challenge ("turn left" or "turn right", decision.Prompt) to be answered within
        `seconds`: red off, and green blinks in a pattern of its own per direction for about that long
        (or until the next call, a grant, a deny or idle, replaces it; a face that walks away leaves
        no light on), with one buzzer chirp for left and two for right where a buzzer is fitted.

        "turn left": short flashes (0.1 s on / 0.4 s off); "turn right": long flashes (0.4 s on /
        0.1 s off). Neither is the grant (green steady) or the deny (red blinking).
        """
        left = prompt == PROMPT_LEFT
        if self._red is not None:
            self._red.off()
        if self._green is not None:
            on, off = (0.1, 0.4) if left else (0.4, 0.1)
            flashes = max(1, math.ceil(seconds / (on + off)))
            self._green.blink(on_time=on, off_time=off, n=flashes, background=True)
        if self._buzzer is not None:
            self._buzzer.beep(on_time=0.05, off_time=0.1, n=1 if left else 2, background=True)

    def idle(self) -> None:
        """Everything off (also stops any blinking or beeping)."""
        for device in self._devices():
            device.off()

    def close(self) -> None:
        """Turn everything off and release the pins. Idempotent."""
        for device in self._devices():
            device.close()

    def _devices(self) -> list[OutputDevice]:
        names = ("_green", "_red", "_buzzer")
        return [d for d in (getattr(self, n, None) for n in names) if d is not None]

    def __enter__(self) -> Indicators:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Buttons:
    """The enrol button, the exit (request-to-exit) button and an optional door contact.

    Buttons connect the pin to GND when pressed (the Pi's internal pull-up is used). Callbacks run
    in gpiozero's threads: keep them short (set a flag or put an event on a queue).

    Args:
        enrol_pin: held for ``enrol_hold_s`` seconds -> ``on_enrol()``; None for no button.
        exit_pin: pressed -> ``on_exit()`` (the loop then unlocks the door); None for no button.
        door_sensor_pin: a normally-open reed switch that closes (pin to GND) while the door is
            shut; None for no sensor.
        enrol_hold_s: how long the enrol button must be held, seconds. Longer avoids accidental
            enrolment.
        on_enrol, on_exit: the callbacks.
        bounce_s: debounce time for the buttons, seconds (None: no software debounce).
        pin_factory: from :func:`make_pin_factory`.
    """

    def __init__(
        self,
        *,
        enrol_pin: int | str | None,
        exit_pin: int | str | None,
        door_sensor_pin: int | str | None = None,
        enrol_hold_s: float = 3.0,
        on_enrol: Callable[[], None] | None = None,
        on_exit: Callable[[], None] | None = None,
        bounce_s: float | None = 0.05,
        pin_factory: Factory,
    ) -> None:
        self._enrol: Button | None = None
        self._exit: Button | None = None
        self._sensor: Button | None = None
        try:
            if enrol_pin is not None:
                self._enrol = Button(
                    enrol_pin, hold_time=enrol_hold_s, bounce_time=bounce_s, pin_factory=pin_factory
                )
                if on_enrol is not None:
                    self._enrol.when_held = _no_args(on_enrol)
            if exit_pin is not None:
                self._exit = Button(exit_pin, bounce_time=bounce_s, pin_factory=pin_factory)
                if on_exit is not None:
                    self._exit.when_pressed = _no_args(on_exit)
            if door_sensor_pin is not None:
                self._sensor = Button(door_sensor_pin, bounce_time=bounce_s, pin_factory=pin_factory)
        except Exception as exc:
            self.close()
            raise HardwareError(
                f"cannot open the button or door sensor pins ({type(exc).__name__}: {exc}): check "
                "the pins in [gpio]; each pin may be used once"
            ) from exc

    @property
    def has_door_sensor(self) -> bool:
        """True if a door contact is wired."""
        return self._sensor is not None

    @property
    def is_door_open(self) -> bool | None:
        """True while the door stands open, False while shut, None without a sensor."""
        if self._sensor is None:
            return None
        return not self._sensor.is_pressed

    def close(self) -> None:
        """Release the pins. Idempotent."""
        for button in (self._enrol, self._exit, self._sensor):
            if button is not None:
                button.close()


def _no_args(callback: Callable[[], None]) -> Callable[[], None]:
    """Wrap a callback so gpiozero calls it without the device argument, and log its errors.

    gpiozero passes the device to a one-argument callable; an exception in a gpiozero thread would
    otherwise vanish with only a stderr trace, so it is logged here.
    """

    def call() -> None:
        try:
            callback()
        except Exception:
            logger.exception("button callback %r failed", callback)

    return call
