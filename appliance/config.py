"""config.toml -> frozen dataclasses, one per section; unknown keys and bad values raise ConfigError.

Every error names the file, the key, the value and the reason, on one line, e.g.
``config.toml: policy.match_threshold = 1.4: must be between 0 and 1``.

The defaults below are the single source of truth; the shipped ``config.toml`` repeats them with
comments (a test checks that the two agree key for key and value for value). A key missing from a
file takes its default. Relative paths are resolved against the folder of the config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from appliance.errors import ConfigError
from appliance.vision.model_files import MODELS_DIR

SCHEMA_VERSION = 1
"""The only `schema_version` this FaceGate reads."""

NO_PIN = -1
"""How an optional GPIO pin that is not fitted is spelled in config.toml; it loads as None."""

# BCM numbers of the 40-pin header. GPIO 0 and 1 are the HAT ID EEPROM bus, never free.
_FIRST_PIN, _LAST_PIN = 2, 27


def _key(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A schema field: its default and its allowed range (`lo`..`hi` inclusive) or `choices`."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CameraSettings:
    """[camera]: where frames come from and how often."""

    source: str = "picamera"
    """"picamera", "usb:N" (V4L2 index N), an rtsp://, http:// or https:// URL, or a file/folder path
    (resolved against the config folder when relative)."""
    width: int = _key(640, lo=64, hi=4096)
    """Frame width in pixels."""
    height: int = _key(480, lo=64, hi=4096)
    """Frame height in pixels."""
    fps: float = _key(15.0, lo=0, hi=120, lo_open=True)
    """Frames per second requested from the camera."""
    reconnect_initial_s: float = _key(1.0, lo=0, hi=600, lo_open=True)
    """First wait in seconds before reopening a lost camera; doubles on each failure."""
    reconnect_max_s: float = _key(30.0, lo=0, hi=3600, lo_open=True)
    """Longest wait in seconds between reconnection attempts."""

    @property
    def kind(self) -> str:
        """ "picamera", "usb", "url" or "path": which adapter reads `source`."""
        return _source_kind(self.source)

    @property
    def usb_index(self) -> int:
        """The N of "usb:N"; only meaningful when `kind` is "usb"."""
        return int(self.source.strip().split(":", 1)[1])


@dataclass(frozen=True)
class DetectorSettings:
    """[detector]: the MTCNN face detector."""

    models_dir: Path = MODELS_DIR
    """Folder holding the .tflite files and SHA256SUMS. Default: the models installed with FaceGate,
    wherever the command runs from; a relative path in a config file is relative to its folder."""
    variant: str = _key("int8", choices=("f32", "int8"))
    """Which build of the MTCNN networks to load."""
    min_face_px: int = _key(40, lo=12, hi=2000)
    """Smallest face the detector looks for, in pixels; smaller is slower."""
    threads: int = _key(1, lo=1, hi=16)
    """CPU threads for the detector."""
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    """Score thresholds of the P-, R- and O-net stages, each in (0, 1)."""
    refine_landmarks: bool = True
    """Average ONet's landmarks with those of the face's mirror image (better alignment, 0.4 ms/face)."""
    redetect_every: int = _key(5, lo=1, hi=1000)
    """Door loop: full detection at least every this many frames; in between, faces are followed
    from the previous frame (appliance/vision/tracking.py). 1 = full detection on every frame."""


@dataclass(frozen=True)
class EmbedderSettings:
    """[embedder]: the face embedding network."""

    variant: str = _key("int8", choices=("f16", "int8"))
    """Which build of the embedder to load."""
    threads: int = _key(1, lo=1, hi=16)
    """CPU threads for the embedder."""


@dataclass(frozen=True)
class QualitySettings:
    """[quality]: the gate a face passes before it is matched or enrolled."""

    min_face_px: int = _key(80, lo=12, hi=4000)
    """Smallest face box side in pixels that is matched."""
    min_sharpness: float = _key(20.0, lo=0)
    """Least variance of the Laplacian of the 64x64 gray face crop; higher rejects blur."""
    min_brightness: float = _key(40.0, lo=0, hi=255)
    """Least mean gray level (0-255) of the face crop."""
    max_brightness: float = _key(220.0, lo=0, hi=255)
    """Greatest mean gray level (0-255) of the face crop."""
    max_yaw_deg: float = _key(30.0, lo=0, hi=90)
    """Greatest head turn left/right in degrees, estimated from the landmarks."""
    max_roll_deg: float = _key(25.0, lo=0, hi=90)
    """Greatest head tilt in degrees (angle of the line between the eyes)."""


@dataclass(frozen=True)
class PolicySettings:
    """[policy]: when a run of matches opens the door."""

    match_threshold: float = _key(0.956, lo=0, hi=1)
    """Least cosine similarity to count as a match; 0.956 gives FPIR 1% on the LFW door benchmark."""
    margin: float = _key(0.05, lo=0, hi=2)
    """Least lead of the best user's score over the second-best user's."""
    frames_needed: int = _key(3, lo=1, hi=100)
    """k: matched frames of the same user needed for a grant."""
    window_frames: int = _key(5, lo=1, hi=100)
    """n: the k matches must be among the last n frames with a face."""
    window_s: float = _key(2.0, lo=0, hi=60, lo_open=True)
    """...and within this many seconds."""
    unlock_s: float = _key(5.0, lo=0, hi=300, lo_open=True)
    """Seconds the door stays unlocked after a grant."""
    cooldown_s: float = _key(6.0, lo=0, hi=3600)
    """Seconds after a grant in which nobody is granted again."""
    deny_after_frames: int = _key(10, lo=1, hi=10000)
    """Frames an unknown face must persist before a deny event."""
    deny_cooldown_s: float = _key(10.0, lo=0, hi=3600)
    """Least seconds between two deny events."""


@dataclass(frozen=True)
class GpioSettings:
    """[gpio]: pins, BCM numbering. Optional pins are None when set to -1 in the file."""

    pin_factory: str = _key("lgpio", choices=("native", "lgpio", "rpigpio", "mock"))
    """gpiozero pin factory; "mock" drives no hardware and must be chosen explicitly."""
    relay_pin: int = 17
    """Pin driving the door strike relay (required)."""
    relay_active_high: bool = True
    """True if the relay energises (unlocks) when the pin is high."""
    green_led_pin: int | None = 27
    """Green LED, lit on grant; None if not fitted."""
    red_led_pin: int | None = 22
    """Red LED, lit on deny; None if not fitted."""
    buzzer_pin: int | None = None
    """Buzzer, sounds on deny; None if not fitted."""
    enrol_button_pin: int | None = 23
    """Button held `enrol_hold_s` to start an enrolment; None if not fitted."""
    exit_button_pin: int | None = None
    """Request-to-exit button inside; None if not fitted."""
    door_sensor_pin: int | None = None
    """Door contact (closed = pin low); None if not fitted."""
    enrol_hold_s: float = _key(3.0, lo=0, hi=60, lo_open=True)
    """Seconds the enrol button must be held."""

    def pins(self) -> dict[str, int]:
        """The fitted pins, key -> BCM number."""
        names = ("relay_pin", *sorted(_PIN_KEYS))
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True)
class GallerySettings:
    """[gallery]: the SQLite database of users, templates and events."""

    path: Path = Path("facegate.db")
    """Database file (relative to the config folder)."""
    busy_timeout_s: float = _key(5.0, lo=0, hi=600)
    """Seconds to wait for another process (e.g. the CLI) to release the database."""


@dataclass(frozen=True)
class EnrolmentSettings:
    """[enrolment]: capturing a new user's templates."""

    shots: int = _key(5, lo=1, hi=50)
    """Templates captured per enrolment."""
    min_shots_interval_s: float = _key(0.3, lo=0, hi=60)
    """Least seconds between two shots, so they differ."""
    require_admin: bool = True
    """True: an admin's face must be granted before the enrol button works."""
    duplicate_threshold: float = _key(0.956, lo=0, hi=1)
    """A new face this similar (cosine) to an enrolled user is refused as already enrolled."""
    timeout_s: float = _key(30.0, lo=0, hi=600, lo_open=True)
    """Seconds an enrolment may take before it is abandoned."""


