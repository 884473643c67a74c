"""Serial port failures turned into messages a technician can act on.

pyserial reports every failure as `could not open port X: [Errno N] ...`, which tells a
technician on a mast nothing about what to do. The failures on a real node are few and each has
one remedy: the device is not there (unplugged, USB hub browned out, udev rule missing), the
service user may not open it (not in `dialout`, or the Pi's serial console owns the UART), another
program holds it (gpsd, ModemManager, a second node, a serial terminal), or it went away while
being read. `port_error()` classifies by errno and gathers the facts that make the message
actionable (which `/dev/serial/by-id` names exist, the device's group, who holds the port).

Every exception here is a `serial.SerialException`, itself an `OSError`, so the runtime's
back-off loop treats it exactly like the raw pyserial error it replaces. docs/troubleshooting.md
lists every message with what to do.
"""

from __future__ import annotations

import errno as errno_mod
import grp
import os
import pwd
import stat
from pathlib import Path

import serial

SERVICE_USER = "cuas"
BY_ID_DIR = Path("/dev/serial/by-id")
CMDLINE = Path("/proc/cmdline")
PROC = Path("/proc")
PI_CONSOLE_UARTS = ("serial0", "serial1", "ttyAMA0", "ttyAMA10", "ttyS0")
"""Names of the Pi's own UARTs: the kernel console may sit on them (`console=serial0,115200`)."""

_MISSING = frozenset({errno_mod.ENOENT, errno_mod.ENODEV, errno_mod.ENXIO})
_PERMISSION = frozenset({errno_mod.EACCES, errno_mod.EPERM})
_BUSY = frozenset({errno_mod.EBUSY, errno_mod.EAGAIN, errno_mod.EWOULDBLOCK})
_NOT_A_TTY = frozenset({errno_mod.ENOTTY})


