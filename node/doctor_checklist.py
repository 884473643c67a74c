"""The vocabulary of `cuas-node doctor`: a check line, the probe through which every check reaches
the machine, and the base class the groups of checks share.

Why a `Probe`: the machine is reached only through it (commands, /proc/cmdline, /dev, group
membership), so the tests run every check against a fake one.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cuas_node.preflight import SERVICE_USER as SERVICE_USER
from cuas_node.preflight import Identity
from cuas_node.system_health import Runner, run_command

Status = Literal["PASS", "WARN", "FAIL"]


@dataclass
class Check:
    status: Status
    name: str
    message: str
    fix: str = ""


@dataclass
class Probe:
    """Everything the doctor reads from the machine, replaceable in tests."""

    run: Runner = run_command
    cmdline: Path = Path("/proc/cmdline")
    dev: Path = Path("/dev")
    cgroup_controllers: Path = Path("/sys/fs/cgroup/cgroup.controllers")  # cgroup v2's controllers
    groups: Callable[[], set[int]] = field(default=lambda: {*os.getgroups(), os.getegid()})
    user: Callable[[], str] = field(default=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    access: Callable[[Path, int], bool] = os.access
    # Who may own a secret file and whose group may read it: root, this user and the service user.
    identity: Callable[[], Identity] = Identity.service


class Checklist:
    """The lines found so far, and what every group of checks needs to find more: the probe and the
    time a check may wait for a device or the broker. `Doctor` combines the groups."""

    def __init__(self, timeout_s: float = 5.0, probe: Probe | None = None) -> None:
        self.timeout_s = timeout_s
        self.probe = probe or Probe()
        self.checks: list[Check] = []

    def add(self, status: Status, name: str, message: str, fix: str = "") -> None:
        self.checks.append(Check(status, name, message, fix))
