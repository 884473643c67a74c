"""The Pi itself, for the `health` topic and `cuas-node doctor`: load, temperature, throttling,
clock sync and disk space.

Why this matters on a mast: an under-volted or overheating Pi throttles and drops radar frames; an
unsynced clock puts tracks in the wrong place in time for the central server; a full SD card stops
the spool. Every probe is optional: what a machine cannot tell (no `vcgencmd` off a Pi, no chrony)
is left out, never reported as 0. Commands run with a short timeout, and `SystemMonitor` refreshes
them on its own thread so the fusion thread never waits on a subprocess.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], str | None]
"""Runs a command and returns its stdout, or None if it is missing, fails or times out."""

_TIMEOUT_S = 2.0

# `vcgencmd get_throttled` bits (Raspberry Pi firmware): 0..3 now, 16..19 since boot.
THROTTLE_FLAGS = {
    0: "under_voltage",
    1: "arm_freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
}


def run_command(argv: Sequence[str]) -> str | None:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
            env={"LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def cpu_load() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def cpu_temperature_c(thermal: Path = Path("/sys/class/thermal")) -> float | None:
    """The CPU's temperature: the zone typed `cpu-thermal` (Pi) or `x86_pkg_temp`, else the first."""
    zones = sorted(thermal.glob("thermal_zone*"))
    preferred = [z for z in zones if _read(z / "type") in ("cpu-thermal", "x86_pkg_temp", "soc_thermal")]
    for zone in preferred + zones:
        raw = _read(zone / "temp")
        if raw is not None:
            try:
                return round(int(raw) / 1000.0, 1)
            except ValueError:
                continue
    return None


def parse_throttled(text: str) -> dict[str, list[str]] | None:
    """`throttled=0x50005` → {"now": ["under_voltage", "throttled"], "since_boot": [...]}."""
    _, _, value = text.strip().partition("=")
    try:
        bits = int(value, 16)
    except ValueError:
        return None
    return {
        "now": [name for bit, name in THROTTLE_FLAGS.items() if bits & (1 << bit)],
        "since_boot": [name for bit, name in THROTTLE_FLAGS.items() if bits & (1 << (bit + 16))],
    }


def throttling(run: Runner = run_command) -> dict[str, list[str]] | None:
    out = run(["vcgencmd", "get_throttled"])
    return parse_throttled(out) if out else None


def parse_chrony(text: str) -> dict[str, Any] | None:
    """`chronyc tracking`: synced when the leap status is Normal and there is a reference.

    The offset is "System time: N seconds fast/slow of NTP time" (positive = fast)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "Leap status" not in fields:
        return None
    ref = fields.get("Reference ID", "")
    synced = fields["Leap status"] == "Normal" and not ref.startswith("00000000")
    out: dict[str, Any] = {"synced": synced, "source": "chrony"}
    parts = fields.get("System time", "").split()
    if len(parts) >= 3:
        try:
            offset = float(parts[0])
            out["offset_s"] = offset if parts[2] == "fast" else -offset
        except ValueError:
            pass
    if fields.get("Stratum", "").isdigit():
        out["stratum"] = int(fields["Stratum"])
    return out


def parse_timedatectl(text: str) -> dict[str, Any] | None:
    """`timedatectl show`: `NTPSynchronized=yes|no`."""
    for line in text.splitlines():
        if line.startswith("NTPSynchronized="):
            return {"synced": line.split("=", 1)[1].strip() == "yes", "source": "timedatectl"}
    return None


def clock_sync(run: Runner = run_command) -> dict[str, Any] | None:
    """Chrony first (it also gives the offset), then systemd-timesyncd through timedatectl."""
    out = run(["chronyc", "-n", "tracking"])
    parsed = parse_chrony(out) if out else None
    if parsed is not None:
        return parsed
    out = run(["timedatectl", "show"])
    return parse_timedatectl(out) if out else None


def existing_parent(path: Path) -> Path:
    """The path itself or its nearest existing ancestor (the spool may not exist yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def disk_space(path: Path) -> tuple[int, int] | None:
    """(free bytes for this user, total bytes) of the filesystem holding `path`."""
    try:
        usage = shutil.disk_usage(existing_parent(path))
    except OSError:
        return None
    return usage.free, usage.total


def directory_size(path: Path) -> tuple[int, int] | None:
    """(bytes, files) under `path`; None if it does not exist."""
    if not path.is_dir():
        return None
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += (Path(root) / name).stat().st_size
                files += 1
            except OSError:
                continue
    return total, files


def collect(
    state_dir: Path,
    spool_dir: Path | None = None,
    run: Runner = run_command,
    thermal: Path = Path("/sys/class/thermal"),
) -> dict[str, Any]:
    """The `system` block of `health` (keys absent when unknown)."""
    out: dict[str, Any] = {}
    load = cpu_load()
    if load is not None:
        out["load"] = [round(v, 2) for v in load]
    out["cpus"] = os.cpu_count() or 1
    temp = cpu_temperature_c(thermal)
    if temp is not None:
        out["cpu_temp_c"] = temp
    throttled = throttling(run)
    if throttled is not None:
        out["throttled"] = throttled
    clock = clock_sync(run)
    if clock is not None:
        out["clock"] = clock
    disk = disk_space(spool_dir or state_dir)
    if disk is not None:
        out["disk_free_bytes"], out["disk_total_bytes"] = disk
    if spool_dir is not None:
        spool = directory_size(spool_dir)
        if spool is not None:
            out["spool_bytes"], out["spool_files"] = spool
    return out


class SystemMonitor:
    """Refreshes `collect()` every `interval_s` on a daemon thread; `snapshot()` never blocks."""

    def __init__(
        self,
        state_dir: Path,
        spool_dir: Path | None = None,
        interval_s: float = 10.0,
        collector: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._collect = collector or (lambda: collect(state_dir, spool_dir))
        self._latest: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        try:
            data = self._collect()
        except Exception:  # a probe must never take the node down
            log.exception("system health probe failed")
            return
        with self._lock:
            self._latest = data

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._latest)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="system-health", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_TIMEOUT_S + 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval_s)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
