"""Doctor checks of the serial sensors: each port exists, is not the kernel console and is readable
by the user; then frames from every sensor at once; then the GPS fix those frames carried.

Why read real frames: a port that opens says nothing about the baud rate or a swapped TX/RX pair,
and a parser counter of well-formed records is the one proof the wiring is right. The drivers run
under the node's own supervision (`cuas_node.drivers.supervisor`) and are judged by the node's own
definitions: `valid_records`/`garbage` of `cuas_node.drivers.parsing` and the driver's `BaudWatch`
verdict, so `doctor` and the running node never disagree about a sensor.
"""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cuas_node.config import Config
from cuas_node.doctor_checklist import SERVICE_USER, Checklist
from cuas_node.drivers.driver import SensorDriver
from cuas_node.drivers.parsing import GARBAGE_COUNTERS, BaudWatch, garbage, valid_records
from cuas_node.drivers.supervisor import DriverSupervisor, run_until_done
from cuas_node.kernel.measurement import AnyMeasurement, GpsFix, SensorState, saw_something

_PI_CONSOLE_UARTS = ("serial0", "ttyAMA0", "ttyS0", "ttyAMA10")


@dataclass
class _PortRead:
    """What one sensor showed during the frame check (filled in by its supervisor's thread)."""

    kind: str = ""
    measurements: int = 0
    valid_records: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    fixes: list[GpsFix] = field(default_factory=list)
    state: SensorState = SensorState.DOWN
    detail: str = ""
    error: str = ""  # the driver could not even be built
    errors: dict[str, int] = field(default_factory=dict)  # the supervisor's counts (open/read/internal)
    last_error: str = ""

    def collect(self, m: AnyMeasurement) -> None:
        self.measurements += saw_something(m)
        if isinstance(m, GpsFix):
            self.fixes.append(m)

    def proven(self, driver: SensorDriver) -> bool:
        """After every read: note the driver's health; True once the sensor has proven its wiring
        (a valid record; for a GPS also a GGA, fix or not, for the fix check)."""
        health = driver.health()
        self.counters = dict(health.counters)
        self.state, self.detail = health.state, health.detail
        self.valid_records = valid_records(self.counters)
        return bool(self.valid_records) and (self.kind != "nmea" or bool(self.fixes))

    @property
    def wrong_baud(self) -> bool:
        """The driver's BaudWatch said so, or bytes came and all of them were garbage."""
        flagged = self.state == SensorState.DEGRADED and self.detail.startswith("receiving bytes")
        return flagged or (not self.valid_records and garbage(self.counters) > 0)


