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
# taky (PyPI, MIT), a small TAK server, is the real peer of the Cursor-on-Target tests: it lives in
# a venv of its own so that its pinned dependencies never meet the node's (../shared/peers/tak).
if [ ! -x .venv-taky/bin/taky ]; then
  echo "installing taky, the TAK server of the CoT tests (pip, .venv-taky)" >&2
  python3 -m venv .venv-taky
  if ! .venv-taky/bin/python -m pip install taky > .venv-taky/pip.log 2>&1; then
    tail -n 40 .venv-taky/pip.log >&2; echo "pip install taky failed (.venv-taky/pip.log)" >&2; exit 1
  fi
fi
# Apex (Dstl/Roke, Apache-2.0), the SAPIENT middleware, is the real peer of the SAPIENT tests: its
# own setup.sh makes its venv with its pinned dependencies (protobuf 4.25, never the node's).
if [ ! -x .venv-apex/bin/python ] && [ -f ../shared/peers/sapient-apex/setup.sh ]; then
  echo "installing Apex, the SAPIENT middleware of the SAPIENT tests (pip, .venv-apex)" >&2
  if ! bash ../shared/peers/sapient-apex/setup.sh .venv-apex > .venv-apex.log 2>&1; then
    tail -n 40 .venv-apex.log >&2; echo "Apex setup failed (.venv-apex.log)" >&2; exit 1
  fi
fi
# protoc compiles the official SAPIENT .proto files for tests/test_sapient_proto.py.
if ! command -v protoc >/dev/null; then
  echo "installing protobuf-compiler (apt)" >&2; apt_install protobuf-compiler
fi
.venv/bin/ruff check
.venv/bin/ruff format --check
./scripts/typecheck.sh
# With arguments (a file, -k, -m, ...): one pytest run on every core, as they ask.
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadgroup "$@"
fi
# The whole suite: two pytest runs at once. The modules that run a node in real time against
# brokers and peers (marked real_time: tests/conftest.py, REAL_TIME_MODULES) run one after another
# in a process of their own at normal priority: mostly waiting, they leave a core partly idle. The
# rest, CPU-bound, runs on every core (pytest-xdist) at a lower priority (nice 10): it takes the
# CPU they leave and, when they want it, gets little of theirs. The real-time run's report
# follows the other's.
real_time_log=.venv/pytest-real-time.log
.venv/bin/python -m pytest -q -p no:cacheprovider -m real_time > "$real_time_log" 2>&1 &
real_time=$!
# (a background job of a script ignores Ctrl-C: stop it with the script)
trap 'kill "$real_time" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
rest_status=0
nice -n 10 .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadgroup -m "not real_time" \
  || rest_status=$?
real_time_status=0
wait "$real_time" || real_time_status=$?
echo; echo "== the real-time modules (run alongside; log: $real_time_log) =="; cat "$real_time_log"
if [ "$rest_status" -ne 0 ]; then exit "$rest_status"; fi
exit "$real_time_status"
