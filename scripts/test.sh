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
# On every core (pytest-xdist): most of the suite's time is spent waiting on brokers, peers and
# nodes running in real time, not computing. The real-time end-to-end modules share one worker
# (tests/conftest.py, REAL_TIME_MODULES) so that they never compete with each other for the CPU.
.venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadgroup "$@"