@dataclass(frozen=True)
class ServiceSettings:
    """[service]: the long-running process."""

    watchdog: bool = True
    """Ping the systemd watchdog from the frame loop."""
    log_level: str = _key("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    """Least level logged."""


@dataclass(frozen=True)
class MqttSettings:
    """[mqtt]: the Home Assistant bridge (`facegate mqtt`) and the door's local link to it.

    Empty strings mean "not set". File paths are relative to the config folder. The password is read
    from `password_file`, never from this file.
    """

    host: str = ""
    """Broker host name or address; "" leaves MQTT off (the door opens no link socket)."""
    port: int = _key(1883, lo=1, hi=65535)
    """Broker TCP port (1883 plain, 8883 usually for TLS)."""
    tls: bool = False
    """Connect with TLS; the broker's certificate is checked against `ca_file`, or the system CAs."""
    ca_file: str = ""
    """PEM file of the CA that signed the broker's certificate; setting it turns TLS on."""
    cert_file: str = ""
    """PEM client certificate for brokers that require one (with `key_file`)."""
    key_file: str = ""
    """PEM private key of `cert_file`."""
    username: str = ""
    """Broker user name; "" connects anonymously."""
    password_file: str = ""
    """File whose first line is the broker password (mode 0640, root:facegate)."""
    topic_prefix: str = "facegate"
    """First level of FaceGate's own topics: PREFIX/DEVICE_ID/..."""
    device_id: str = "door"
    """This door's id in topics and Home Assistant unique ids (letters, digits, _ and -)."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's MQTT discovery prefix; its birth message is DISCOVERY_PREFIX/status."""
    qos: int = _key(1, lo=0, hi=2)
    """QoS of FaceGate's messages and command subscription; 1 = at least once."""
    allow_remote_unlock: bool = False
    """True: an MQTT UNLOCK opens the door for [policy] unlock_s; False: refused. Both are logged."""
    queue_size: int = _key(1000, lo=1, hi=100000)
    """Events kept while the broker is away, sent in order when it returns; the oldest dropped beyond."""
    socket: str = "/run/facegate/door.sock"
    """Unix socket on which the door service talks to the bridge (the door itself has no network)."""


@dataclass(frozen=True)
class WebSettings:
    """[web]: the admin web page (`facegate web`), its own process with no GPIO."""

    host: str = "127.0.0.1"
    """Address the page listens on; the default serves this machine only (use a reverse proxy or TLS)."""
    port: int = _key(8080, lo=1, hi=65535)
    """TCP port of the page."""
    password_file: Path = Path("web-admins")
    """Admins' scrypt password hashes (`facegate web --set-password`); relative to the gallery's folder."""
    secret_file: Path = Path("web-secret")
    """Key that signs session cookies, made (mode 0600) on first start; relative to the gallery's folder."""
    session_days: float = _key(7.0, lo=0, hi=365, lo_open=True)
    """Days a sign-in lasts before the admin must sign in again."""
    pictures_days: float = _key(30.0, lo=0, hi=3650)
    """Days the door keeps a small face picture of each grant and deny (pictures/ next to the gallery,
    shown in the events page, deleted with the user); 0 = take none."""
    tls_cert: str = ""
    """PEM certificate file for HTTPS ("" = plain HTTP); relative to the config folder."""
    tls_key: str = ""
    """PEM private key of tls_cert ("" = plain HTTP); relative to the config folder."""


@dataclass(frozen=True)
class LivenessSettings:
    """[liveness]: refusing prints and screens held up to the camera (appliance/liveness/)."""

    mode: str = _key("passive", choices=("off", "passive", "challenge"))
    """"off": no check (a photo of a user opens the door); "passive": deny cues refuse a held photo,
    glare or moire, and a face must be seen min_observe_s before it can be granted; "challenge":
    passive, and each tracked face must also turn its head the way a random prompt asks."""
    min_observe_s: float = _key(1.5, lo=0, hi=30)
    """Seconds a tracked face is watched before it may be granted (the held cue needs motion)."""
    track_gap_s: float = _key(0.3, lo=0, hi=10)
    """A face out of view (or not detected) for at most this many seconds keeps its track."""
    held_check: bool = True
    """Refuse a face whose surroundings move with it (a photo or phone held in a hand)."""
    held_min_move: float = _key(0.01, lo=0, hi=1, lo_open=True)
    """Least face motion between two frames, in face widths, for the held cue to be measured."""
    held_min_fraction: float = _key(0.5, lo=0, hi=1)
    """A frame counts as held when at least this fraction of the points around the face followed it."""
    held_min_pairs: int = _key(3, lo=1, hi=1000)
    """Held frames (and more than half of the frames where the face moved) needed to refuse."""
    glare_check: bool = False
    """Refuse a face with a flat specular glare blob (off: it did not separate on the development data)."""
    glare_min_fraction: float = _key(0.02, lo=0, hi=1, lo_open=True)
    """A glare frame: the largest near-white blob covers at least this fraction of the face box."""
    moire_check: bool = False
    """Refuse a face showing screen moire (off: it did not separate on the development data)."""
    moire_min_peak: float = _key(12.0, lo=1)
    """A moire frame: a spectral peak at least this many times the median of its frequency band."""
    deny_min_frames: int = _key(3, lo=1, hi=1000)
    """Glare or moire frames needed to refuse."""
    require_confirm: bool = False
    """Also require the confirm cue (the nose off the plane of eyes and mouth during a head turn)."""
    parallax_min: float = _key(0.08, lo=0, hi=2, lo_open=True)
    """Confirm cue: least nose residual from the eyes-and-mouth plane, in eye distances..."""
    parallax_min_yaw_deg: float = _key(12.0, lo=0, hi=90)
    """...during a head turn of at least this many degrees since the track began."""
    challenge_window_s: float = _key(5.0, lo=0.5, hi=60)
    """mode = "challenge": seconds from the prompt (a new track) within which it must be answered."""
    challenge_min_yaw_deg: float = _key(15.0, lo=1, hi=60)
    """mode = "challenge": least head turn, degrees (five-landmark yaw), that answers the prompt; as
    far the other way fails it."""


@dataclass(frozen=True)
class SiteSettings:
    """[site]: several doors sharing one set of users (`facegate sync`, over the [mqtt] broker).

    Empty strings mean "not set"; `key_file` is relative to the config folder.
    """

    site_id: str = ""
    """The site's id in topics (letters, digits, _ and -); "" leaves site mode off."""
    key_file: str = ""
    """File holding the site key (64 hex digits; mode 0600, the service user's): the same at every door."""
    door_id: str = ""
    """This door's id within the site; "" uses [mqtt] device_id. Breaks ties between equal clocks."""


@dataclass(frozen=True)
class Config:
    """The whole configuration. `path` is the file it came from, None for the built-in defaults."""

    schema_version: int = SCHEMA_VERSION
    camera: CameraSettings = field(default_factory=CameraSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    gallery: GallerySettings = field(default_factory=GallerySettings)
    enrolment: EnrolmentSettings = field(default_factory=EnrolmentSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    web: WebSettings = field(default_factory=WebSettings)
    liveness: LivenessSettings = field(default_factory=LivenessSettings)
    site: SiteSettings = field(default_factory=SiteSettings)
    path: Path | None = field(default=None, compare=False)


SECTIONS: dict[str, type] = {
    "camera": CameraSettings,
    "detector": DetectorSettings,
    "embedder": EmbedderSettings,
    "quality": QualitySettings,
    "policy": PolicySettings,
    "gpio": GpioSettings,
    "gallery": GallerySettings,
    "enrolment": EnrolmentSettings,
    "service": ServiceSettings,
    "mqtt": MqttSettings,
    "web": WebSettings,
    "liveness": LivenessSettings,
    "site": SiteSettings,
}
"""Section name -> its dataclass: the schema."""

_PIN_KEYS = {
    "green_led_pin",
    "red_led_pin",
    "buzzer_pin",
    "enrol_button_pin",
    "exit_button_pin",
    "door_sensor_pin",
}


def schema_keys() -> dict[str, list[str]]:
    """Section -> its key names, in schema order (what a complete config.toml lists)."""
    return {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}


MAX_CONFIG_BYTES = 1 << 20
"""A config file is a few kilobytes; anything over a mebibyte is the wrong file (or /dev/zero)."""


LOWEST_SAFE_THRESHOLD = 0.90
"""Cosine below which thresholds let strangers in: dlib embeddings of two people commonly score 0.80-0.90."""


def config_warnings(cfg: Config) -> list[str]:
    """Settings that are valid but unsafe for a door, one line each saying why (empty when none)."""
    warnings = []
    for label, value in (
        ("policy.match_threshold", cfg.policy.match_threshold),
        ("enrolment.duplicate_threshold", cfg.enrolment.duplicate_threshold),
    ):
        if value < LOWEST_SAFE_THRESHOLD:
            warnings.append(
                f"{label} = {value} is below {LOWEST_SAFE_THRESHOLD}: two different people commonly "
                f"score 0.80-0.90, so strangers will match; the default is {PolicySettings.match_threshold}."
            )
    if cfg.web.host not in LOOPBACK_HOSTS and not cfg.web.tls_cert:
        warnings.append(
            f'web.host = "{cfg.web.host}" serves the admin page to the network over plain HTTP, so '
            "passwords and cookies cross it readable; set web.tls_cert and web.tls_key, or keep "
            'host = "127.0.0.1" behind a reverse proxy with TLS (README "Web admin").'
        )
    return warnings


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
"""web.host values that serve this machine only."""


def _check_regular_file(path: Path) -> None:
    """Refuse a FIFO, device or folder (reading one would hang or never end) and an oversized file."""
    info = path.stat()  # FileNotFoundError is the caller's to explain
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"{path}: not a regular file (a folder, device or pipe); give the path of config.toml."
        )
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {info.st_size} bytes is far too large for a config file; give the path of config.toml."
        )


def load_config(path: Path | str | None) -> Config:
    """Read and validate a config file.

    Args:
        path: the TOML file, or None for the built-in defaults (relative paths then resolve
            against the current folder).

    Returns:
        A frozen Config with absolute paths.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid TOML, or has an unknown
            section or key, a value of the wrong type, out of range, or not one of the choices.
    """
    if path is None:
        return _resolve_paths(Config(), Path.cwd())
    path = Path(path)
    try:
        _check_regular_file(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; copy the annotated config.toml from the "
            "FaceGate source and edit it."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc}); check its permissions.") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the syntax there.") from None
    return _resolve_paths(_parse(raw, str(path)), path.resolve().parent, source=path)


