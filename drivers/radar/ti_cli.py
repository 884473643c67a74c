"""The TI mmWave demo's configuration CLI (protocols.md section 1.1.2): send a chirp profile, line by line.

The board answers each command with an echo of it, optional info lines (`Ignored: ...`,
`Debug: ...`), then `Done` or an error (`Error -1`, `'x' is not recognized as a CLI command`), and
prints its prompt `mmwDemo:/>`. A board that is not ready, a wrong port or baud rate, and a board
that has just reset all show up as a missing or wrong echo, so the echo is checked too: a profile
is only "sent" when every line was echoed and acknowledged.

`CliConversation` is sans-IO (bytes in, outcomes out) so that every reply shape is tested without
a port; `TiCliConfigurator` drives it over a `Transport` with wall-clock deadlines (reply latency is
a property of the hardware, not of the scenario clock, which stands still before a simulation starts).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cuas_node.drivers.transport import Transport

PROMPT = "mmwDemo:/>"
MAX_LINE_CHARS = 4096
"""A CLI line is under 200 characters; a buffer without a line end beyond this is noise (wrong baud)."""
CLI_BAUDRATE = 115200
_SPEED_OF_LIGHT = 299_792_458.0
# Output that only a (re)booting board prints unprompted: its banner and its first prompt.
BOOT_MARKERS = (PROMPT, "MMW Demo", "******")


@dataclass(frozen=True, slots=True)
class CfgLine:
    """One command of a .cfg file: `number` is the 1-based line in the file, for error messages."""

    number: int
    text: str

    @property
    def name(self) -> str:
        return self.text.split(" ", 1)[0]

    @property
    def args(self) -> list[str]:
        return self.text.split()[1:]


def parse_cfg(text: str) -> list[CfgLine]:
    """Commands of a .cfg file; `%` comments (whole-line or trailing) and blank lines are dropped."""
    out: list[CfgLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        command = " ".join(raw.split("%", 1)[0].split())
        if command:
            out.append(CfgLine(number, command))
    return out


def load_profile(cfg_file: Path | None, model: str) -> tuple[str, str]:
    """The .cfg text and where it came from: the configured file, else the shipped profile for `model`."""
    if cfg_file is not None:
        return Path(cfg_file).read_text(encoding="ascii"), str(cfg_file)
    name = f"{model}_drone.cfg"
    resource = resources.files("cuas_node.drivers.radar") / "ti_profiles" / name
    if not resource.is_file():
        raise ValueError(f"no shipped radar profile for model {model!r}")
    return resource.read_text(encoding="ascii"), f"built-in profile {name}"


class Outcome(enum.Enum):
    DONE = "done"
    ERROR = "error"
    ECHO_MISMATCH = "echo mismatch"


@dataclass(frozen=True, slots=True)
class Reply:
    """What the board said about one command (`lines`: everything after the echo, prompt stripped)."""

    command: CfgLine
    outcome: Outcome
    lines: tuple[str, ...]

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else ""


def _is_error(line: str) -> bool:
    return line.startswith("Error") or "not recognized as a CLI command" in line


class CliConversation:
    """Sans-IO state machine for a sequence of commands, one outstanding at a time.

    `send()` gives the bytes of the next command; `feed()` consumes reply bytes and returns the
    `Reply` once the command is answered; `ready` tells when the prompt is back (the board reads
    the next line only then). Bytes after a reply stay buffered for the next command, because the
    board's prompt and the next echo arrive as one line: `mmwDemo:/>sensorStart`.
    """

    def __init__(self, commands: Sequence[CfgLine], *, require_echo: bool = True) -> None:
        self.commands = list(commands)
        self.require_echo = require_echo
        self.replies: list[Reply] = []
        self._index = 0
        self._buf = ""
        self._pending: CfgLine | None = None
        self._echoed = False
        self._lines: list[str] = []
        self._prompt = True  # the first line goes out without waiting for a prompt

    @property
    def finished(self) -> bool:
        return self._pending is None and self._index >= len(self.commands)

    @property
    def pending(self) -> CfgLine | None:
        return self._pending

    @property
    def ready(self) -> bool:
        """No command outstanding and the board's prompt seen since the last reply."""
        return self._pending is None and self._prompt

    def send(self) -> bytes:
        if self._pending is not None:
            raise RuntimeError(f"line {self._pending.number} is still waiting for its reply")
        command = self.commands[self._index]
        self._index += 1
        self._pending, self._echoed, self._lines, self._prompt = command, False, [], False
        return (command.text + "\n").encode("ascii")

    def feed(self, data: bytes) -> Reply | None:
        self._buf += data.decode("ascii", errors="replace")
        reply: Reply | None = None
        while reply is None and "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            reply = self._line(line)
        if PROMPT in self._buf:  # printed after the last reply: the board reads the next line now
            self._prompt = True
            if self._pending is None and not self._buf.replace(PROMPT, "").strip():
                self._buf = ""
        if len(self._buf) > MAX_LINE_CHARS and "\n" not in self._buf:
            # Keep memory bounded on noise; the tail may still hold the start of a prompt.
            self._buf = self._buf[-len(PROMPT) :]
        return reply

    @property
    def buffered(self) -> int:
        """Characters held for an unfinished line (bounded by MAX_LINE_CHARS plus one feed)."""
        return len(self._buf)

    def _line(self, raw: str) -> Reply | None:
        line = raw.strip()
        while line.startswith(PROMPT):
            line = line[len(PROMPT) :].strip()
            self._prompt = True
        command = self._pending
        if not line or command is None:
            return None
        if not self._echoed and (self.require_echo or " ".join(line.split()) == command.text):
            if " ".join(line.split()) == command.text:
                self._echoed = True
                return None
            return self._finish(Outcome.ECHO_MISMATCH, line)
        if line == "Done":
            return self._finish(Outcome.DONE, line)
        if _is_error(line):
            return self._finish(Outcome.ERROR, line)
        self._lines.append(line)
        return None

    def _finish(self, outcome: Outcome, line: str) -> Reply:
        assert self._pending is not None
        reply = Reply(self._pending, outcome, (*self._lines, line))
        self.replies.append(reply)
        self._pending = None
        self._prompt = False
        return reply


