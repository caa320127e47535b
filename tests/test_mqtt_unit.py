"""systemd/facegate-mqtt.service (the bridge's unit) checked as the door's unit is in
tests/test_systemd_unit.py: the settings it relies on, `systemd-analyze verify`, and the sandbox score;
and the door's unit still without network, with the runtime folder for the door link."""

from __future__ import annotations

import re
from pathlib import Path

from test_systemd_unit import (
    EXECUTABLE,
    INSTALL,
    MAX_EXPOSURE,
    UNINSTALL,
    UNIT,
    analyze,
    directives,
    needs_analyze,
)

ROOT = Path(__file__).resolve().parents[1]
MQTT_UNIT = ROOT / "systemd" / "facegate-mqtt.service"


def test_bridge_unit_has_network_but_no_devices_no_gallery_and_no_groups():
    d = directives(MQTT_UNIT.read_text())
    assert d["ExecStart"] == [f"{EXECUTABLE} mqtt --config /etc/facegate/config.toml"]
    assert d["Restart"] == ["on-failure"] and "StartLimitBurst" in d
    assert d["User"] == ["facegate"] and "SupplementaryGroups" not in d  # not in gpio or video
    assert d["PrivateDevices"] == ["yes"] and d["DevicePolicy"] == ["closed"] and "DeviceAllow" not in d
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in d and "IPAddressDeny" not in d
    assert d["InaccessiblePaths"] == ["-/var/lib/facegate"]  # the face templates stay the door's
    assert "StateDirectory" not in d
    assert d["CapabilityBoundingSet"] == [""] and d["NoNewPrivileges"] == ["yes"]
    assert d["UMask"] == ["0077"] and d["SystemCallFilter"][0] == "@system-service"
    assert "network-online.target" in d["After"][0] and "facegate.service" in d["After"][0]
    assert "Requires" not in d  # the bridge outlives the door to report it down


def test_door_unit_keeps_no_network_and_makes_the_link_folder():
    d = directives(UNIT.read_text())
    assert "AF_INET" not in d["RestrictAddressFamilies"][0] and d["PrivateNetwork"] == ["yes"]
    assert d["RuntimeDirectory"] == ["facegate"] and d["RuntimeDirectoryMode"] == ["0750"]
    assert "--no-mqtt" in d["ExecStartPre"][0]  # its doctor cannot reach a broker


def test_install_scripts_handle_the_bridge_unit():
    install, uninstall = INSTALL.read_text(), UNINSTALL.read_text()
    assert 'install -m 0644 "$SRC/systemd/facegate-mqtt.service" "$MQTT_UNIT"' in install
    assert "systemctl enable facegate-mqtt.service" in install
    assert "systemctl disable --now facegate-mqtt.service" in uninstall and 'rm -f "$MQTT_UNIT"' in uninstall


@needs_analyze
def test_bridge_unit_verifies(tmp_path):
    stub = tmp_path / "facegate"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "facegate-mqtt.service"
    unit.write_text(MQTT_UNIT.read_text().replace(EXECUTABLE, str(stub)))
    result = analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "facegate" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


@needs_analyze
def test_bridge_unit_sandbox_exposure_is_low(tmp_path):
    result = analyze("security", "--offline=true", "--no-pager", str(MQTT_UNIT), cwd=tmp_path)
    match = re.search(r"Overall exposure level for facegate-mqtt\.service:\s*([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