RELAY_KEYS = ("pin_factory", "relay_pin", "relay_active_high")
"""The [gpio] keys `facegate lock` needs; load_relay_settings reads only these."""


def load_relay_settings(
    path: Path | str | None, fallback: tuple[GpioSettings, Path] | None = None
) -> tuple[GpioSettings, list[str]]:
    """The relay settings of a config file, read even from a damaged file; for `facegate lock`.

    The relock after a crash must not depend on the rest of the file: an unknown key, a bad value
    elsewhere, even a TOML syntax error outside [gpio] is ignored. Each of `RELAY_KEYS` that cannot be
    read takes its value from `fallback` (the settings the door last ran with and the file they were
    kept in, see app/relay_memory.py) or else the built-in default (GpioSettings), and so do all three
    when [gpio] itself cannot be parsed or the file cannot be read.

    Returns:
        The GpioSettings (keys other than `RELAY_KEYS` at their defaults when the file has errors), and
        one line per thing ignored or replaced by a default, saying so (empty for a valid file).
    """
    if path is None:
        return GpioSettings(), []
    try:
        return load_config(path).gpio, []
    except ConfigError as exc:
        warnings = [f"ignored: {exc}"]
    defaults = GpioSettings() if fallback is None else fallback[0]
    whose = "the built-in relay settings" if fallback is None else "the relay settings the door last ran with"
    shipped = (
        f"{whose} (gpio.relay_pin = {defaults.relay_pin}, "
        f"gpio.relay_active_high = {_show(defaults.relay_active_high)}, "
        f'gpio.pin_factory = "{defaults.pin_factory}")'
        + ("" if fallback is None else f", kept in {fallback[1]}")
    )
    path = Path(path)
    try:
        _check_regular_file(path)
        text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ConfigError):
        return defaults, [*warnings, f"{path}: relay settings cannot be read; using {shipped}."]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        # A typo elsewhere in the file: the [gpio] table alone may still parse.
        try:
            raw = {"gpio": tomllib.loads(_gpio_table_text(text))}
        except tomllib.TOMLDecodeError as exc:
            return defaults, [*warnings, f"{path}: [gpio] is not valid TOML either ({exc}); using {shipped}."]
        warnings.append(f"{path}: read [gpio] on its own, past the syntax error.")
    body = raw.get("gpio", {})
    if not isinstance(body, dict):
        return defaults, [*warnings, f"{path}: gpio is not a [gpio] table; using {shipped}."]
    fields = {f.name: f for f in dataclasses.fields(GpioSettings)}
    hints = get_type_hints(GpioSettings)
    values: dict[str, Any] = {}
    for key in RELAY_KEYS:
        if key not in body:
            if fallback is not None:  # a damaged file may have lost the key: the door's value, not a guess
                warnings.append(
                    f"{path}: no gpio.{key} could be read; using the value the door last ran with "
                    f"({fallback[1]}), {_show(getattr(defaults, key))}."
                )
            continue
        label = f"{path}: gpio.{key} = {_show(body[key])}"
        try:
            values[key] = _convert(label, key, hints[key], fields[key].metadata, body[key])
        except ConfigError as exc:
            default = getattr(defaults, key)
            which = "the default" if fallback is None else f"the value the door last ran with ({fallback[1]})"
            warnings.append(f"{exc} Using {which}, {_show(default)}.")
    return dataclasses.replace(defaults, **values), warnings


