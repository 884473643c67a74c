"""Simulated TI mmWave board: the demo's CLI on one pty, and the gate on the data pty.

A real board sends no data until it has been configured and told `sensorStart`, echoes every
command, answers `Done` or an error, and prints its boot banner when it resets. The simulator does
the same so that the node's configurator and reset handling run against the same bytes as on the
Pi. Tests can also make it answer `Error`, fall silent, or reset, which real hardware does rarely
and never on demand.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Callable, Iterable

from cuas_node.drivers.radar.ti_cli import PROMPT, summary_of
from cuas_node.drivers.sim.pty import PtyPort

BANNER = "\r\n******************************************\r\nxWR16xx MMW Demo 03.04.00.03\r\n" + (
    "******************************************\r\n"
)

# Commands of the SDK 3.x out-of-box demo with their argument counts (None: any count).
KNOWN_COMMANDS: dict[str, int | None] = {
    "sensorStop": 0,
    "sensorStart": None,
    "flushCfg": 0,
    "dfeDataOutputMode": 1,
    "channelCfg": 3,
    "adcCfg": 2,
    "adcbufCfg": 5,
    "profileCfg": 14,
    "chirpCfg": 8,
    "frameCfg": 7,
    "advFrameCfg": None,
    "subFrameCfg": None,
    "lowPower": 2,
    "guiMonitor": 7,
    "cfarCfg": 9,
    "multiObjBeamForming": 3,
    "clutterRemoval": 2,
    "calibDcRangeSig": 5,
    "extendedMaxVelocity": 2,
    "lvdsStreamCfg": 4,
    "compRangeBiasAndRxChanPhase": None,
    "measureRangeBiasAndRxChanPhase": 3,
    "CQRxSatMonitor": 5,
    "CQSigImgMonitor": 3,
    "analogMonitor": 2,
    "aoaFovCfg": 5,
    "cfarFovCfg": 4,
    "calibData": 3,
    "bpmCfg": 4,
    "queryDemoStatus": 0,
    "version": 0,
    "help": 0,
}
# sensorStart refuses to run without these since the last flushCfg (the demo's own check).
REQUIRED_FOR_START = ("channelCfg", "adcCfg", "profileCfg", "chirpCfg", "frameCfg", "guiMonitor")


class SimTiBoard:
    """The board's CLI state machine on `cli` (a PtyPort), and `streaming` for the data emitter.

    Use `poll()` from a test loop, or `start()`/`stop()` for a thread. Fault injection:
    `error_on` (command name → reply `Error -1`), `silent` (read commands, never answer),
    `garble_echo` (echo something else), and `reset()` (stop, forget the config, print the banner).
    `on_start(max_velocity_mps)` is called at each `sensorStart` that follows a reset or
    `flushCfg`, so that the frame counter restarts as on a freshly configured board, with the
    unambiguous radial speed of the chirp profile it was sent (None if that profile cannot be
    summarised), past which the simulated board's Doppler wraps as a real one's does.
    """

    def __init__(self, cli: PtyPort, *, on_start: Callable[[float | None], None] | None = None) -> None:
        self.cli = cli
        self.on_start = on_start
        self.streaming = False
        self.configured: set[str] = set()
        self.commands: list[str] = []
        self.profile: dict[str, str] = {}  # the chirp commands since the last flushCfg, by name
        self.max_velocity_mps: float | None = None
        self.error_on: set[str] = set()
        self.silent = False
        self.garble_echo = False
        self.resets = 0
        self._fresh = True
        self._buf = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sim-ti-cli", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                select.select([self.cli.master], [], [], 0.01)
            self.poll()

    def poll(self) -> None:
        """Answer every complete command line the node has written."""
        data = self.cli.read()
        if not data:
            return
        with self._lock:
            self._buf += data
            while True:
                cut = min((i for i in (self._buf.find(b"\n"), self._buf.find(b"\r")) if i >= 0), default=-1)
                if cut < 0:
                    return
                line, self._buf = self._buf[:cut], self._buf[cut + 1 :]
                text = line.decode("ascii", errors="replace").strip()
                if text and not self.silent:
                    self.cli.write(self._answer(text).encode("ascii"))

    def reset(self) -> None:
        """A watchdog reset or brown-out: the data stream stops and the banner and prompt appear."""
        with self._lock:
            self.streaming = False
            self.configured.clear()
            self.profile.clear()
            self._fresh = True
            self.resets += 1
            self._buf = b""
            self.cli.write((BANNER + PROMPT).encode("ascii"))

    def _answer(self, text: str) -> str:
        self.commands.append(text)
        name, *args = text.split()
        echo = "sensorStpo" if self.garble_echo else text
        out = echo + "\r\n"
        expected = KNOWN_COMMANDS.get(name, -1)
        if expected == -1:
            return out + f"'{name}' is not recognized as a CLI command\r\n{PROMPT}"
        if name in self.error_on or (expected is not None and len(args) != expected):
            return out + f"Error -1\r\n{PROMPT}"
        extra = self._apply(name, text)
        if extra.startswith("Error"):
            return out + f"{extra}\r\n{PROMPT}"
        return out + extra + f"Done\r\n\r\n{PROMPT}"

    def _apply(self, name: str, text: str) -> str:
        """Change state for one accepted command; return info lines or an `Error` line."""
        if name == "sensorStop":
            if not self.streaming:
                return "Ignored: Sensor is already stopped\r\n\r\n"
            self.streaming = False
        elif name == "flushCfg":
            if self.streaming:
                return "Error -1 (flushCfg while the sensor runs)"
            self.configured.clear()
            self.profile.clear()
            self._fresh = True
        elif name == "sensorStart":
            missing = [c for c in REQUIRED_FOR_START if c not in self.configured]
            if missing:
                return f"Error -1 (missing {', '.join(missing)})"
            self.max_velocity_mps = _max_velocity(self.profile.values())
            if self._fresh and self.on_start is not None:
                self.on_start(self.max_velocity_mps)
            self._fresh = False
            self.streaming = True
            return "Debug: Init Calibration Status = 0x1ffe\r\n\r\n"
        else:
            self.configured.add(name)
            if name in _CHIRP_COMMANDS:
                self.profile[name] = text
        return ""


_CHIRP_COMMANDS = ("channelCfg", "profileCfg", "frameCfg")  # what `summarise_profile` reads


def _max_velocity(commands: Iterable[str]) -> float | None:
    """The unambiguous radial speed of a profile's chirp commands (`ti_cli.summarise_profile`)."""
    summary = summary_of("\n".join(commands))
    return None if summary is None else summary.max_velocity_mps
