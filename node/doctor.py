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
so the tests run every check against a fake one.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from node.config import Config, ConfigError, load_config, read_password
from node.measurement import GpsFix
from node.system_health import Runner, clock_sync, disk_space, existing_parent, run_command

Status = Literal["PASS", "WARN", "FAIL"]

# Parser counters that only count well-formed records: any of them > 0 means the wiring and the
# baud rate are right, even before the sensor sees a target (a GPS without fix still talks).
_VALID_RECORD_COUNTERS = ("sentences", "frames", "records", "messages", "packets", "lines", "epochs")
_PI_CONSOLE_UARTS = ("serial0", "ttyAMA0", "ttyS0", "ttyAMA10")
_DISK_FAIL_BYTES = 100 * 1024 * 1024
_DISK_WARN_BYTES = 1024 * 1024 * 1024
SERVICE_USER = "cuas"


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
    groups: Callable[[], set[int]] = field(default=lambda: {*os.getgroups(), os.getegid()})
    user: Callable[[], str] = field(default=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    access: Callable[[Path, int], bool] = os.access


@dataclass
class _PortRead:
    measurements: int = 0
    valid_records: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    fixes: list[GpsFix] = field(default_factory=list)
    error: str = ""


class Doctor:
    def __init__(self, config_path: Path, timeout_s: float = 5.0, probe: Probe | None = None) -> None:
        self.config_path = config_path
        self.timeout_s = timeout_s
        self.probe = probe or Probe()
        self.checks: list[Check] = []

    def add(self, status: Status, name: str, message: str, fix: str = "") -> None:
        self.checks.append(Check(status, name, message, fix))

    # -- the checklist -------------------------------------------------------------------------

    def run(self) -> list[Check]:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.add(
                "FAIL",
                "config",
                exc.render(),
                f"edit {self.config_path} (every key: docs/config.md), then `cuas-node config check "
                f"{self.config_path}`",
            )
            return self.checks
        self.add(
            "PASS",
            "config",
            f"{self.config_path}: node {config.node.id}, {len(config.sensors)} sensor(s)",
        )
        self.check_service()
        reads = self.check_serial_sensors(config)
        self.check_buses(config)
        self.check_gpio(config)
        self.check_broker(config)
        self.check_gps(config, reads)
        self.check_time()
        self.check_disk(config)
        return self.checks

    def check_service(self) -> None:
        state = (self.probe.run(["systemctl", "is-active", "cuas-node.service"]) or "").strip()
        if state == "active":
            self.add(
                "WARN",
                "service",
                "cuas-node.service is running: it reads the same ports, so frame checks may miss bytes",
                "for a clean check: systemctl stop cuas-node; run doctor; systemctl start cuas-node",
            )

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
        from drivers.registry import UnsupportedSensor, build_driver
        from node.clock import SystemClock

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

    def check_buses(self, config: Config) -> None:
        dev = self.probe.dev
        spi_buses = sorted(
            {getattr(s, "bus", "spi0") for s in config.sensors if s.enabled and s.kind == "fpv-rx5808"}
        )
        for bus in spi_buses:
            index = bus.removeprefix("spi")
            nodes = sorted(dev.glob(f"spidev{index}.*"))
            if nodes:
                self.add("PASS", f"SPI {bus}", ", ".join(str(n) for n in nodes))
            else:
                enable = (
                    "sudo raspi-config nonint do_spi 0 (dtparam=spi=on)"
                    if index == "0"
                    else "add dtoverlay=spi1-1cs to /boot/firmware/config.txt"
                )
                self.add(
                    "FAIL", f"SPI {bus}", f"no {dev}/spidev{index}.* (SPI disabled)", f"{enable}, then reboot"
                )
        if not spi_buses:
            present = "enabled" if any(dev.glob("spidev*")) else "not enabled"
            self.add("PASS", "SPI", f"not used by this config ({present})")
        i2c = "enabled" if any(dev.glob("i2c-*")) else "not enabled"
        self.add(
            "PASS", "I2C", f"not used by this config ({i2c}; sudo raspi-config nonint do_i2c 0 enables it)"
        )

    def check_gpio(self, config: Config) -> None:
        cfg = config.gpio
        if not cfg.enabled:
            return
        if cfg.backend == "fake":
            self.add(
                "WARN",
                "GPIO",
                'backend = "fake": the LED, alert and tamper pins are not driven',
                'set gpio.backend = "blinka"',
            )
            return
        from node.gpio import BlinkaBoard, GpioUnavailable

        try:
            BlinkaBoard().close()
        except GpioUnavailable as exc:
            self.add(
                "FAIL",
                "GPIO",
                str(exc),
                "on a Pi: sudo apt install python3-lgpio (Pi 5) or reinstall with install.sh; the user needs "
                "group gpio",
            )
            return
        pins = [p for p in (cfg.status_led_pin, cfg.alert_pin, cfg.tamper_pin) if p]
        self.add("PASS", "GPIO", f"Blinka available; pins {', '.join(pins) or 'none'} configured")

    def check_broker(self, config: Config) -> None:
        mqtt = config.mqtt
        where = f"{mqtt.host}:{mqtt.port}" + (" (TLS)" if mqtt.tls else "")
        status, message, fix = broker_check(config, self.timeout_s)
        self.add(status, "broker", f"{where}: {message}", fix)

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

    def check_time(self) -> None:
        sync = clock_sync(self.probe.run)
        if sync is None:
            self.add(
                "WARN",
                "time sync",
                "cannot tell: neither `chronyc tracking` nor `timedatectl show` answered",
                "sudo apt install chrony",
            )
        elif sync["synced"]:
            offset = f", offset {sync['offset_s'] * 1000:.1f} ms" if "offset_s" in sync else ""
            self.add("PASS", "time sync", f"synchronised ({sync['source']}{offset})")
        else:
            self.add(
                "FAIL",
                "time sync",
                f"clock not synchronised ({sync['source']}): track times would be wrong",
                "check NTP reachability (`chronyc sources -v` or `timedatectl timesync-status`); off-grid, "
                "feed chrony from the GPS (gpsd + PPS)",
            )

    def check_disk(self, config: Config) -> None:
        target = getattr(config.node, "spool_dir", None) or config.node.state_dir
        target = Path(target)
        space = disk_space(target)
        if space is None:
            self.add("WARN", "disk", f"cannot stat the filesystem of {target}")
            return
        free, total = space
        text = f"{free / 1e9:.2f} GB free of {total / 1e9:.1f} GB at {existing_parent(target)}"
        if free < _DISK_FAIL_BYTES:
            self.add(
                "FAIL", "disk", text + ": the spool cannot hold an outage", "free space or use a larger card"
            )
        elif free < _DISK_WARN_BYTES:
            self.add("WARN", "disk", text + ": little room for the spool", "free space or use a larger card")
        else:
            self.add("PASS", "disk", text)
        state = config.node.state_dir
        if state.exists() and not self.probe.access(state, os.W_OK | os.X_OK):
            self.add(
                "WARN",
                "state dir",
                f"{state} is not writable by {self.probe.user()} (fine if you are not the service user)",
                f"run doctor as the service user: sudo -u {SERVICE_USER} cuas-node doctor",
            )


def broker_check(config: Config, timeout_s: float) -> tuple[Status, str, str]:
    """Connect once with the node's TLS and credentials (under a `-doctor` client id, so a running
    node is not kicked off), and classify what went wrong."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    mqtt = config.mqtt
    client_id = (mqtt.client_id or f"cuas-node-{config.node.id}") + "-doctor"
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
    )
    client.connect_timeout = timeout_s
    try:
        if mqtt.username is not None:
            client.username_pw_set(mqtt.username, read_password(mqtt))
        if mqtt.tls:
            client.tls_set(
                ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None,
                certfile=str(mqtt.cert_file) if mqtt.cert_file else None,
                keyfile=str(mqtt.key_file) if mqtt.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
    except ConfigError as exc:
        return "FAIL", "; ".join(exc.problems), "fix mqtt.password_file (readable by the service user)"
    except (OSError, ssl.SSLError) as exc:
        return "FAIL", f"cannot load TLS files: {exc}", "check mqtt.ca_file, cert_file, key_file"
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        outcome["reason"] = reason
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=max(5, int(timeout_s) + 5))
    except ssl.SSLCertVerificationError as exc:
        return (
            "FAIL",
            f"TLS certificate not accepted: {exc.verify_message}",
            "set mqtt.ca_file to the CA that signed the broker's certificate; check the host name and the "
            "clock (an unsynced clock makes valid certificates look expired)",
        )
    except ssl.SSLError as exc:
        return (
            "FAIL",
            f"TLS handshake failed: {exc}",
            "is the port a TLS listener? (8883 usually is, 1883 is not)",
        )
    except socket.gaierror as exc:
        return "FAIL", f"host name does not resolve: {exc}", "check mqtt.host and DNS (/etc/resolv.conf)"
    except ConnectionRefusedError:
        return "FAIL", "connection refused", "check mqtt.port and that the broker runs and listens there"
    except (TimeoutError, OSError) as exc:
        return "FAIL", f"unreachable: {exc}", "check the network path and firewall to the broker"
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            return "FAIL", f"no CONNACK in {timeout_s:g} s", "is this an MQTT port? check mqtt.tls"
        reason = outcome["reason"]
        if getattr(reason, "is_failure", False):
            text = str(reason)
            fix = "check mqtt.username and the password file"
            if "authori" in text.lower() and mqtt.username is not None:
                fix += ", and the broker's ACL for this client id"
            return "FAIL", f"broker refused the connection: {text}", fix
        return "PASS", "connected" + (" with credentials" if mqtt.username else ""), ""
    finally:
        client.disconnect()
        client.loop_stop()


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
