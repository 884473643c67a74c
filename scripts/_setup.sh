# Shared by demo.sh and test.sh: make sure Python's venv and Mosquitto are installed, then create
# .venv and install the node into it. Sourced, not run.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "installing python3-venv (apt)" >&2; apt_install python3-venv
fi
MOSQUITTO="$(command -v mosquitto || true)"
[ -n "$MOSQUITTO" ] || { [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto; } || true
if [ -z "$MOSQUITTO" ]; then
  echo "installing mosquitto (apt)" >&2; apt_install mosquitto
  # Debian starts a system broker on port 1883 when it installs the package; we use our own.
  MOSQUITTO=/usr/sbin/mosquitto
fi
export CUAS_MOSQUITTO="$MOSQUITTO"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
pip_install() {
  # pip's build warnings are noise for a user; its log is kept and shown if the install fails.
  if ! .venv/bin/python -m pip install "$@" > .venv/pip.log 2>&1; then
    tail -n 40 .venv/pip.log >&2
    echo "pip install failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
}
