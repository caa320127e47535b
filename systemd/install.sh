#!/usr/bin/env bash
# Install FaceGate as a systemd service on Raspberry Pi OS Bookworm (64-bit; 32-bit works with the
# tflite-runtime fallback). Run as root from the project folder: `sudo make install-service`.
# Safe to run again: it upgrades the code and the unit and keeps the config and the gallery.
set -euo pipefail

PREFIX=/opt/facegate
VENV="$PREFIX/venv"
CONF_DIR=/etc/facegate
STATE_DIR=/var/lib/facegate
UNIT_DIR=/etc/systemd/system
UNIT="$UNIT_DIR/facegate.service"
MQTT_UNIT="$UNIT_DIR/facegate-mqtt.service"
SYNC_UNIT="$UNIT_DIR/facegate-sync.service"
WEB_UNIT="$UNIT_DIR/facegate-web.service"
DROPIN_DIR="$UNIT_DIR/facegate.service.d"
SERVICE_USER=facegate
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'facegate install: %s\n' "$*"; }
die() { printf 'facegate install: error: %s\n' "$*" >&2; exit 1; }

[[ ${EUID:-$(id -u)} -eq 0 ]] || die "run as root: sudo make install-service"
command -v systemctl >/dev/null || die "systemctl not found: FaceGate's service needs systemd"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Raspberry Pi OS / Debian"
[[ -f "$SRC/pyproject.toml" && -f "$SRC/systemd/facegate.service" ]] || die "run it from a FaceGate checkout ($SRC)"
[[ -f "$SRC/config.toml" ]] || die "$SRC/config.toml is missing: it is the template for $CONF_DIR/config.toml"

# shellcheck disable=SC1091
. /etc/os-release
if [[ ${VERSION_CODENAME:-} != bookworm ]]; then
    say "warning: made for Raspberry Pi OS Bookworm; this is ${PRETTY_NAME:-an unknown system}"
fi
arch="$(dpkg --print-architecture)"

say "installing system packages (picamera2 and lgpio come from apt, matched to this kernel)"
apt-get update -q
packages=(python3-venv python3-pip)
# These two exist only in the Raspberry Pi archive (Pi OS); elsewhere, say what will not work.
if apt-cache show python3-lgpio >/dev/null 2>&1; then
    packages+=(python3-lgpio)
else
    say "warning: python3-lgpio is not in the apt sources: set [gpio] pin_factory to one you install"
fi
if apt-cache show python3-picamera2 >/dev/null 2>&1; then
    packages+=(python3-picamera2)
else
    say "warning: python3-picamera2 is not in the apt sources: only usb:N and stream cameras will work"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"

say "system user '$SERVICE_USER' in groups gpio and video"
for group in gpio video; do
    getent group "$group" >/dev/null || groupadd --system "$group"
done
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "FaceGate door access" "$SERVICE_USER"
fi
usermod --append --groups gpio,video "$SERVICE_USER"

say "virtual environment $VENV (--system-site-packages, to see apt's picamera2 and lgpio)"
install -d -m 0755 "$PREFIX"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv --system-site-packages "$VENV"
fi
# apt's picamera2 stack (simplejpeg, python3-av) is built against Debian's NumPy 1.x: a NumPy 2 in
# the venv would shadow it and break `import picamera2`, so NumPy stays below 2 here.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo 'numpy<2' >"$constraints"
if [[ $arch == armhf ]]; then
    # 32-bit Pi OS: no ai-edge-litert wheels; pyproject.toml selects tflite-runtime 2.14 instead.
    say "32-bit system: using tflite-runtime (needs numpy<2)"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet --upgrade --constraint "$constraints" "$SRC"

