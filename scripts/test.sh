#!/usr/bin/env bash
# The whole test suite on a fresh Debian / Raspberry Pi OS machine: installs what it needs (venv,
# Mosquitto), the node with its test extra, then runs ruff, mypy and pytest.
cd "$(dirname "$0")/.."
source scripts/_setup.sh
pip_install -e '.[test]'
# systemd-analyze verifies the unit file, shellcheck the installer, and editcap/tshark (Wireshark's
# own tools) read the recordings: the tests that need them would skip without them.
if ! command -v systemd-analyze >/dev/null || ! command -v shellcheck >/dev/null; then
  echo "installing systemd tools and shellcheck (apt)" >&2; apt_install systemd shellcheck
fi
if ! command -v editcap >/dev/null || ! command -v tshark >/dev/null; then
  echo "installing Wireshark's command-line tools (apt)" >&2; apt_install tshark
fi
# Headless Chromium and its WebDriver: tests/test_web_browser.py loads the live view in a real browser.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing chromium and chromium-driver (apt)" >&2; apt_install chromium chromium-driver
fi
# protoc compiles the official SAPIENT .proto files for tests/test_sapient_proto.py.
if ! command -v protoc >/dev/null; then
  echo "installing protobuf-compiler (apt)" >&2; apt_install protobuf-compiler
fi
# The real peers of the real-time tests, each in a venv of its own so that its pinned
# dependencies never meet the node's: taky (PyPI, MIT), a small TAK server, for the
# Cursor-on-Target tests (../shared/peers/tak); Apex (Dstl/Roke, Apache-2.0), the SAPIENT
# middleware, made by its own setup.sh (protobuf 4.25, never the node's).
install_peers() {
  if [ ! -x .venv-taky/bin/taky ]; then
    echo "installing taky, the TAK server of the CoT tests (pip, .venv-taky)" >&2
    if ! { python3 -m venv .venv-taky && .venv-taky/bin/python -m pip install taky; } > .venv-taky.log 2>&1; then
      tail -n 40 .venv-taky.log >&2; echo "pip install taky failed (.venv-taky.log)" >&2; exit 1
    fi
  fi
  if [ ! -x .venv-apex/bin/python ] && [ -f ../shared/peers/sapient-apex/setup.sh ]; then
    echo "installing Apex, the SAPIENT middleware of the SAPIENT tests (pip, .venv-apex)" >&2
    if ! bash ../shared/peers/sapient-apex/setup.sh .venv-apex > .venv-apex.log 2>&1; then
      tail -n 40 .venv-apex.log >&2; echo "Apex setup failed (.venv-apex.log)" >&2; exit 1
    fi
  fi
}
# The checks, each command after the words given (`nice -n 10` beside the rest of pytest).
static_checks() { "$@" .venv/bin/ruff check && "$@" .venv/bin/ruff format --check && "$@" ./scripts/typecheck.sh; }
# With arguments (a file, -k, -m, ...): the checks, then one pytest run on every core, as they ask.
if [ "$#" -gt 0 ]; then
  install_peers
  static_checks
  exec .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadgroup "$@"
fi
# The whole suite: three jobs at once. The rest of pytest, CPU-bound and the longest, runs on
# every core (pytest-xdist) at a lower priority (nice 10), and so do ruff and mypy beside it. The
# modules that run a node in real time against brokers and peers (marked real_time:
# tests/conftest.py, REAL_TIME_MODULES) run one after another, once their peers are installed, in
# a process of their own at normal priority: mostly waiting, they leave a core partly idle, which
# the others take; when they want it, they get it. The reports of the checks and of the
# real-time run follow the rest's; the script fails if any of the three failed.
static_log=.venv/static-checks.log
real_time_log=.venv/pytest-real-time.log
static_checks nice -n 10 > "$static_log" 2>&1 &
static=$!
# (the peers' installs say so here, as they start; pytest's report goes to its log, emptied first
# so that a failed install never shows an earlier run's report)
: > "$real_time_log"
(install_peers; exec .venv/bin/python -m pytest -q -p no:cacheprovider -m real_time > "$real_time_log" 2>&1) &
real_time=$!
# Ctrl-C reaches every job; when the script ends otherwise (an error), it stops them.
trap 'kill "$static" "$real_time" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
rest_status=0
nice -n 10 .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadgroup -m "not real_time" \
  || rest_status=$?
static_status=0
wait "$static" || static_status=$?
real_time_status=0
wait "$real_time" || real_time_status=$?
echo; echo "== ruff and mypy (run alongside; log: $static_log) =="; cat "$static_log"
echo; echo "== the real-time modules (run alongside; log: $real_time_log) =="; cat "$real_time_log"
for status in "$static_status" "$rest_status" "$real_time_status"; do
  if [ "$status" -ne 0 ]; then exit "$status"; fi
done