def _gpio_table_text(text: str) -> str:
    """The lines of the [gpio] table of a TOML document: from its header to the next table header."""
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        header = re.match(r"\s*\[\s*([^\]]*?)\s*\]", line)
        if header:
            inside = header.group(1) == "gpio"
            continue
        if inside:
            lines.append(line)
    return "\n".join(lines)


def _parse(raw: dict[str, Any], where: str) -> Config:
    """Validate the parsed TOML document `raw` (`where` names the file in errors)."""
    sections: dict[str, Any] = {}
    for name, body in raw.items():
        if name == "schema_version":
            _check_schema_version(body, where)
            continue
        if name not in SECTIONS:
            raise ConfigError(
                f"{where}: [{name}]: unknown section{_did_you_mean(name, SECTIONS)}; "
                f"known sections: {', '.join(SECTIONS)}."
            )
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {name} = {_show(body)}: must be a [{name}] table, not a value.")
        sections[name] = _parse_section(name, SECTIONS[name], body, where)
    return Config(**sections)


def _check_schema_version(value: Any, where: str) -> None:
    if type(value) is not int or value != SCHEMA_VERSION:
        raise ConfigError(
            f"{where}: schema_version = {_show(value)}: this FaceGate reads schema_version "
            f"{SCHEMA_VERSION}; update FaceGate or start again from the shipped config.toml."
        )


