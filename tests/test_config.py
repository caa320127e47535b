"""config.toml loading: the shipped file, defaults, paths, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path

import pytest

from appliance.config import SECTIONS, Config, config_warnings, load_config, schema_keys
from appliance.errors import ConfigError
from appliance.vision.model_files import MODELS_DIR

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_config_lists_exactly_the_schema_keys() -> None:
    raw = tomllib.loads(SHIPPED.read_text())
    assert raw.pop("schema_version") == 1
    assert {name: list(body) for name, body in raw.items()} == schema_keys()


def test_shipped_config_loads_to_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # Defaults resolve relative paths against the current folder, the file against its own folder.
    monkeypatch.chdir(SHIPPED.parent)
    assert load_config(SHIPPED) == load_config(None)


def test_every_shipped_key_has_a_comment_above_it() -> None:
    lines = SHIPPED.read_text().splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        if re.match(r"^\w+ = ", line):
            # A key is explained by the comment block right above it (keys grouped under one
            # comment, like min/max_brightness, share it).
            j = i - 1
            while j >= 0 and re.match(r"^\w+ = ", lines[j]):
                j -= 1
            if j < 0 or not lines[j].startswith("#"):
                uncommented.append(line)
    assert uncommented == []


def test_missing_keys_take_defaults_and_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[policy]\nframes_needed = 2\n[camera]\nsource = 'clips/walk'\n"))
    assert cfg.policy.frames_needed == 2
    assert cfg.policy.window_frames == 5
    assert cfg.gallery.path == tmp_path / "facegate.db"
    assert cfg.camera.kind == "path"
    assert cfg.camera.source == str(tmp_path / "clips/walk")
    assert cfg.path == tmp_path / "config.toml"


def test_models_are_the_installed_ones_unless_the_config_names_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user who runs `facegate` from another folder, with no config file or one without models_dir,
    # still gets the models FaceGate was installed with; a folder named in a file is relative to it.
    monkeypatch.chdir(tmp_path)
    assert load_config(None).detector.models_dir == MODELS_DIR
    assert load_config(write(tmp_path, "[policy]\nframes_needed = 2\n")).detector.models_dir == MODELS_DIR
    named = load_config(write(tmp_path, "[detector]\nmodels_dir = 'my-models'\n"))
    assert named.detector.models_dir == tmp_path / "my-models"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[gallery]\npath = '/var/lib/facegate/g.db'\n"))
    assert cfg.gallery.path == Path("/var/lib/facegate/g.db")


def test_config_is_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.policy.match_threshold = 0.1  # type: ignore[misc]


def test_int_is_accepted_for_a_float_key(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[policy]\nunlock_s = 8\n"))
    assert cfg.policy.unlock_s == 8.0
    assert isinstance(cfg.policy.unlock_s, float)


def test_out_of_range_names_file_key_value_and_reason(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[policy]\nmatch_threshold = 1.4\n")
    assert message.startswith(str(tmp_path / "config.toml"))
    assert message.endswith("config.toml: policy.match_threshold = 1.4: must be between 0 and 1.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[camera]\nwidth = '640'\n", 'camera.width = "640": must be a whole number'),
        ("[camera]\nwidth = 640.0\n", "camera.width = 640.0: must be a whole number"),
        ("[policy]\nframes_needed = true\n", "policy.frames_needed = true: must be a whole number"),
        ("[service]\nwatchdog = 1\n", "service.watchdog = 1: must be true or false"),
        ("[detector]\nvariant = 'fp32'\n", "detector.variant = \"fp32\": must be one of 'f32', 'int8'"),
        ("[camera]\nfps = 0\n", "camera.fps = 0: must be more than 0 and at most 120"),
        ("[camera]\nfps = nan\n", "camera.fps = nan: must be a number"),
        ("[detector]\nthresholds = [0.6, 0.7]\n", "detector.thresholds = [0.6, 0.7]: must be a list of 3"),
        ("[detector]\nthresholds = [0.6, 0.7, 1.5]\n", "each between 0 and 1"),
        ("[gpio]\nrelay_pin = -1\n", "gpio.relay_pin = -1: must be a BCM GPIO number between 2 and 27."),
        (
            "[gpio]\nbuzzer_pin = 0\n",
            "gpio.buzzer_pin = 0: must be a BCM GPIO number between 2 and 27; use -1",
        ),
        ("[gpio]\nbuzzer_pin = 17\n", "gpio.buzzer_pin = 17: pin already used by gpio.relay_pin"),
        ("[camera]\nsource = 'usb:cam'\n", 'camera.source = "usb:cam": a USB camera is "usb:N"'),
        ("[camera]\nsource = 'ftp://x/y'\n", "only rtsp://, http:// and https:// URLs"),
        (
            "[policy]\nframes_needed = 6\n",
            "policy.frames_needed = 6: must not exceed policy.window_frames (5)",
        ),
        ("[quality]\nmin_brightness = 230.0\n", "quality.min_brightness = 230: must be below"),
        ("[camera]\nreconnect_initial_s = 60.0\n", "camera.reconnect_initial_s = 60: must not exceed"),
        ("[service]\nlog_level = 'info'\n", "service.log_level = \"info\": must be one of 'DEBUG'"),
    ],
)
def test_bad_values_are_refused_with_the_reason(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[camera]\nwidht = 640\n")
    assert "camera.widht: unknown key (did you mean 'width'?)" in message


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[cameras]\nwidth = 640\n")
    assert "[cameras]: unknown section (did you mean 'camera'?)" in message


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    assert "[threshold]: unknown section" in error_of(tmp_path, "threshold = 0.5\n")


def test_section_given_as_a_value_is_refused(tmp_path: Path) -> None:
    assert "policy = 3: must be a [policy] table" in error_of(tmp_path, "policy = 3\n")


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    assert "schema_version = 2: this FaceGate reads schema_version 1" in error_of(
        tmp_path, "schema_version = 2\n"
    )


def test_syntax_error_gives_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[camera]\nwidth = 640\nheight 480\n")
    assert "not valid TOML" in message
    assert "line 3" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_optional_pin_minus_one_means_not_fitted(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[gpio]\ngreen_led_pin = -1\nbuzzer_pin = 5\n"))
    assert cfg.gpio.green_led_pin is None
    assert cfg.gpio.buzzer_pin == 5
    assert "green_led_pin" not in cfg.gpio.pins()


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("picamera", "picamera"),
        ("picamera:1", "picamera"),
        ("PiCamera", "picamera"),
        ("usb:2", "usb"),
        ("USB:2", "usb"),
        ("rtsp://cam.local/stream", "url"),
        ("RTSP://cam.local/stream", "url"),
        ("clip.mp4", "path"),
    ],
)
def test_camera_source_kinds(tmp_path: Path, source: str, kind: str) -> None:
    cfg = load_config(write(tmp_path, f"[camera]\nsource = '{source}'\n"))
    assert cfg.camera.kind == kind
    if kind != "path":  # a camera name is never taken for a file next to the config
        assert cfg.camera.source == source
    if kind == "usb":
        assert cfg.camera.usb_index == 2


def test_a_bad_pi_camera_number_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='"picamera:N" with N a number'):
        load_config(write(tmp_path, "[camera]\nsource = 'picamera:front'\n"))


def test_schema_sections_match_config_fields() -> None:
    fields = {f.name for f in dataclasses.fields(Config)} - {"schema_version", "path"}
    assert fields == set(SECTIONS)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_config_that_is_no_regular_file_is_refused_instead_of_hanging(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "config.toml"
        os.mkfifo(path)  # reading a FIFO with no writer would block for ever
    else:
        path = Path("/dev/zero") if kind == "device" else tmp_path
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(path)


def test_an_oversized_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="far too large for a config file"):
        load_config(path)


def test_a_threshold_that_lets_strangers_in_is_warned_about(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[policy]\nmatch_threshold = 0\n"))
    (warning,) = config_warnings(cfg)
    assert warning.startswith("policy.match_threshold = 0.0 is below 0.9: ")
    assert "strangers will match" in warning


def test_the_shipped_config_gives_no_warnings() -> None:
    assert config_warnings(load_config(SHIPPED)) == []
