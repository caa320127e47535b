#!/usr/bin/env bash
# Stop and remove the FaceGate service and its program files. Run as root: `sudo make uninstall-service`.
# Keeps the gallery (/var/lib/facegate), the config (/etc/facegate) and the facegate user.
set -euo pipefail

PREFIX=/opt/facegate
UNIT=/etc/systemd/system/facegate.service
DROPIN_DIR=/etc/systemd/system/facegate.service.d
MQTT_UNIT=/etc/systemd/system/facegate-mqtt.service

say() { printf 'facegate uninstall: %s\n' "$*"; }
die() { printf 'facegate uninstall: error: %s\n' "$*" >&2; exit 1; }

[[ ${EUID:-$(id -u)} -eq 0 ]] || die "run as root: sudo make uninstall-service"
command -v systemctl >/dev/null || die "systemctl not found"

if [[ -e $MQTT_UNIT ]]; then
    say "stopping and disabling facegate-mqtt.service (the Home Assistant bridge)"
    systemctl disable --now facegate-mqtt.service || true
fi
rm -f "$MQTT_UNIT"
SYNC_UNIT=/etc/systemd/system/facegate-sync.service
if [[ -e $SYNC_UNIT ]]; then
    say "stopping and disabling facegate-sync.service (site replication)"
    systemctl disable --now facegate-sync.service || true
fi
rm -f "$SYNC_UNIT"
WEB_UNIT=/etc/systemd/system/facegate-web.service
if [[ -e $WEB_UNIT ]]; then
    say "stopping and disabling facegate-web.service (the admin page)"
    systemctl disable --now facegate-web.service || true
fi
rm -f "$WEB_UNIT"
if [[ -e $UNIT ]]; then
    say "stopping and disabling facegate.service (the service locks the door as it stops)"
    systemctl stop facegate.service || true
    systemctl disable facegate.service || true
else
    say "facegate.service is not installed"
fi
rm -f "$UNIT"
rm -rf "$DROPIN_DIR"
systemctl daemon-reload
systemctl reset-failed facegate.service 2>/dev/null || true

if [[ -d $PREFIX ]]; then
    say "removing $PREFIX (virtual environment and models)"
    rm -rf "$PREFIX"
fi

say "done. Kept: /var/lib/facegate (the gallery: enrolled faces and the event log),"
say "/etc/facegate (the config) and the 'facegate' user. To erase them too:"
say "  sudo rm -rf /var/lib/facegate /etc/facegate && sudo userdel facegate"