say "models and documentation in $PREFIX"
install -d -m 0755 "$PREFIX/models"
shopt -s nullglob
models=("$SRC"/models/*.tflite)
shopt -u nullglob
[[ ${#models[@]} -gt 0 ]] || die "no models in $SRC/models: run \`make models\` first"
install -m 0644 "${models[@]}" "$PREFIX/models/"
for extra in SHA256SUMS README.md; do
    [[ -f "$SRC/models/$extra" ]] && install -m 0644 "$SRC/models/$extra" "$PREFIX/models/"
done
[[ -f "$SRC/README.md" ]] && install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

say "configuration $CONF_DIR/config.toml and gallery folder $STATE_DIR"
install -d -m 0755 -o root -g root "$CONF_DIR"
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
if [[ -e "$CONF_DIR/config.toml" ]]; then
    say "keeping the existing $CONF_DIR/config.toml (compare with $SRC/config.toml for new keys)"
else
    # The template's relative paths would point into /etc, which the service cannot write.
    sed -e "s|^models_dir = .*|models_dir = \"$PREFIX/models\"|" \
        -e "s|^path = \"facegate.db\"|path = \"$STATE_DIR/facegate.db\"|" \
        -e 's|^pin_factory = .*|pin_factory = "lgpio"|' \
        "$SRC/config.toml" >"$CONF_DIR/config.toml.new"
    chown root:"$SERVICE_USER" "$CONF_DIR/config.toml.new"
    chmod 0640 "$CONF_DIR/config.toml.new"
    mv "$CONF_DIR/config.toml.new" "$CONF_DIR/config.toml"
    say "created $CONF_DIR/config.toml: set the GPIO pins there before the door is used"
fi

say "systemd unit $UNIT"
install -m 0644 "$SRC/systemd/facegate.service" "$UNIT"
# A network camera needs the network, which the unit otherwise denies entirely.
if grep -Eq '^[[:space:]]*source[[:space:]]*=[[:space:]]*"(rtsps?|https?)://' "$CONF_DIR/config.toml"; then
    say "the camera is a network stream: allowing IPv4/IPv6 in $DROPIN_DIR/network.conf"
    install -d -m 0755 "$DROPIN_DIR"
    cat >"$DROPIN_DIR/network.conf" <<'UNIT'
# Written by install.sh because the camera source is an rtsp:// or http(s):// URL.
[Unit]
Wants=network-online.target
After=network-online.target

[Service]
PrivateNetwork=no
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6
# Empty resets the unit's IPAddressDeny=any. Narrow it to the camera, e.g. IPAddressDeny=any
# plus IPAddressAllow=192.168.1.50, for a tighter sandbox.
IPAddressDeny=
UNIT
else
    rm -f "$DROPIN_DIR/network.conf"
    rmdir --ignore-fail-on-non-empty "$DROPIN_DIR" 2>/dev/null || true
fi

if grep -Eq '^[[:space:]]*relay_active_high[[:space:]]*=[[:space:]]*false' "$CONF_DIR/config.toml"; then
    # Until the service starts, the pin is an input with the Pi's default pull-down: low, which
    # switches an active-low relay ON. Make the firmware drive it high from power-on.
    say "warning: active-low relay: the door may be unlocked during boot, before FaceGate starts."
    say "  Add 'gpio=<relay_pin>=op,dh' to /boot/firmware/config.txt so the pin starts high (locked)."
fi

systemctl daemon-reload
systemctl enable facegate.service
say "starting facegate.service"
if systemctl restart facegate.service; then
    say "done. Follow it with: journalctl -u facegate -f"
else
    die "the service did not start: see \`systemctl status facegate\` and \`journalctl -u facegate -e\`"
fi

# The Home Assistant bridge: installed always, running only when [mqtt] host names a broker.
install -m 0644 "$SRC/systemd/facegate-mqtt.service" "$MQTT_UNIT"
systemctl daemon-reload
# host must be read inside [mqtt]: [web] has a host key of its own.
if awk '/^[[:space:]]*\[/ { section = $0 } section ~ /^[[:space:]]*\[mqtt\]/ && /^[[:space:]]*host[[:space:]]*=[[:space:]]*"[^"]+"/ { found = 1 } END { exit !found }' "$CONF_DIR/config.toml"; then
    say "[mqtt] host is set: starting facegate-mqtt.service (journalctl -u facegate-mqtt -f)"
    systemctl enable facegate-mqtt.service
    systemctl restart facegate-mqtt.service || say "warning: facegate-mqtt did not start: journalctl -u facegate-mqtt -e"
else
    systemctl disable --now facegate-mqtt.service 2>/dev/null || true
    say "MQTT is off; set [mqtt] host in $CONF_DIR/config.toml, then: systemctl enable --now facegate-mqtt"
fi

# Site replication (several doors): installed always, running only when [site] site_id is set.
install -m 0644 "$SRC/systemd/facegate-sync.service" "$SYNC_UNIT"
systemctl daemon-reload
if grep -Eq '^[[:space:]]*site_id[[:space:]]*=[[:space:]]*"[^"]+"' "$CONF_DIR/config.toml"; then
    say "[site] site_id is set: starting facegate-sync.service (journalctl -u facegate-sync -f)"
    systemctl enable facegate-sync.service
    systemctl restart facegate-sync.service || say "warning: facegate-sync did not start: journalctl -u facegate-sync -e"
else
    systemctl disable --now facegate-sync.service 2>/dev/null || true
fi

# The admin web page: installed, not started; it needs an admin password first.
install -m 0644 "$SRC/systemd/facegate-web.service" "$WEB_UNIT"
systemctl daemon-reload
say "admin web page: sudo -u facegate $PREFIX/venv/bin/facegate web --set-password --config $CONF_DIR/config.toml, then: systemctl enable --now facegate-web"
