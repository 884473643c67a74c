"""Doctor checks of the serial sensors: each port exists, is not the kernel console and is readable
by the user; then frames from every sensor at once; then the GPS fix those frames carried.

Why read real frames: a port that opens says nothing about the baud rate or a swapped TX/RX pair,
and a parser counter of well-formed records is the one proof the wiring is right.
"""

from __future__ import annotations

import grp
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cuas_node.config import Config
from cuas_node.doctor_checklist import SERVICE_USER, Checklist
from cuas_node.kernel.measurement import GpsFix

# Parser counters that only count well-formed records: any of them > 0 means the wiring and the
# baud rate are right, even before the sensor sees a target (a GPS without fix still talks).
_VALID_RECORD_COUNTERS = ("sentences", "frames", "records", "messages", "packets", "lines", "epochs")
_PI_CONSOLE_UARTS = ("serial0", "ttyAMA0", "ttyS0", "ttyAMA10")


@dataclass
class _PortRead:
    measurements: int = 0
    valid_records: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    fixes: list[GpsFix] = field(default_factory=list)
    error: str = ""


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
        reads: dict[str, _PortRead] = {}
        threads = [
            threading.Thread(target=self._read_frames, args=(sensor, reads), daemon=True)
            for sensor in to_read
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.timeout_s + 2.0)
        for sensor in to_read:
            self._report_frames(sensor, reads.get(sensor.id))
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

    def _read_frames(self, sensor: Any, reads: dict[str, _PortRead]) -> None:
        from cuas_node.driver_factory import UnsupportedSensor, build_driver
        from cuas_node.kernel.clock import SystemClock

        result = _PortRead()
        reads[sensor.id] = result
        try:
            driver = build_driver(sensor, SystemClock())
            driver.open()
        except (UnsupportedSensor, OSError, ValueError) as exc:
            result.error = str(exc)
            return
        except Exception as exc:  # pyserial's SerialException and driver-specific errors
            result.error = str(exc)
            return
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                for m in driver.read():
                    result.measurements += 1
                    if isinstance(m, GpsFix):
                        result.fixes.append(m)
                health = driver.health()
                result.counters = dict(health.counters)
                result.valid_records = sum(result.counters.get(k, 0) for k in _VALID_RECORD_COUNTERS)
                if result.valid_records and (sensor.kind != "nmea" or result.fixes):
                    break
        except Exception as exc:
            result.error = str(exc)
        finally:
            driver.close()

    def _report_frames(self, sensor: Any, read: _PortRead | None) -> None:
        name = f"{sensor.id} frames"
        if read is None:
            self.add("FAIL", name, "the read did not finish", "check dmesg for USB errors")
            return
        if read.error:
            self.add("FAIL", name, f"cannot read {sensor.port}: {read.error}", "check the cable and dmesg")
            return
        if read.valid_records or read.measurements:
            self.add(
                "PASS",
                name,
                f"{read.valid_records} valid record(s), {read.measurements} measurement(s) in "
                f"≤{self.timeout_s:g} s from {sensor.port}",
            )
            return
        errors = {
            k: v for k, v in read.counters.items() if v and ("error" in k or "dropped" in k or "resync" in k)
        }
        if errors:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(errors.items()))
            self.add(
                "FAIL",
                name,
                f"bytes arrive on {sensor.port} but no valid frame in {self.timeout_s:g} s ({detail})",
                f"wrong baud rate ({sensor.baudrate} configured) or the wrong port of the device "
                "(a radar's CLI and data UARTs swapped?)",
            )
            return
        fix = "check power and wiring (TX to RX), and the baud rate"
        if sensor.kind == "ti-mmwave":
            fix = "the radar streams only after its CLI port got the chirp config (sensorStart); check "
            fix += "config_port/cfg_file, that the out-of-box demo is flashed, and the SOP switches"
        self.add("FAIL", name, f"no data on {sensor.port} in {self.timeout_s:g} s", fix)

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
                self.add("FAIL", "GPS fix", f"{sensor.id}: no NMEA data (see the frames line above)")
