#!/usr/bin/env bash
# The demo: installs the node in .venv, starts a private Mosquitto on a free loopback port, runs
# `cuas-node sim demo` (a simulated mast: radar, microphone array, Remote ID, FPV scanner, GPS) and
# shows the live tracks and alerts.
# SPEED=3 ./scripts/demo.sh runs it three times faster than real time.
cd "$(dirname "$0")/.."
source scripts/_setup.sh
pip_install -e .
PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
WORK="$(mktemp -d)"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$WORK/mosquitto.conf"
"$CUAS_MOSQUITTO" -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
BROKER=$!
SIM=""
cleanup() { if [ -n "$SIM" ]; then kill "$SIM" 2>/dev/null || true; fi; kill "$BROKER" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
sleep 0.5
echo "broker on 127.0.0.1:$PORT; node log in $WORK/node.log; ground truth in $WORK/truth.jsonl"
# A fresh state directory per demo: a spool left by an earlier `sim demo` whose broker was
# unreachable must not replay that run's tracks and alerts into this one.
CUAS_NODE__STATE_DIR="$WORK/state" CUAS_MQTT__HOST=127.0.0.1 CUAS_MQTT__PORT="$PORT" CUAS_MQTT__HEALTH_INTERVAL_S=2 \
  .venv/bin/cuas-node sim demo --speed "${SPEED:-1}" --truth "$WORK/truth.jsonl" > "$WORK/node.log" 2>&1 &
SIM=$!
.venv/bin/cuas-node watch --host 127.0.0.1 --port "$PORT" --until-offline ${WATCH_ARGS:-}
echo "the demo's minute is over; node log in $WORK/node.log, ground truth in $WORK/truth.jsonl"
