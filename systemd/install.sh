#!/usr/bin/env bash
# Install (or upgrade, or remove) cuas-node as a systemd service on Raspberry Pi OS / Debian.
#
#   sudo systemd/install.sh              install or upgrade; safe to run again at any time
#   sudo systemd/install.sh --uninstall  remove everything but the config and the data
#   systemd/install.sh --root DIR        write the files under DIR and only print the system commands
#                                        (useradd, systemctl, udevadm, pip): image builds and tests
#   systemd/install.sh --dry-run         print every step, change nothing
#
# What it sets up (docs/deployment.md explains each piece):
#   user `cuas` (groups dialout gpio spi i2c), venv /opt/cuas-node/venv with this source tree,
#   /etc/cuas-node/config.toml (from config.example.toml, only if absent: never overwritten),
#   /var/lib/cuas-node (state) and /var/lib/cuas-node/spool, udev rules for stable sensor names,
#   the owner and mode of secret files already in /etc/cuas-node (root:cuas 0640),
#   and the unit cuas-node.service, enabled (started by you once the config is filled in).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
DRY_RUN=0
UNINSTALL=0
PYTHON="${PYTHON:-python3}"

SERVICE_USER="cuas"
EXTRA_GROUPS=(dialout gpio spi i2c)
PREFIX="/opt/cuas-node"
CONF_DIR="/etc/cuas-node"
STATE_DIR="/var/lib/cuas-node"
UNIT_DIR="/etc/systemd/system"
UDEV_DIR="/etc/udev/rules.d"
UNIT="cuas-node.service"
RULES="99-cuas-node.rules"
# Secret files in $CONF_DIR, by the names docs/deployment.md gives them.
SECRET_FILES=(mqtt-password command-hmac.key mqtt-client.key)

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }
            ROOT="$(cd "$2" && pwd)"; shift 2 ;;
    --root=*) ROOT="$(cd "${1#--root=}" && pwd)"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$ROOT" = "/" ]; then ROOT=""; fi

say() { printf 'install.sh: %s\n' "$*"; }

# A system command (users, services, udev, pip): run it, or only print it with --root/--dry-run.
sys() {
  if [ -n "$ROOT" ] || [ "$DRY_RUN" = 1 ]; then
    printf 'would run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# A file operation under $ROOT: run it, or only print it with --dry-run.
fs() {
  if [ "$DRY_RUN" = 1 ]; then
    printf 'would run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

have() { command -v "$1" >/dev/null 2>&1; }
systemd_running() { [ -d /run/systemd/system ]; }

if [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo $0 $*), or use --root DIR / --dry-run" >&2
  exit 1
fi

uninstall() {
  if [ -e "$ROOT$UNIT_DIR/$UNIT" ]; then
    if systemd_running && [ -z "$ROOT" ]; then
      sys systemctl disable --now "$UNIT" || true
    else
      sys systemctl disable "$UNIT" || true
    fi
  fi
  fs rm -f "$ROOT$UNIT_DIR/$UNIT" "$ROOT$UDEV_DIR/$RULES"
  if systemd_running; then sys systemctl daemon-reload; fi
  if have udevadm; then sys udevadm control --reload || true; fi
  case "$PREFIX" in /opt/?*) ;; *) echo "install.sh: refusing to remove $PREFIX" >&2; exit 1 ;; esac
  fs rm -rf "$ROOT$PREFIX"
  if id -u "$SERVICE_USER" >/dev/null 2>&1; then sys userdel "$SERVICE_USER" || true; fi
  say "removed the service, udev rules, $PREFIX and the user $SERVICE_USER"
  say "kept: $ROOT$CONF_DIR (config) and $ROOT$STATE_DIR (state and spool); delete them by hand if wanted"
}

install_node() {
  # 1. Python's venv module (Debian splits it out).
  if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    sys apt-get install -y python3-venv
  fi

  # 2. The service user and its groups (Debian has no gpio/spi/i2c groups; Raspberry Pi OS has).
  for group in "${EXTRA_GROUPS[@]}"; do
    if ! getent group "$group" >/dev/null; then sys groupadd --system "$group"; fi
  done
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    sys useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "cuas-node service" "$SERVICE_USER"
  fi
  sys usermod --append --groups "$(IFS=,; echo "${EXTRA_GROUPS[*]}")" "$SERVICE_USER"

  # 3. Directories: code root-owned, config readable by the service, state writable by it only.
  fs install -d -m 0755 "$ROOT$PREFIX" "$ROOT$PREFIX/share"
  fs install -d -m 0750 "$ROOT$CONF_DIR" "$ROOT$STATE_DIR" "$ROOT$STATE_DIR/spool"
  sys chown "root:$SERVICE_USER" "$ROOT$CONF_DIR"
  sys chown -R "$SERVICE_USER:$SERVICE_USER" "$ROOT$STATE_DIR"

  # 4. The virtual environment with this source tree (an upgrade reinstalls the node itself).
  if [ ! -x "$ROOT$PREFIX/venv/bin/python" ]; then
    sys "$PYTHON" -m venv "$ROOT$PREFIX/venv"
  fi
  sys "$ROOT$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip
  sys "$ROOT$PREFIX/venv/bin/python" -m pip install --quiet "$SRC"
  sys "$ROOT$PREFIX/venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$SRC"

  # 5. Config: the example is refreshed, the real file is created once and never overwritten.
  fs install -m 0644 "$SRC/systemd/config.example.toml" "$ROOT$PREFIX/share/config.example.toml"
  fs install -m 0644 "$SRC/systemd/config.example.toml" "$ROOT$CONF_DIR/config.example.toml"
  if [ -e "$ROOT$CONF_DIR/config.toml" ]; then
    say "keeping the existing $ROOT$CONF_DIR/config.toml"
  else
    fs install -m 0640 "$SRC/systemd/config.example.toml" "$ROOT$CONF_DIR/config.toml"
    sys chown "root:$SERVICE_USER" "$ROOT$CONF_DIR/config.toml"
    if [ "$DRY_RUN" = 1 ]; then
      say "would create $ROOT$CONF_DIR/config.toml from the example"
    else
      say "created $ROOT$CONF_DIR/config.toml from the example: edit it before starting the node"
    fi
  fi

  # 5b. Secret files (the broker password, the commands HMAC key, a TLS client key), when present:
  #     one owner and mode for all, root:cuas 0640. root owns them, so the service cannot rewrite
  #     its own secrets; the service's group reads them; nobody else can (docs/deployment.md).
  for secret in "${SECRET_FILES[@]}"; do
    if [ -f "$ROOT$CONF_DIR/$secret" ]; then
      sys chown "root:$SERVICE_USER" "$ROOT$CONF_DIR/$secret"
      fs chmod 0640 "$ROOT$CONF_DIR/$secret"
      say "secret $ROOT$CONF_DIR/$secret: root:$SERVICE_USER 0640"
    fi
  done

  # 6. udev rules for stable sensor names, then the unit.
  fs install -d -m 0755 "$ROOT$UDEV_DIR" "$ROOT$UNIT_DIR"
  fs install -m 0644 "$SRC/systemd/$RULES" "$ROOT$UDEV_DIR/$RULES"
  if have udevadm; then
    sys udevadm control --reload
    sys udevadm trigger --action=add --subsystem-match=tty --subsystem-match=spidev \
      --subsystem-match=i2c-dev --subsystem-match=gpio
  fi
  fs install -m 0644 "$SRC/systemd/$UNIT" "$ROOT$UNIT_DIR/$UNIT"
  if systemd_running && [ -z "$ROOT" ]; then
    sys systemctl daemon-reload
    sys systemctl enable "$UNIT"
    sys systemctl try-restart "$UNIT"   # an upgrade restarts a running node; a new one stays stopped
  else
    sys systemctl enable "$UNIT"
  fi

  say "installed. Next: edit $CONF_DIR/config.toml (and $CONF_DIR/mqtt-password, root:$SERVICE_USER 0640),"
  say "  then: sudo -u $SERVICE_USER $PREFIX/venv/bin/cuas-node doctor && sudo systemctl start $UNIT"
}

if [ "$UNINSTALL" = 1 ]; then
  uninstall
else
  install_node
fi
