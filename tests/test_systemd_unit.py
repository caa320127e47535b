"""The systemd unit (syntax, required settings, sandbox score), the install scripts, and sd_notify."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.hardware.notify import Notifier, watchdog_interval_s

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "facegate.service"
INSTALL = ROOT / "systemd" / "install.sh"
UNINSTALL = ROOT / "systemd" / "uninstall.sh"
EXECUTABLE = "/opt/facegate/venv/bin/facegate"
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd)",
)


def directives(text: str) -> dict[str, list[str]]:
    """Key -> every value it is given, in order (unit files may repeat keys)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


# --- the unit ---------------------------------------------------------------------------------


def test_unit_has_the_settings_the_service_relies_on():
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"]
    assert int(d["WatchdogSec"][0]) > 0
    assert d["ExecStart"] == [f"{EXECUTABLE} run --config /etc/facegate/config.toml"]
    assert d["ExecStartPre"][0].startswith(f"{EXECUTABLE} doctor")
    # A crashed or watchdog-killed process cannot relock: systemd runs `facegate lock` after any stop.
    assert d["ExecStopPost"] == [f"-{EXECUTABLE} lock --config /etc/facegate/config.toml"]
    # systemctl reload sends the SIGHUP that the service handles (tests/test_service_process.py).
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    assert "StartLimitIntervalSec" in d and "StartLimitBurst" in d
    assert d["User"] == ["facegate"]
    assert set(d["SupplementaryGroups"][0].split()) == {"gpio", "video"}
    assert d["StateDirectory"] == ["facegate"] and d["ConfigurationDirectory"] == ["facegate"]
    assert d["CapabilityBoundingSet"] == [""]
    assert d["DevicePolicy"] == ["closed"]
    allowed = " ".join(d["DeviceAllow"])
    for device in ("char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"):
        assert device in allowed
    assert d["UMask"] == ["0077"]
    assert d["SystemCallFilter"][0] == "@system-service"
    assert "AF_INET" not in d["RestrictAddressFamilies"][0]  # only the RTSP drop-in adds it


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


@needs_analyze
def test_unit_verifies(tmp_path):
    # verify checks that ExecStart exists and is executable; on a development machine it does not,
    # so point the unit at a stand-in executable and let verify judge everything else.
    stub = tmp_path / "facegate"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "facegate.service"
    unit.write_text(UNIT.read_text().replace(EXECUTABLE, str(stub)))
    result = analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # Messages about other units on this machine are not ours to judge.
        if "facegate" in line
    ]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


@needs_analyze
def test_unit_sandbox_exposure_is_low(tmp_path):
    result = analyze("security", "--offline=true", "--no-pager", str(UNIT), cwd=tmp_path)
    match = re.search(r"Overall exposure level for facegate\.service:\s*([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


WEB_UNIT = ROOT / "systemd" / "facegate-web.service"


def test_web_unit_has_network_but_no_devices():
    d = directives(WEB_UNIT.read_text())
    assert d["ExecStart"] == [f"{EXECUTABLE} web --config /etc/facegate/config.toml"]
    assert d["User"] == ["facegate"] and "SupplementaryGroups" not in d  # not in gpio or video
    assert d["StateDirectory"] == ["facegate"]  # the gallery, read-write
    assert d["PrivateDevices"] == ["yes"] and d["DevicePolicy"] == ["closed"] and "DeviceAllow" not in d
    assert "AF_INET" in d["RestrictAddressFamilies"][0] and "PrivateNetwork" not in d
    assert d["CapabilityBoundingSet"] == [""] and d["UMask"] == ["0077"]


@needs_analyze
def test_web_unit_verifies_and_its_sandbox_exposure_is_low(tmp_path):
    stub = tmp_path / "facegate"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "facegate-web.service"
    unit.write_text(WEB_UNIT.read_text().replace(EXECUTABLE, str(stub)))
    result = analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "facegate" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
    result = analyze("security", "--offline=true", "--no-pager", str(WEB_UNIT), cwd=tmp_path)
    match = re.search(r"Overall exposure level for facegate-web\.service:\s*([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


# --- install scripts -----------------------------------------------------------------------


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=lambda p: p.name)
def test_script_is_strict_executable_bash(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=lambda p: p.name)
def test_script_passes_shellcheck(script):
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_uninstall_keeps_gallery_and_config():
    for line in UNINSTALL.read_text().splitlines():
        code = line.strip()
        if code.startswith(("#", "say ")):
            continue
        assert "/var/lib/facegate" not in code and "/etc/facegate" not in code, line


def test_install_never_overwrites_an_existing_config():
    text = INSTALL.read_text()
    assert 'if [[ -e "$CONF_DIR/config.toml" ]]; then' in text
    assert "--system-site-packages" in text


# --- sd_notify ------------------------------------------------------------------------------


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_notifier_sends_each_message_as_one_datagram(listener):
    path, sock = listener
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready()
    notifier.status("camera ok\ngallery: 3 people")
    notifier.watchdog()
    notifier.stopping()
    notifier.ready(status="up")
    received = [sock.recv(4096) for _ in range(5)]
    notifier.close()
    notifier.close()
    assert received == [
        b"READY=1",
        b"STATUS=camera ok gallery: 3 people",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"READY=1\nSTATUS=up",
    ]


def test_notifier_abstract_socket():
    name = f"facegate-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        Notifier(env={"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_notifier_without_notify_socket_is_a_no_op():
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    notifier.ready()
    notifier.watchdog()


def test_notifier_failure_is_logged_once_not_raised(tmp_path, caplog):
    notifier = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="appliance.hardware.notify"):
        assert notifier.send("WATCHDOG=1") is False
        assert notifier.send("WATCHDOG=1") is False
    assert caplog.text.count("sd_notify") == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env, expected):
    assert watchdog_interval_s(env) == expected


# --- MemoryDenyWriteExecute ------------------------------------------------------------------

_UNDER_MDWE = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
# PR_SET_MDWE (65) with PR_MDWE_REFUSE_EXEC_GAIN (1): the kernel's own MemoryDenyWriteExecute.
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a W+X mapping was allowed: the check itself is broken")
except OSError:
    pass
import numpy as np
from appliance.vision.detector import MtcnnDetector
image = np.zeros((240, 320, 3), np.uint8)
image[60:180, 100:220] = 200
MtcnnDetector(threads=2).detect(image)  # XNNPACK with a thread pool
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v + 1)  # a libffi closure
assert callback(41) == 42
print("ok")
"""


def test_runtime_needs_no_writable_executable_memory(tmp_path):
    """The unit sets MemoryDenyWriteExecute=yes: the detector must run under that restriction."""
    if not list((ROOT / "models").glob("mtcnn_*.tflite")):
        pytest.skip("no detector models in models/ (run `make models`)")
    result = subprocess.run(
        [sys.executable, "-c", _UNDER_MDWE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or later needed)")
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr
