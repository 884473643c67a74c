"""`cuas-node doctor`: the checklist a technician runs on the mast before calling anyone.

Why a checklist with a fix on every line: the failures on a fresh node are nearly always the same
(a port that is not there or not readable by the service user, the Pi's serial console sitting on
the GPS UART, SPI not enabled, a broker certificate or password that does not match, a clock that
never synced, a full card) and each has a one-line remedy. Every line is PASS, WARN or FAIL; the
exit status is 1 when any line is FAIL, so the check can gate a provisioning script.

Run it as the service user for meaningful permission checks:
`sudo -u cuas /opt/cuas-node/venv/bin/cuas-node doctor`. Stop the service first for clean frame
checks (two readers on one serial port split its bytes between them).

The machine is reached only through `Probe` (commands, /proc/cmdline, /dev, group membership),
so the tests run every check against a fake one. The checks are grouped by subject in
`cuas_node.doctor_serial`, `cuas_node.doctor_platform`, `cuas_node.doctor_broker` and
`cuas_node.doctor_outputs` (on the shared base of
`cuas_node.doctor_checklist`); this module runs them in order and prints the report.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from cuas_node.config import Config, ConfigError, load_config
from cuas_node.doctor_broker import BrokerChecks
from cuas_node.doctor_broker import broker_check as broker_check
from cuas_node.doctor_checklist import SERVICE_USER as SERVICE_USER
from cuas_node.doctor_checklist import Check, Probe
from cuas_node.doctor_checklist import Status as Status
from cuas_node.doctor_outputs import OutputChecks
from cuas_node.doctor_platform import PlatformChecks
from cuas_node.doctor_serial import SerialSensorChecks
from cuas_node.preflight import startup_problems


class Doctor(SerialSensorChecks, PlatformChecks, BrokerChecks, OutputChecks):
    """The whole checklist: the config first (nothing else can run without it), then every group."""

    def __init__(self, config_path: Path, timeout_s: float = 5.0, probe: Probe | None = None) -> None:
        self.config_path = config_path
        super().__init__(timeout_s, probe)

    # -- the checklist -------------------------------------------------------------------------

    def check_startup(self, config: Config) -> None:
        """The checks `run` makes before connecting (`cuas_node.preflight`): what fails here makes
        `run` exit 78, so the doctor says it first, in the same words."""
        problems, notes = startup_problems(config)
        if problems:
            self.add(
                "FAIL",
                "start-up",
                "\n".join(problems),
                f"fix each file or key named; `cuas-node config check {self.config_path}` repeats the checks",
            )
        elif notes:
            self.add("WARN", "start-up", "\n".join(notes), "each note names the key to set or remove")
        else:
            self.add("PASS", "start-up", "secret, TLS and sensor files readable; state and spool writable")

    def run(self) -> list[Check]:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.add(
                "FAIL",
                "config",
                exc.render(),
                (f"edit {self.config_path}" if Path(self.config_path).exists() else
                 f"create {self.config_path} (the README's minimal config is a start)")
                + f" (every key: docs/config.md), then `cuas-node config check {self.config_path}`",
            )  # fmt: skip
            return self.checks
        self.add(
            "PASS",
            "config",
            f"{self.config_path}: node {config.node.id}, {len(config.sensors)} sensor(s)",
        )
        self.check_startup(config)
        self.check_service()
        reads = self.check_serial_sensors(config)
        self.check_buses(config)
        self.check_gpio(config)
        self.check_credentials(config)
        self.check_secret_files(config)
        self.check_broker(config)
        self.check_outputs(config)
        self.check_gps(config, reads)
        self.check_time()
        self.check_disk(config)
        self.check_memory_limit()
        self.check_web(config)
        return self.checks


def render(checks: Sequence[Check], out: TextIO) -> None:
    width = max((len(c.name) for c in checks), default=0)
    for c in checks:
        lines = c.message.splitlines() or [""]
        out.write(f"{c.status:<4}  {c.name:<{width}}  {lines[0]}\n")
        for extra in lines[1:]:
            out.write(f"{'':<4}  {'':<{width}}  {extra}\n")
        if c.fix and c.status != "PASS":
            out.write(f"{'':<4}  {'':<{width}}  fix: {c.fix}\n")
    fails = sum(c.status == "FAIL" for c in checks)
    warns = sum(c.status == "WARN" for c in checks)
    out.write(f"\n{fails} FAIL, {warns} WARN, {len(checks) - fails - warns} PASS\n")


def run_doctor(
    config_path: Path, timeout_s: float = 5.0, probe: Probe | None = None, out: TextIO | None = None
) -> int:
    checks = Doctor(config_path, timeout_s, probe).run()
    render(checks, out or sys.stdout)
    return 1 if any(c.status == "FAIL" for c in checks) else 0