class SerialSensorChecks(Checklist):
    """Ports, frames and the GPS fix of the configured serial sensors."""

    def check_serial_sensors(self, config: Config) -> dict[str, _PortRead]:
        """Existence and permissions of every port, then frames from all sensors in parallel."""
        to_read: list[Any] = []
        for sensor in config.sensors:
            if not sensor.enabled:
                continue
            port = getattr(sensor, "port", None)
            config_port = getattr(sensor, "config_port", None)
            if config_port is not None:
                self.check_port(f"{sensor.id} config_port", str(config_port))
            if port is not None and self.check_port(f"{sensor.id} port", str(port)):
                to_read.append(sensor)
        reads = self._read_frames(to_read)
        for sensor in to_read:
            self._report_frames(sensor, reads[sensor.id])
        return reads

    def check_port(self, name: str, port: str) -> bool:
        path = Path(port)
        if not path.exists():
            fix = "plug the sensor in and check `ls -l /dev/cuas-*` and `dmesg | tail`; stable names come "
            fix += "from /etc/udev/rules.d/99-cuas-node.rules (docs/deployment.md)"
            if path.name in _PI_CONSOLE_UARTS or path.name.startswith("ttyAMA"):
                fix = "enable the UART: sudo raspi-config nonint do_serial_hw 0 (enable_uart=1), then reboot"
            self.add("FAIL", name, f"{port} does not exist", fix)
            return False
        real = path.resolve()
        console = self._console_conflict(path, real)
        if console:
            self.add(
                "FAIL",
                name,
                f"{port} ({real}) is also the kernel console ({console}): boot messages and a login "
                "prompt share the line with the sensor",
                "sudo raspi-config nonint do_serial_cons 1 (keeps the UART, removes the console: "
                "drop console=serial0,115200 from /boot/firmware/cmdline.txt), then reboot",
            )
            return False
        if not self.probe.access(real, os.R_OK | os.W_OK):
            try:
                gid = real.stat().st_gid
                group = grp.getgrgid(gid).gr_name
            except (OSError, KeyError):
                gid, group = -1, "?"
            member = gid in self.probe.groups()
            user = self.probe.user()
            why = (
                f"{user} is in group {group} but the group has no read/write permission"
                if member
                else f"{real} belongs to group {group} and {user} is not a member"
            )
            self.add(
                "FAIL",
                name,
                f"{port} is not readable and writable by {user}: {why}",
                f"sudo usermod -aG {group} {user} and log in again (the service user {SERVICE_USER} gets "
                "dialout from install.sh); udev sets GROUP/MODE in 99-cuas-node.rules",
            )
            return False
        self.add("PASS", name, f"{port}" + (f" → {real}" if real != path else "") + ": present, read/write")
        return True

    def _console_conflict(self, path: Path, real: Path) -> str:
        try:
            tokens = self.probe.cmdline.read_text().split()
        except OSError:
            return ""
        for token in tokens:
            if not token.startswith("console="):
                continue
            device = token.split("=", 1)[1].split(",", 1)[0]
            candidate = self.probe.dev / device
            if device in (path.name, real.name) or (candidate.exists() and candidate.resolve() == real):
                return token
        return ""

    def _read_frames(self, sensors: list[Any]) -> dict[str, _PortRead]:
        """Run every sensor's driver at once for up to `timeout_s`, under the node's supervision;
        a sensor stops as soon as it has proven itself."""
        from cuas_node.driver_factory import build_driver
        from cuas_node.kernel.clock import SystemClock

        clock = SystemClock()
        reads: dict[str, _PortRead] = {}
        loops: list[tuple[_PortRead, DriverSupervisor]] = []
        for sensor in sensors:
            read = reads[sensor.id] = _PortRead(kind=sensor.kind)
            try:
                driver = build_driver(sensor, clock)
            except Exception as exc:  # UnsupportedSensor, an unreadable static map or radar profile
                read.error = str(exc)
                continue
            watch = getattr(driver, "baud_watch", None)
            if isinstance(watch, BaudWatch):  # its verdict must come within the check's time
                watch.window_s = min(watch.window_s, self.timeout_s / 2)
            loops.append((read, DriverSupervisor(driver, read.collect, done=read.proven)))
        run_until_done([loop for _, loop in loops], self.timeout_s)
        for read, loop in loops:
            read.errors = dict(loop.stats.errors)
            read.last_error = loop.stats.last_error
        return reads

    def _report_frames(self, sensor: Any, read: _PortRead) -> None:
        name = f"{sensor.id} frames"
        port, timeout = sensor.port, f"{self.timeout_s:g}"
        if read.error:
            self.add("FAIL", name, f"cannot read {port}: {read.error}", "check the sensor's config entry")
            return
        got = f"{read.valid_records} valid record(s), {read.measurements} measurement(s) in ≤{timeout} s"
        internal = read.errors.get("internal", 0)
        if internal:  # a driver or parser bug: the node would lose this sensor (for a back-off) too
            self.add(
                "WARN" if read.measurements else "FAIL",
                name,
                f"the driver failed {internal} time(s) on {port} ({got}): {read.last_error}",
                "a bug in cuas-node's driver or parser: report it with the traceback from the log",
            )
            return
        if read.valid_records or read.measurements:
            self.add("PASS", name, f"{got} from {port}")
            return
        if read.counters.get(
            "unsupported_version"
        ):  # well-formed frames: the link is right, the firmware not
            detail = read.detail or "the radar sends frames of a firmware version cuas-node does not decode"
            self.add(
                "FAIL",
                name,
                f"{port}: {detail}",
                "reflash the radar with a supported out-of-box demo (SOP2 jumper, UniFlash); "
                "see docs/troubleshooting.md",
            )
            return
        if read.wrong_baud:
            bad = ", ".join(f"{k}={read.counters[k]}" for k in GARBAGE_COUNTERS if read.counters.get(k))
            verdict = f": {read.detail}" if read.detail.startswith("receiving bytes") else ""
            self.add(
                "FAIL",
                name,
                f"bytes arrive on {port} but no valid frame in {timeout} s ({bad}){verdict}",
                f"wrong baud rate ({sensor.baudrate} configured) or the wrong port of the device "
                "(a radar's CLI and data UARTs swapped?)",
            )
            return
        if read.errors:
            self.add("FAIL", name, f"cannot read {port}: {read.last_error}", "check the cable and dmesg")
            return
        seen = ", ".join(f"{k}={v}" for k, v in sorted(read.counters.items()) if v)
        if seen:
            self.add(
                "WARN",
                name,
                f"data arrives on {port} but no valid record in {timeout} s ({seen})",
                "the link works; check the sensor's output format and that it has something to report",
            )
            return
        fix = "check power and wiring (TX to RX), and the baud rate"
        if sensor.kind == "ti-mmwave":
            fix = "the radar streams only after its CLI port got the chirp config (sensorStart); check "
            fix += "config_port/cfg_file, that the out-of-box demo is flashed, and the SOP switches"
        self.add("FAIL", name, f"no data on {port} in {timeout} s", fix)

    def check_gps(self, config: Config, reads: dict[str, _PortRead]) -> None:
        gps = [s for s in config.sensors if s.enabled and s.kind == "nmea"]
        if not gps:
            if config.node.position is None:
                self.add(
                    "WARN",
                    "GPS fix",
                    "no GPS sensor and no node.position: tracks have no geographic position",
                    "add an nmea sensor or set node.position = { lat, lon, alt_m } from a survey",
                )
            else:
                self.add("PASS", "GPS fix", "no GPS sensor; node.position from config is used")
            return
        for sensor in gps:
            read = reads.get(sensor.id)
            fixes = [f for f in (read.fixes if read else []) if f.quality > 0]
            if fixes:
                last = fixes[-1]
                sats = f", {last.num_sats} satellites" if last.num_sats is not None else ""
                hdop = f", HDOP {last.hdop}" if last.hdop is not None else ""
                self.add("PASS", "GPS fix", f"{sensor.id}: fix quality {last.quality}{sats}{hdop}")
            elif read is not None and read.valid_records:
                self.add(
                    "WARN",
                    "GPS fix",
                    f"{sensor.id}: receiver talks but has no fix",
                    "give the antenna open sky; a cold start can take 15 minutes",
                )
            else:
                line = f"{sensor.id} {'port' if read is None else 'frames'}"  # (no port: not read)
                self.add("FAIL", "GPS fix", f"{sensor.id}: no NMEA data (see the {line} line above)")