def _parse_section(name: str, cls: type, body: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in body.items():
        if name == "mqtt" and key == "password":
            raise ConfigError(
                f"{where}: mqtt.password: the password is never kept in the config file; write it to a "
                "file readable only by the service (first line) and set mqtt.password_file to its path."
            )
        if key not in fields:
            raise ConfigError(
                f"{where}: {name}.{key}: unknown key{_did_you_mean(key, fields)}; "
                f"known keys in [{name}]: {', '.join(fields)}."
            )
        label = f"{where}: {name}.{key} = {_show(value)}"
        values[key] = _convert(label, key, hints[key], fields[key].metadata, value)
    settings = cls(**values)
    _check_section(name, settings, where)
    return settings


def _convert(label: str, key: str, hint: Any, meta: Any, value: Any) -> Any:
    """Type-check one value against its schema field and return it in its Python form."""
    if key in _PIN_KEYS or key == "relay_pin":
        return _pin(label, value, optional=key in _PIN_KEYS)
    if key == "source":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f'{label}: must be a non-empty string: "picamera", "usb:N", a URL or a path.')
        _source_kind(value, label)
        return value
    if key == "thresholds":
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(_is_number(v) and 0 < v < 1 for v in value)
        ):
            raise ConfigError(f"{label}: must be a list of 3 numbers, each between 0 and 1 (P-, R-, O-net).")
        return tuple(float(v) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: must be true or false.")
        return value
    if hint is int:
        # bool is an int in Python, but `true` for a count is a typo, not a 1.
        if type(value) is not int:
            raise ConfigError(f"{label}: must be a whole number.")
    elif hint is float:
        if not _is_number(value):
            raise ConfigError(f"{label}: must be a number.")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label}: must be a string.")
    elif hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{label}: must be a non-empty path string.")
        return Path(value).expanduser()
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{label}: must be one of {', '.join(repr(c) for c in choices)}.")
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open")
    if lo is not None and (value <= lo if lo_open else value < lo) or hi is not None and value > hi:
        raise ConfigError(f"{label}: {_range_text(lo, hi, lo_open)}.")
    return value


