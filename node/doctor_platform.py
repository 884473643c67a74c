"""Doctor checks of the node's own platform: the running service, SPI/I2C buses, GPIO, clock
synchronisation, disk space and the live view's port. Each failure line names its one-line remedy on a Pi.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from cuas_node.config import Config
from cuas_node.doctor_checklist import SERVICE_USER, Checklist
from cuas_node.system_health import clock_sync, disk_space, existing_parent

_DISK_FAIL_BYTES = 100 * 1024 * 1024
_DISK_WARN_BYTES = 1024 * 1024 * 1024


class PlatformChecks(Checklist):
    """The service, buses, GPIO, time sync and disk of the machine the node runs on."""

    def check_service(self) -> None:
        state = (self.probe.run(["systemctl", "is-active", "cuas-node.service"]) or "").strip()
        self.service_active = state == "active"
        if state == "active":
            self.add(
                "WARN",
                "service",
                "cuas-node.service is running: it reads the same ports, so frame checks may miss bytes",
                "for a clean check: systemctl stop cuas-node; run doctor; systemctl start cuas-node",
            )

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
        from cuas_node.gpio import BlinkaBoard, GpioUnavailable

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

    def check_memory_limit(self) -> None:
        """The unit's MemoryHigh=/MemoryMax= need the kernel's memory cgroup, which Raspberry Pi
        kernels ship switched off: without it a leak or a flood can take the whole Pi down."""
        try:
            controllers = self.probe.cgroup_controllers.read_text().split()
        except OSError:
            return  # cgroup v1, or not Linux: systemd cannot apply the limits either way
        if "memory" in controllers:
            self.add("PASS", "memory limit", "memory cgroup on: the unit's MemoryHigh=/MemoryMax= apply")
        else:
            self.add(
                "WARN",
                "memory limit",
                "the kernel's memory cgroup is off: the unit's MemoryHigh=/MemoryMax= are not enforced",
                "add cgroup_enable=memory to the one line of /boot/firmware/cmdline.txt, then reboot",
            )

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

    def check_web(self, config: Config) -> None:
        """The live view's address and port can be had (`[web]`, docs/web.md): the node would run
        on without its page if another program held them."""
        web = config.web
        if not web.enabled:
            return
        where = f"{web.bind}:{web.port}"
        problem = port_problem(web.bind, web.port)
        if problem is None:
            self.add("PASS", "web", f"live view address {where} is free")
        elif getattr(self, "service_active", False) and "in use" in problem:
            self.add("WARN", "web", f"{where} is in use, probably by the running cuas-node.service")
        else:
            self.add(
                "FAIL",
                "web",
                f"cannot serve the live view on {where}: {problem}",
                f"find who holds it: `ss -ltnp 'sport = :{web.port}'`; stop that program or set web.port "
                "(or web.bind to an address of this machine)",
            )


def port_problem(host: str, port: int) -> str | None:
    """Why a TCP listener on (`host`, `port`) could not be opened now, or None when it could."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"address {host!r} not known ({exc.strerror})"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(address)
            sock.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is in use by another program"
            return exc.strerror or str(exc)
    return None
