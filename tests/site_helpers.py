"""Pieces of the site tests (tests/test_site_*.py) and bench/site_join.py: a mosquitto broker with TLS and
a password (CA and certificates made with the openssl CLI), a site key, and one folder per door with its
own gallery file and config.toml."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mqtt_helpers import Broker

PASSWORD = "correct horse battery staple"
SITE = "hq"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path) -> Path:
    """ca.pem, server.pem/.key for 127.0.0.1, and a broker password file `passwd` for user facegate."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=site-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=folder,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=broker", cwd=folder,
    )  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=folder,
    )  # fmt: skip
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), "facegate", PASSWORD],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return folder


def tls_broker(folder: Path, pki: Path, port: int | None = None) -> Broker:
    """mosquitto on TLS only, with a password required (not started)."""
    extra = (
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
        f"password_file {pki / 'passwd'}\n"
    )
    return Broker(folder, extra=extra, anonymous=False, port=port)


def make_site_key(folder: Path) -> Path:
    from appliance.sites.records import make_key_file

    path = folder / "site.key"
    make_key_file(path)
    return path


@dataclass
class DoorFolder:
    """One door: its folder, gallery file and config."""

    name: str
    folder: Path
    db: Path
    config: Path


def door_folder(root: Path, name: str, port: int, pki: Path, key: Path, extra: str = "") -> DoorFolder:
    """A door's folder with a config.toml for the site on the TLS broker at `port`."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mqtt-password").write_text(PASSWORD + "\n")
    (folder / "mqtt-password").chmod(0o600)
    local_key = folder / "site.key"
    shutil.copy(key, local_key)
    local_key.chmod(0o600)
    config = folder / "config.toml"
    # Liveness off: the door replays here are walk-ups made from still photos, which it refuses.
    config.write_text(
        '[gpio]\npin_factory = "mock"\n[liveness]\nmode = "off"\n'
        + extra
        + f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nca_file = "{pki / "ca.pem"}"\n'
        f'username = "facegate"\npassword_file = "mqtt-password"\ndevice_id = "{name}"\n'
        f'socket = "{folder / "door.sock"}"\n'
        f'\n[site]\nsite_id = "{SITE}"\nkey_file = "site.key"\n'
    )
    return DoorFolder(name, folder, folder / "gallery.db", config)