def _range_text(lo: float | None, hi: float | None, lo_open: bool) -> str:
    fmt = "{:g}".format
    if lo is not None and hi is not None:
        if lo_open:
            return f"must be more than {fmt(lo)} and at most {fmt(hi)}"
        return f"must be between {fmt(lo)} and {fmt(hi)}"
    if lo is not None:
        return f"must be more than {fmt(lo)}" if lo_open else f"must be at least {fmt(lo)}"
    return f"must be at most {fmt(hi)}"


def _pin(label: str, value: Any, *, optional: bool) -> int | None:
    if type(value) is not int:
        raise ConfigError(
            f"{label}: must be a BCM GPIO number ({_FIRST_PIN}-{_LAST_PIN})"
            + (f" or {NO_PIN} for none." if optional else ".")
        )
    if optional and value == NO_PIN:
        return None
    if not _FIRST_PIN <= value <= _LAST_PIN:
        hint = f"; use {NO_PIN} if it is not fitted" if optional else ""
        raise ConfigError(f"{label}: must be a BCM GPIO number between {_FIRST_PIN} and {_LAST_PIN}{hint}.")
    return value


def _check_section(name: str, s: Any, where: str) -> None:
    """Checks that involve two keys of one section."""
    if isinstance(s, CameraSettings) and s.reconnect_initial_s > s.reconnect_max_s:
        raise ConfigError(
            f"{where}: camera.reconnect_initial_s = {s.reconnect_initial_s:g}: must not exceed "
            f"camera.reconnect_max_s ({s.reconnect_max_s:g})."
        )
    if isinstance(s, QualitySettings) and s.min_brightness >= s.max_brightness:
        raise ConfigError(
            f"{where}: quality.min_brightness = {s.min_brightness:g}: must be below "
            f"quality.max_brightness ({s.max_brightness:g})."
        )
    if isinstance(s, PolicySettings) and s.frames_needed > s.window_frames:
        raise ConfigError(
            f"{where}: policy.frames_needed = {s.frames_needed}: must not exceed "
            f"policy.window_frames ({s.window_frames}), or no one is ever granted."
        )
    if isinstance(s, MqttSettings):
        _check_mqtt(s, where)
    if isinstance(s, SiteSettings):
        for key in ("site_id", "door_id"):
            value = getattr(s, key)
            if value and not _TOPIC_ID.match(value):
                raise ConfigError(
                    f'{where}: site.{key} = "{value}": use only letters, digits, _ and - '
                    "(it is part of topics)."
                )
    if isinstance(s, GpioSettings):
        seen: dict[int, str] = {}
        for key, pin in s.pins().items():
            if pin in seen:
                raise ConfigError(
                    f"{where}: gpio.{key} = {pin}: pin already used by gpio.{seen[pin]}; "
                    "each part needs its own pin."
                )
            seen[pin] = key
    if isinstance(s, WebSettings) and bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigError(
            f"{where}: web.tls_cert and web.tls_key: give both (HTTPS) or neither (plain HTTP)."
        )