class CliError(OSError):
    """The board refused or did not answer its profile.

    An `OSError`, so the runtime treats it like a vanished port: logged once, sensor `down`,
    retried with back-off, and the message says which line of which file on which port.
    """

    def __init__(self, message: str, *, port: str, line: CfgLine | None, reply: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.port = port
        self.line = line
        self.reply = reply


class CliRejected(CliError):
    """The board answered `Error ...` or did not know the command."""


class CliNoAnswer(CliError):
    """Nothing (or no `Done`) within the reply timeout."""


class CliEchoMismatch(CliError):
    """The board printed something other than our command: wrong port or baud rate, or a reset."""


class TiCliConfigurator:
    """Sends commands over the CLI transport and waits for each answer, with a deadline per line."""

    def __init__(
        self,
        transport: Transport,
        port_name: str,
        *,
        reply_timeout_s: float = 2.0,
        prompt_grace_s: float = 0.2,
        require_echo: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.port_name = port_name
        self.reply_timeout_s = reply_timeout_s
        self.prompt_grace_s = prompt_grace_s
        self.require_echo = require_echo
        self.monotonic = monotonic

    def send_profile(self, cfg_text: str, source: str) -> list[Reply]:
        commands = parse_cfg(cfg_text)
        if not commands:
            raise CliError(f"radar profile {source} has no commands", port=self.port_name, line=None)
        return self.run(commands, source)

    def stop_sensor(self) -> Reply:
        """`sensorStop`; `Ignored: Sensor is already stopped` followed by `Done` is a success too."""
        return self.run([CfgLine(0, "sensorStop")], "shutdown")[0]

    def run(self, commands: Sequence[CfgLine], source: str) -> list[Reply]:
        self._drain()
        talk = CliConversation(commands, require_echo=self.require_echo)
        while not talk.finished:
            if not talk.ready:
                self._wait_prompt(talk)
            data = talk.send()
            line = talk.pending
            assert line is not None
            self.transport.write(data)
            reply = self._wait_reply(talk, line, source)
            where = f"radar CLI on {self.port_name}: {source} line {line.number} `{line.text}`"
            if reply.outcome is Outcome.ERROR:
                raise CliRejected(
                    f"{where}: board answered `{reply.last}`",
                    port=self.port_name,
                    line=line,
                    reply=reply.lines,
                )
            if reply.outcome is Outcome.ECHO_MISMATCH:
                raise CliEchoMismatch(
                    f"{where}: expected the board to echo the command, got `{reply.last}` "
                    "(wrong port or baud rate, or the board reset)",
                    port=self.port_name,
                    line=line,
                    reply=reply.lines,
                )
        return talk.replies

    def _drain(self) -> None:
        """Drop what the board printed before we spoke (a boot banner, a stale prompt)."""
        deadline = self.monotonic() + 0.05
        while self.transport.read() and self.monotonic() < deadline:
            pass

    def _wait_reply(self, talk: CliConversation, line: CfgLine, source: str) -> Reply:
        deadline = self.monotonic() + self.reply_timeout_s
        heard: list[str] = []
        while self.monotonic() < deadline:
            data = self.transport.read()
            if not data:
                continue
            heard.append(data.decode("ascii", errors="replace"))
            reply = talk.feed(data)
            if reply is not None:
                return reply
        said = "".join(heard).strip()
        what = f"only `{said[-80:]}`" if said else "nothing"
        raise CliNoAnswer(
            f"radar CLI on {self.port_name}: {source} line {line.number} `{line.text}`: no `Done` within "
            f"{self.reply_timeout_s:g} s, heard {what} (is it the CLI port at {CLI_BAUDRATE} baud, "
            "and is the board powered and running the out-of-box demo?)",
            port=self.port_name,
            line=line,
            reply=tuple(said.splitlines()),
        )

    def _wait_prompt(self, talk: CliConversation) -> None:
        """Give the board a moment to print its prompt; go on without it (some firmware is quiet)."""
        deadline = self.monotonic() + self.prompt_grace_s
        while not talk.ready and self.monotonic() < deadline:
            data = self.transport.read()
            if data:
                talk.feed(data)


@dataclass(frozen=True, slots=True)
class ChirpSummary:
    """What a legacy-frame profile (`dfeDataOutputMode 1`) means physically; used by docs and tests."""

    start_ghz: float
    bandwidth_mhz: float
    range_resolution_m: float
    max_range_m: float
    max_velocity_mps: float
    velocity_resolution_mps: float
    frame_period_s: float
    chirp_period_us: float
    tx_per_loop: int
    loops: int
    adc_samples: int
    virtual_antennas: int

    @property
    def radar_cube_bytes(self) -> int:
        """Range bins (FFT size) x virtual antennas x chirps x 4 bytes: must fit the part's L3 memory."""
        range_bins = 1 << max(0, math.ceil(math.log2(self.adc_samples)))
        return range_bins * self.virtual_antennas * self.loops * 4


def summarise_profile(commands: Sequence[CfgLine]) -> ChirpSummary:
    """Derived figures of a profile. Max range uses 90 % of the complex IF bandwidth, as TI's tools do."""
    by_name: dict[str, list[float]] = {}
    for c in commands:
        if c.name in ("profileCfg", "frameCfg", "channelCfg"):
            by_name[c.name] = [float(a) for a in c.args]
    try:
        profile, frame, channel = by_name["profileCfg"], by_name["frameCfg"], by_name["channelCfg"]
    except KeyError as exc:
        raise ValueError(f"profile has no {exc.args[0]} line") from None
    start_ghz, idle_us, adc_start_us, ramp_end_us, slope = (
        profile[1],
        profile[2],
        profile[3],
        profile[4],
        profile[7],
    )
    samples, rate_ksps = int(profile[9]), profile[10]
    sample_time_us = samples / (rate_ksps / 1000.0)
    bandwidth_mhz = slope * sample_time_us
    centre_hz = (start_ghz * 1e3 + slope * (adc_start_us + sample_time_us / 2)) * 1e6
    wavelength = _SPEED_OF_LIGHT / centre_hz
    tx_per_loop = int(frame[1] - frame[0]) + 1
    loops = int(frame[2])
    chirp_us = idle_us + ramp_end_us
    loop_s = tx_per_loop * chirp_us * 1e-6
    rx = bin(int(channel[0])).count("1")
    return ChirpSummary(
        start_ghz=start_ghz,
        bandwidth_mhz=bandwidth_mhz,
        range_resolution_m=_SPEED_OF_LIGHT / (2 * bandwidth_mhz * 1e6),
        max_range_m=0.9 * rate_ksps * 1e3 * _SPEED_OF_LIGHT / (2 * slope * 1e12),
        max_velocity_mps=wavelength / (4 * loop_s),
        velocity_resolution_mps=wavelength / (2 * loops * loop_s),
        frame_period_s=frame[4] / 1000.0,
        chirp_period_us=chirp_us,
        tx_per_loop=tx_per_loop,
        loops=loops,
        adc_samples=samples,
        virtual_antennas=rx * tx_per_loop,
    )


def summary_of(profile: str) -> ChirpSummary | None:
    """`summarise_profile` of a profile's text, None when a chirp line is missing or malformed
    (callers that only want a figure of it, e.g. its Doppler bin or span, then go without)."""
    try:
        return summarise_profile(parse_cfg(profile))
    except (ValueError, IndexError, ZeroDivisionError):
        return None


def frame_period_s(commands: Sequence[CfgLine], default: float = 0.1) -> float:
    """The `frameCfg` period, or `default` for profiles without one (advanced frames)."""
    for c in commands:
        if c.name == "frameCfg" and len(c.args) >= 5:
            return float(c.args[4]) / 1000.0
    return default
