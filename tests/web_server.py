"""A real `facegate web` for tests: its own config, fresh gallery and admin password, on a free port.

Used by tests/test_web.py (plain HTTP) and tests/test_web_browser.py (headless chromium).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ADMIN, PASSWORD = "admin", "correct horse battery staple"


@dataclass
class WebServer:
    """A running `facegate web`: its URL, folder, config, gallery and log file."""

    url: str
    folder: Path
    config: Path
    gallery: Path
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> int:
        """SIGTERM, then its exit status (uvicorn exits 0 on SIGTERM)."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def facegate(*args: str, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m appliance ARGS` in `cwd`, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def write_config(folder: Path, port: int, web: str = "") -> Path:
    """A config with its gallery in `folder` and the page on `port`; `web`: more [web] lines.

    Liveness off: the door replays in these tests show a still photo moved about, which it refuses."""
    config = folder / "config.toml"
    config.write_text(
        f'[gallery]\npath = "facegate.db"\n\n[liveness]\nmode = "off"\n\n'
        f"[web]\nport = {port}\nsession_days = 1.0\n{web}"
    )
    return config


def start_web(
    folder: Path, web: str = "", scheme: str = "http", preexec_fn: Callable[[], object] | None = None
) -> WebServer:
    """Set the admin password through stdin, start `facegate web` and wait until it answers."""
    port = free_port()
    config = write_config(folder, port, web)
    done = facegate("web", "--config", str(config), "--set-password", stdin=PASSWORD + "\n", cwd=folder)
    assert done.returncode == 0, done.stderr
    log = folder / "web.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "appliance", "web", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            preexec_fn=preexec_fn,
        )
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    insecure = ssl._create_unverified_context()  # the tests' self-signed certificate
    while True:
        try:
            urllib.request.urlopen(url + "/signin", timeout=2, context=insecure).close()
            break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"facegate web did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    return WebServer(url, folder, config, folder / "facegate.db", log, process)