_TOPIC_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _check_mqtt(s: MqttSettings, where: str) -> None:
    """[mqtt] keys that depend on each other, and ids that must be valid in topics and unique ids."""
    if s.host != s.host.strip() or any(c.isspace() for c in s.host):
        raise ConfigError(f'{where}: mqtt.host = "{s.host}": must be a host name or address without spaces.')
    for key in ("device_id",):
        value = getattr(s, key)
        if not _TOPIC_ID.match(value):
            raise ConfigError(
                f'{where}: mqtt.{key} = "{value}": use only letters, digits, _ and - (it is part of topics '
                "and Home Assistant ids)."
            )
    for key in ("topic_prefix", "discovery_prefix"):
        value = getattr(s, key)
        if not value or any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
            raise ConfigError(
                f'{where}: mqtt.{key} = "{value}": must be a non-empty MQTT topic without +, #, or a '
                "leading or trailing /."
            )
    if bool(s.cert_file) != bool(s.key_file):
        raise ConfigError(
            f"{where}: mqtt.cert_file and mqtt.key_file: give both (a client certificate and its key) "
            "or neither."
        )
    if s.password_file and not s.username:
        raise ConfigError(
            f"{where}: mqtt.password_file is set but mqtt.username is not; set the user name too."
        )
    if not s.socket:
        raise ConfigError(f"{where}: mqtt.socket: must be a path (the door's Unix socket for the bridge).")


