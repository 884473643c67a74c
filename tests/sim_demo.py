"""`cuas-node sim demo` as a user runs it, against a test broker: the end-to-end tests' node."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import MosquittoBroker


def start_sim_demo(
    broker: MosquittoBroker, tmp_path: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """The node on the simulated mast, publishing to `broker`, its state under `tmp_path`, with
    `env` (configuration from the environment, docs/config.md) added; output on `stdout`."""
    full = dict(
        os.environ,
        CUAS_MQTT__HOST=broker.host,
        CUAS_MQTT__PORT=str(broker.port),
        XDG_STATE_HOME=str(tmp_path / "state"),
        **(env or {}),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cuas_node.cli", "sim", "demo", *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