class PortError(serial.SerialException):
    """A serial port failure with an actionable message.

    `reason` is a stable key (`missing`, `permission`, `busy`, `not-a-tty`, `disconnected`,
    `other`) for tests and health consumers; `str(exc)` is the message for the log and the
    `health` topic's `detail`.
    """

    reason = "other"

    def __init__(self, message: str, *, port: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.port = port
        self.errno = errno


class PortMissing(PortError):
    reason = "missing"


class PortPermissionDenied(PortError):
    reason = "permission"


class PortBusy(PortError):
    reason = "busy"


class PortNotATty(PortError):
    reason = "not-a-tty"


class PortDisconnected(PortError):
    reason = "disconnected"


def error_errno(exc: BaseException) -> int | None:
    """The errno behind a pyserial or OS error, however deeply it was wrapped."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "errno", None)
        if isinstance(code, int):
            return code
        # pyserial passes (errno, message) as args to SerialException without setting .errno.
        args: tuple[object, ...] = tuple(getattr(current, "args", ()))
        if len(args) >= 2 and isinstance(args[0], int):
            return int(args[0])
        current = current.__cause__ or current.__context__
    return None


def by_id_names(by_id_dir: Path = BY_ID_DIR) -> list[str]:
    """`/dev/serial/by-id` entries with their targets: what is plugged in right now, by stable name."""
    try:
        entries = sorted(by_id_dir.iterdir())
    except OSError:
        return []
    out = []
    for entry in entries:
        try:
            out.append(f"{entry} -> {entry.resolve().name}")
        except OSError:
            out.append(str(entry))
    return out


def port_holders(device: str, proc: Path = PROC) -> list[str]:
    """`pid N (comm: cmdline)` of every process with `device` open, found through /proc/*/fd.

    Best effort: without root only our own processes are visible, so an empty list means
    "unknown", not "nobody".
    """
    try:
        target = os.path.realpath(device)
        pids = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return []
    out: list[str] = []
    for pid_dir in pids:
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != target:
                    continue
            except OSError:
                continue
            out.append(_describe_pid(pid_dir))
            break
    return out


def _describe_pid(pid_dir: Path) -> str:
    try:
        comm = (pid_dir / "comm").read_text().strip()
    except OSError:
        comm = "?"
    try:
        cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = ""
    me = " (this process)" if pid_dir.name == str(os.getpid()) else ""
    return f"pid {pid_dir.name}{me} ({comm}{': ' + cmdline[:120] if cmdline else ''})"


def console_conflict(port: str, cmdline: Path = CMDLINE, dev: Path = Path("/dev")) -> str:
    """The `console=...` token of the kernel command line that sits on `port`, or ""."""
    try:
        tokens = cmdline.read_text().split()
    except OSError:
        return ""
    path = Path(port)
    real = Path(os.path.realpath(port))
    for token in tokens:
        if not token.startswith("console="):
            continue
        device = token.split("=", 1)[1].split(",", 1)[0]
        candidate = dev / device
        if device in (path.name, real.name) or os.path.realpath(candidate) == str(real):
            return token
    return ""


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def missing_message(port: str, by_id: list[str] | None = None) -> str:
    names = by_id_names() if by_id is None else by_id
    present = "; ".join(names) if names else "none"
    msg = (
        f"serial port {port} does not exist: the sensor is unplugged, its cable, hub or power failed, "
        f"or the udev rule did not create the name. Serial devices present in /dev/serial/by-id: {present}. "
        "Check the cable, `dmesg | tail` and `ls -l /dev/cuas-*` (udev rules: docs/deployment.md)"
    )
    if Path(port).name in PI_CONSOLE_UARTS or Path(port).name.startswith("ttyAMA"):
        msg += (
            "; for the Pi's own UART enable it: `sudo raspi-config nonint do_serial_hw 0` "
            "(enable_uart=1 in /boot/firmware/config.txt), then reboot"
        )
    return msg


def permission_message(
    port: str,
    *,
    user: str | None = None,
    group: str | None = None,
    mode: str | None = None,
    member: bool | None = None,
    console: str | None = None,
) -> str:
    """The permission-denied message; facts not given are read from the machine."""
    real = os.path.realpath(port)
    user = user or _current_user()
    if group is None or mode is None:
        try:
            st = os.stat(real)
            mode = mode or stat.filemode(st.st_mode)
            group = group or grp.getgrgid(st.st_gid).gr_name
            if member is None:
                member = st.st_gid in {*os.getgroups(), os.getegid()}
        except (OSError, KeyError):
            group = group or "dialout"
            mode = mode or "?"
    if console is None:
        console = console_conflict(port)
    where = port if real == port else f"{port} (-> {real})"
    msg = f"permission denied opening serial port {where} (group {group}, mode {mode}) as user {user}: "
    if console:
        msg += (
            f"the Pi's serial console owns it ({console} in /proc/cmdline; /dev/serial0 is the GPIO UART). "
            "Remove the console: `sudo raspi-config nonint do_serial_cons 1` (drops console=serial0,115200 "
            "from /boot/firmware/cmdline.txt), keep the UART enabled, then reboot"
        )
        return msg
    if member:
        msg += f"{user} is in group {group} but the group may not read and write it; fix the udev rule's MODE"
    else:
        msg += (
            f"{user} is not in group {group}. Run `sudo usermod -aG {group} {user}` "
            f"(the service user: `sudo usermod -aG dialout {SERVICE_USER}`, done by systemd/install.sh) "
            "and restart the service; udev sets GROUP/MODE in /etc/udev/rules.d/99-cuas-node.rules"
        )
    return msg


def busy_message(port: str, holders: list[str] | None = None) -> str:
    found = port_holders(port) if holders is None else holders
    who = f"held by {', '.join(found)}" if found else f"held by another process (see `sudo fuser -v {port}`)"
    return (
        f"serial port {port} is busy, {who}: two readers would split the sensor's bytes between them. "
        "Stop the other program (a second cuas-node or `cuas-node doctor`, gpsd, ModemManager, "
        "a serial terminal such as screen or minicom), e.g. `sudo systemctl stop gpsd.socket gpsd`, "
        "or `sudo systemctl disable --now ModemManager`"
    )


def not_a_tty_message(port: str) -> str:
    return (
        f"{port} is not a serial device (a file or a wrong udev symlink): point `port` in the config at "
        "the sensor's /dev/cuas-* name or /dev/serial/by-id entry"
    )


def disconnected_message(port: str, detail: str) -> str:
    return (
        f"lost serial port {port} while reading ({detail}): unplugged, a USB reset or a power dip; "
        "the node reopens it with back-off"
    )


def port_error(port: str, exc: BaseException) -> PortError:
    """Classify an exception raised while opening `port` into an actionable `PortError`."""
    if isinstance(exc, PortError):
        return exc
    code = error_errno(exc)
    text = str(exc)
    if code in _MISSING:
        return PortMissing(missing_message(port), port=port, errno=code)
    if code in _PERMISSION:
        return PortPermissionDenied(permission_message(port), port=port, errno=code)
    if code in _BUSY or "exclusively lock" in text:
        return PortBusy(busy_message(port), port=port, errno=code)
    if code in _NOT_A_TTY or "Inappropriate ioctl" in text:
        return PortNotATty(not_a_tty_message(port), port=port, errno=code)
    return PortError(f"cannot open serial port {port}: {text}", port=port, errno=code)


def read_error(port: str, exc: BaseException) -> PortError:
    """An error while reading or writing an open port: the device went away."""
    if isinstance(exc, PortError):
        return exc
    return PortDisconnected(disconnected_message(port, str(exc)), port=port, errno=error_errno(exc))
