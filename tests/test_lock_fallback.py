"""`facegate lock` (the service's ExecStopPost relock) locks even from a damaged config file.

It reads only [gpio] pin_factory, relay_pin and relay_active_high; whatever else is wrong is a warning
on stderr and the exit status is still 0. The command runs in-process against one MockFactory, so the
relay pin's level can be asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import appliance.hardware.actuators as actuators
from appliance.cli import main
from appliance.config import GpioSettings, load_relay_settings

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"


@pytest.fixture
def factory(monkeypatch):
    """The MockFactory `facegate lock --headless` gets (it must ask for "mock")."""
    made = actuators.make_pin_factory("mock")
    asked: list[str] = []

    def make(name):
        asked.append(name)
        return made

    monkeypatch.setattr(actuators, "make_pin_factory", make)
    yield made
    assert asked == ["mock"]
    made.reset()


def levels(factory, pin: int) -> list[bool]:
    return [state.state for state in factory.pin(pin).states]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


GPIO_ACTIVE_LOW_18 = '[gpio]\npin_factory = "lgpio"\nrelay_pin = 18\nrelay_active_high = false\n'


def lock(path: Path, capsys) -> tuple[int, str, str]:
    status = main(["lock", "--config", str(path), "--headless"])
    out, err = capsys.readouterr()
    return status, out, err


def test_valid_config_locks_without_warnings(tmp_path, factory, capsys):
    status, out, err = lock(write(tmp_path, GPIO_ACTIVE_LOW_18), capsys)
    assert status == 0
    assert "relay on GPIO18 driven to locked" in out
    assert "warning" not in err
    assert levels(factory, 18)[-1] is True  # active-low: locked is high


def test_shipped_config_locks_without_warnings(factory, capsys):
    status, out, err = lock(SHIPPED, capsys)
    assert status == 0 and "warning" not in err
    assert levels(factory, 17) == [False]


def test_unknown_key_is_ignored_with_a_warning(tmp_path, factory, capsys):
    path = write(tmp_path, "[policy]\nmatch_treshold = 0.95\n\n" + GPIO_ACTIVE_LOW_18)
    status, out, err = lock(path, capsys)
    assert status == 0
    assert "relay on GPIO18 driven to locked" in out
    assert levels(factory, 18)[-1] is True
    assert "facegate: warning: ignored:" in err
    assert "policy.match_treshold: unknown key" in err
    assert "error" not in err


def test_syntax_error_outside_gpio_still_reads_the_relay_settings(tmp_path, factory, capsys):
    path = write(tmp_path, "[policy]\nmatch_threshold = = 0.95\n\n" + GPIO_ACTIVE_LOW_18 + "[service]\n")
    status, out, err = lock(path, capsys)
    assert status == 0
    assert levels(factory, 18)[-1] is True
    assert "not valid TOML" in err and "line 2" in err
    assert "read [gpio] on its own" in err


def test_unparseable_relay_settings_fall_back_to_the_code_defaults(tmp_path, factory, capsys):
    path = write(tmp_path, '[gpio]\nrelay_pin = 18\nrelay_active_high = fals\npin_factory = "lgpio"\n')
    status, out, err = lock(path, capsys)
    assert status == 0
    default = GpioSettings()
    assert f"relay on GPIO{default.relay_pin} driven to locked" in out
    assert levels(factory, default.relay_pin)[-1] is (not default.relay_active_high)
    assert "using the built-in relay settings" in err
    assert f"gpio.relay_pin = {default.relay_pin}" in err


def test_a_bad_relay_value_takes_its_default_and_says_so(tmp_path, factory, capsys):
    path = write(tmp_path, "[gpio]\nrelay_pin = 40\nrelay_active_high = false\n")
    status, out, err = lock(path, capsys)
    assert status == 0
    assert "relay on GPIO17 driven to locked" in out
    assert levels(factory, 17)[-1] is True  # the file's relay_active_high = false still applies
    assert "gpio.relay_pin = 40" in err and "Using the default, 17." in err


def test_missing_config_file_locks_with_the_defaults(tmp_path, factory, capsys):
    status, out, err = lock(tmp_path / "nope.toml", capsys)
    assert status == 0
    assert levels(factory, 17) == [False]
    assert "config file not found" in err and "using the built-in relay settings" in err


def test_every_warning_is_one_line(tmp_path):
    path = write(
        tmp_path, "schema_version = 9\n[camera]\nfps = 0\n[gpio]\nrelay_pin = true\nbuzzer_pin = 17\n"
    )
    gpio, warnings = load_relay_settings(path)
    assert gpio == GpioSettings()
    assert len(warnings) == 2  # the whole-file error, and relay_pin replaced by its default
    assert all("\n" not in w for w in warnings)


def test_no_config_file_is_the_defaults_without_warnings():
    assert load_relay_settings(None) == (GpioSettings(), [])


def test_a_folder_given_as_config(tmp_path, factory, capsys):
    status, out, err = lock(tmp_path, capsys)
    assert status == 0
    assert levels(factory, 17) == [False]
    assert "not a regular file" in err


def test_the_relay_settings_the_door_last_ran_with_beat_a_guess(tmp_path, factory, capsys, monkeypatch):
    """An active-low relay on GPIO 18, a config later damaged past reading: the built-in defaults (GPIO 17,
    active-high) would drive the wrong pin, and on this board the right pin to the unlocking level."""
    from appliance.app.relay_memory import remember_relay

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))  # as systemd sets it for ExecStart and ExecStopPost
    config = write(tmp_path, GPIO_ACTIVE_LOW_18)
    from appliance.config import load_config

    remember_relay(load_config(config).gpio)  # what `facegate run` does once its relay is locked
    config.write_text("[gpio\nrelay_pin = 18\x00\n")  # damaged: not even [gpio] parses
    status, out, err = lock(config, capsys)
    assert status == 0
    assert "relay on GPIO18 driven to locked" in out
    assert levels(factory, 18)[-1] is True  # active-low: locked is the pin high
    assert "the value the door last ran with" in err and "last-relay.json" in err
    assert not factory.pin(17).states[1:]  # GPIO 17 was never driven


def test_a_bad_relay_value_takes_the_value_the_door_last_ran_with(tmp_path, factory, capsys, monkeypatch):
    from appliance.app.relay_memory import remember_relay

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    remember_relay(GpioSettings(relay_pin=18, relay_active_high=False))
    status, out, err = lock(write(tmp_path, '[gpio]\nrelay_pin = 18\nrelay_active_high = "no"\n'), capsys)
    assert status == 0
    assert levels(factory, 18)[-1] is True
    assert "Using the value the door last ran with" in err


def test_run_records_its_relay_settings_in_the_state_directory(tmp_path, monkeypatch, enrolment_clip):
    from appliance.app.relay_memory import recall_relay

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    config = write(tmp_path, GPIO_ACTIVE_LOW_18)
    assert main(["run", "--headless", "--source", str(enrolment_clip), "--db", str(tmp_path / "g.db"),
                 "--config", str(config)]) == 0  # fmt: skip
    recalled = recall_relay()
    assert recalled is not None
    settings, path = recalled
    assert (settings.relay_pin, settings.relay_active_high, settings.pin_factory) == (18, False, "lgpio")
    assert path == tmp_path / "last-relay.json"