_SOURCE_URL = re.compile(r"^(rtsp|rtsps|http|https)://\S+$", re.IGNORECASE)


def _source_kind(source: str, label: str | None = None) -> str:
    # The same reading as hardware.cameras.open_source (case-insensitive, picamera:N), so that what
    # check-config passes is what run opens, never a camera name taken for a file path.
    text = source.strip().lower()
    if text == "picamera" or text.startswith("picamera:"):
        if not re.fullmatch(r"picamera(:\d+)?", text):
            raise ConfigError(
                f'{label or source}: a Pi camera is "picamera" or "picamera:N" with N a number.'
            )
        return "picamera"
    if text.startswith("usb:"):
        if not re.fullmatch(r"usb:\d+", text):
            raise ConfigError(f'{label or source}: a USB camera is "usb:N" with N its /dev/videoN number.')
        return "usb"
    if "://" in source:
        if not _SOURCE_URL.match(source.strip()):
            raise ConfigError(f"{label or source}: only rtsp://, http:// and https:// URLs are read.")
        return "url"
    return "path"


def _resolve_paths(cfg: Config, base: Path, source: Path | None = None) -> Config:
    """Make the config's relative paths absolute against `base` (the config file's folder)."""
    camera = cfg.camera
    if camera.kind == "path":
        camera = dataclasses.replace(camera, source=str(base / Path(camera.source).expanduser()))
    gallery_dir = (base / cfg.gallery.path).parent
    w = cfg.web
    # The web page's key and password files live with the data they guard (the state directory).
    web = dataclasses.replace(
        w,
        password_file=gallery_dir / w.password_file,
        secret_file=gallery_dir / w.secret_file,
        tls_cert=str(base / Path(w.tls_cert).expanduser()) if w.tls_cert else "",
        tls_key=str(base / Path(w.tls_key).expanduser()) if w.tls_key else "",
    )
    return dataclasses.replace(
        cfg,
        camera=camera,
        detector=dataclasses.replace(cfg.detector, models_dir=base / cfg.detector.models_dir),
        gallery=dataclasses.replace(cfg.gallery, path=base / cfg.gallery.path),
        mqtt=_resolve_mqtt_paths(cfg.mqtt, base),
        web=web,
        site=dataclasses.replace(cfg.site, key_file=str(base / cfg.site.key_file))
        if cfg.site.key_file
        else cfg.site,
        path=source,
    )


def _resolve_mqtt_paths(m: MqttSettings, base: Path) -> MqttSettings:
    """[mqtt]'s file keys made absolute against `base`; empty ones stay empty (not set)."""
    keys = ("ca_file", "cert_file", "key_file", "password_file", "socket")
    return dataclasses.replace(
        m, **{k: str(base / Path(getattr(m, k)).expanduser()) for k in keys if getattr(m, k)}
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _did_you_mean(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _show(value: Any) -> str:
    """A value as it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{...}"
    return str(value)
