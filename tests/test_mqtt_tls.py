"""TLS, client certificates and passwords against a real mosquitto, with a CA made by the test (openssl
CLI), and `facegate doctor`'s broker check; the password never in config.toml."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_run import one_line_error, run
from mqtt_helpers import Broker, Subscriber, facegate, needs_mosquitto, running, topics, write_config

from appliance.config import load_config
from appliance.errors import ConfigError

T = topics()
needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command is not installed"
)
PASSWORD = "correct horse battery staple"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    """name.pem / name.key: a self-signed CA."""
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=folder,
    )  # fmt: skip


def make_cert(folder: Path, name: str, ca: str, san: str) -> None:
    """name.pem / name.key signed by the CA `ca`, for the subjectAltName `san`."""
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder,
    )  # fmt: skip
    (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder,
    )  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    folder.mkdir()
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    make_cert(folder, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    make_cert(folder, "client", "ca", "DNS:facegate")
    return folder


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path):
    """mosquitto with TLS only, a client certificate required, and a user with a password."""
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pki / "passwd"), "facegate", PASSWORD],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    extra = (
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
        f"require_certificate true\npassword_file {pki / 'passwd'}\n"
    )
    b = Broker(tmp_path / "broker", extra=extra, anonymous=False).start()
    yield b
    b.stop()


def tls_config(tmp_path: Path, pki: Path, port: int, *, ca: str = "ca", password: str = PASSWORD) -> Path:
    (tmp_path / "mqtt-password").write_text(password + "\n")
    (tmp_path / "mqtt-password").chmod(0o600)
    mqtt = (
        f'ca_file = "{pki / (ca + ".pem")}"\ncert_file = "pki/client.pem"\nkey_file = "pki/client.key"\n'
        'username = "facegate"\npassword_file = "mqtt-password"\n'  # relative: to the config's folder
    )
    return write_config(tmp_path, port, mqtt=mqtt)


def doctor_mqtt(capsys, cfg: Path, tmp_path: Path) -> dict:
    code, out, err = run(
        capsys, "doctor", "--config", cfg, "--db", tmp_path / "g.db", "--headless", "--no-camera", "--json"
    )
    checks = {c["name"]: c for c in json.loads(out)}
    return checks["mqtt"]


@needs_mosquitto
@needs_openssl
def test_bridge_over_tls_with_a_client_certificate_and_a_password(tmp_path, pki, tls_broker):
    cfg = tls_config(tmp_path, pki, tls_broker.port)
    tls = {
        "ca_certs": str(pki / "ca.pem"),
        "certfile": str(pki / "client.pem"),
        "keyfile": str(pki / "client.key"),
    }
    sub = Subscriber(tls_broker.port, tls=tls, auth=("facegate", PASSWORD))
    try:
        with running(facegate("mqtt", "--config", cfg, log=tmp_path / "bridge.log")):
            sub.wait_for(T.availability, "online")
            lock = json.loads(sub.wait_for(T.config("lock", "lock")).payload)
        assert lock["unique_id"] == "facegate_door_lock"
        assert sub.last(T.availability) == "offline"
    finally:
        sub.close()
    assert PASSWORD not in (tmp_path / "bridge.log").read_text()


@needs_mosquitto
@needs_openssl
def test_doctor_checks_the_broker_and_says_what_is_wrong(tmp_path, pki, tls_broker, capsys, cli_tmp):
    good = doctor_mqtt(capsys, tls_config(tmp_path, pki, tls_broker.port), tmp_path)
    assert good["ok"], good
    assert good["detail"] == f"broker 127.0.0.1:{tls_broker.port} accepts FaceGate over TLS as facegate"

    wrong_ca = doctor_mqtt(capsys, tls_config(tmp_path, pki, tls_broker.port, ca="other-ca"), tmp_path)
    assert not wrong_ca["ok"] and "TLS failed" in wrong_ca["detail"] and "mqtt.ca_file" in wrong_ca["detail"]

    wrong_password = doctor_mqtt(capsys, tls_config(tmp_path, pki, tls_broker.port, password="x"), tmp_path)
    assert not wrong_password["ok"] and "refused the connection" in wrong_password["detail"]

    tls_broker.stop()
    down = doctor_mqtt(capsys, tls_config(tmp_path, pki, tls_broker.port), tmp_path)
    assert not down["ok"] and "cannot connect" in down["detail"]


def test_doctor_checks_no_broker_without_mqtt_or_with_no_mqtt(tmp_path, capsys, cli_tmp):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[gpio]\npin_factory = "mock"\n')
    code, out, _ = run(capsys, "doctor", "--config", cfg, "--db", tmp_path / "g.db", "--no-camera", "--json")
    assert "mqtt" not in {c["name"] for c in json.loads(out)}
    # The door service's own doctor (ExecStartPre) runs without network: --no-mqtt.
    cfg = write_config(tmp_path, 1)
    code, out, _ = run(
        capsys, "doctor", "--config", cfg, "--db", tmp_path / "g.db", "--no-camera", "--no-mqtt", "--json"
    )
    assert code == 0 and "mqtt" not in {c["name"] for c in json.loads(out)}


def test_a_missing_password_file_stops_the_bridge_in_one_line(tmp_path, capsys, cli_tmp):
    cfg = write_config(tmp_path, 1883, mqtt='username = "facegate"\npassword_file = "nope"\n')
    code, _, err = run(capsys, "mqtt", "--config", cfg)
    assert code == 1
    one_line_error(err, "mqtt.password_file", "nope", "cannot read it")


def test_the_password_itself_is_refused_in_the_config(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[mqtt]\nhost = "broker"\nusername = "u"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert "never kept in the config file" in str(info.value) and "password_file" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('device_id = "front door"', "mqtt.device_id"),
        ('topic_prefix = "home/#"', "mqtt.topic_prefix"),
        ('cert_file = "c.pem"', "give both"),
        ('password_file = "p"', "set the user name too"),
        ("qos = 3", "mqtt.qos = 3"),
        ("port = 0", "mqtt.port = 0"),
    ],
)
def test_bad_mqtt_settings_are_one_line_errors(tmp_path, body, fragment):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[mqtt]\nhost = "broker"\n{body}\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_relative_mqtt_files_are_relative_to_the_config_folder(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[mqtt]\nhost = "b"\nca_file = "ca.pem"\nsocket = "run/door.sock"\n')
    m = load_config(cfg).mqtt
    assert (m.ca_file, m.socket, m.cert_file) == (
        str(tmp_path / "ca.pem"),
        str(tmp_path / "run/door.sock"),
        "",
    )
