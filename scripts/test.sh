#!/usr/bin/env bash
# The whole test suite on a fresh Debian / Raspberry Pi OS machine: installs what it needs (venv,
# Mosquitto), the node with its test extra, then runs ruff, mypy and pytest.
cd "$(dirname "$0")/.."
source scripts/_setup.sh
pip_install -e '.[test]'
.venv/bin/ruff check
.venv/bin/ruff format --check
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
