"""Driver for a TI mmWave radar running the SDK 3.x (or 2.0/2.1) out-of-box demo.

It reads frames from the data UART. When a CLI port is configured it also owns the board: `open()`
sends the chirp profile line by line (drivers/radar/ti_cli.py), `close()` sends `sensorStop`, and `read()`
watches for a board that reset under it (the data stream stalls, the frame number restarts, or the
CLI prints its boot banner unprompted) and sends the profile again. Without a CLI port it only
listens, so the same driver serves a board configured by hand or by another program.

Frames the node cannot use do not pass in silence: frames of a firmware version the parser does not
decode, and SDK 2.x frames when the node does not know the profile's Doppler bin width (they carry
Doppler as a bin index), make the sensor `degraded` with a detail that says what to do, logged once;
it is `ok` again as soon as usable frames arrive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cuas_node.drivers.driver import Driver, SensorHealth
from cuas_node.drivers.radar.cluster import ClusterOptions, ClutterFilter, PointClusterer, RadarResolution
from cuas_node.drivers.radar.frame_clock import FrameClock
from cuas_node.drivers.radar.ti_cli import (
    BOOT_MARKERS,
    CLI_BAUDRATE,
    CliError,
    TiCliConfigurator,
    frame_period_s,
    load_profile,
    parse_cfg,
    summary_of,
)
from cuas_node.drivers.radar.ti_frames import TiFrame, TiFrameParser
from cuas_node.drivers.radar.ti_frames_sdk2 import unsupported_version_message, version_text
from cuas_node.drivers.transport import SerialTransport, Transport
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import AnyMeasurement, EmptyRadarScan, SensorState

DATA_BAUDRATE = 921600
log = logging.getLogger(__name__)


def doppler_bin_mps(profile: str) -> float | None:
    """The width of one Doppler FFT bin [m/s] of a chirp profile, None if it has no `frameCfg`.

    As TI's visualiser computes it: wavelength at the chirp's centre frequency / (2 x loop period x
    Doppler FFT size), the FFT size being the number of loops rounded up to a power of two."""
    summary = summary_of(profile)
    if summary is None:
        return None
    fft_size = 1 << (summary.loops - 1).bit_length()
    return summary.velocity_resolution_mps * summary.loops / fft_size


def _max_velocity(cfg_file: Path | None, model: str) -> float | None:
    """The unambiguous radial speed of the profile the board runs (`cfg_file`, else the shipped
    one for `model`), None if it cannot be read (then the clusterer links Doppler without wrap;
    an unreadable `cfg_file` is reported where the board is configured, and by `config check`)."""
    try:
        profile = load_profile(cfg_file, model)[0]
    except (OSError, ValueError):
        return None
    summary = summary_of(profile)
    return None if summary is None else summary.max_velocity_mps


def needs_profile_message(version: int) -> str:
    """What the driver says about SDK 2.x frames when it does not know the Doppler bin width."""
    return (
        f"the radar sends mmWave SDK {version_text(version)} frames, whose Doppler is an FFT bin index: "
        "to turn it into m/s the node needs the chirp profile the board runs; set cfg_file to it "
        "(with a frameCfg line), and config_port to let the node send it"
    )


@dataclass(frozen=True, slots=True)
class ResetWatch:
    """When to decide that the board reset: no frame for max(stall_frames periods, min_stall_s)
    (doubling after each stall that a reconfiguration did not cure, up to max_stall_s), and how
    often to look at the CLI port for an unprompted banner (each look may block for its timeout)."""

    stall_frames: float = 8.0
    min_stall_s: float = 1.0
    max_stall_s: float = 30.0
    cli_poll_s: float = 0.5


@dataclass(frozen=True, slots=True)
class TiCliSetup:
    """The board's CLI port and the profile to send to it."""

    transport: Transport
    port_name: str
    profile: str
    source: str
    reply_timeout_s: float = 2.0
    stop_timeout_s: float = 0.5


class TiMmwaveDriver(Driver[TiFrame]):
    """One `RadarDetection` per cluster of moving points in each frame."""

    kind = "ti-mmwave"

    def __init__(
        self,
        sensor_id: str,
        transport: Transport,
        clock: Clock,
        *,
        options: ClusterOptions | None = None,
        clusterer: PointClusterer | None = None,
        resolution: RadarResolution | None = None,
        parser: TiFrameParser | None = None,
        cli: TiCliSetup | None = None,
        reset_watch: ResetWatch | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`options` (from the config file) or a ready `clusterer` (e.g. with a custom clutter filter).

        Reset detection runs on `monotonic` (wall time): frame periods and CLI latency are hardware
        time, and the simulator's scenario clock stands still until the scenario starts.
        """
        if options is not None and clusterer is not None:
            raise ValueError("give either options or clusterer, not both")
        if parser is None:  # SDK 2.x frames need the profile's Doppler bin width
            parser = TiFrameParser(doppler_bin_mps(cli.profile) if cli is not None else None)
        super().__init__(sensor_id, transport, parser, clock)
        self.frames = parser
        self.clusterer = clusterer or PointClusterer.from_options(options or ClusterOptions())
        self.resolution = resolution or RadarResolution()
        self.cli = cli
        self.watch = reset_watch or ResetWatch()
        self.monotonic = monotonic
        self.reconfigurations = 0
        self.last_reset_reason = ""
        self.frame_clock = FrameClock()
        period = frame_period_s(parse_cfg(cli.profile)) if cli is not None else 0.1
        self._base_stall_s = max(self.watch.stall_frames * period, self.watch.min_stall_s)
        self._stall_s = self._base_stall_s
        self._last_frame_at = 0.0
        self._last_number: int | None = None
        self._restart: tuple[int, int] | None = None
        self._settle_until = 0.0
        self._next_cli_poll = 0.0
        self._problem = ""  # why frames arrive but cannot be used, logged once
        self._unsupported_seen = 0
        self._usable = False  # a frame the node can use arrived in this read

    @classmethod
    def from_port(
        cls,
        sensor_id: str,
        port: str,
        clock: Clock,
        *,
        baudrate: int = DATA_BAUDRATE,
        options: ClusterOptions | None = None,
        clusterer: PointClusterer | None = None,
        resolution: RadarResolution | None = None,
        config_port: str | None = None,
        config_baudrate: int = CLI_BAUDRATE,
        cfg_file: Path | None = None,
        model: str = "iwr6843",
        static_map: ClutterFilter | None = None,
        reset_watch: ResetWatch | None = None,
    ) -> TiMmwaveDriver:
        """The usual wiring: the data port (e.g. /dev/ttyACM1 on an XDS110 EVM) and, to let the node
        configure the board, the CLI port (/dev/ttyACM0) with `cfg_file` or the shipped profile for
        `model`. Without a CLI port, `cfg_file` (the profile the board runs) is only read for the
        Doppler bin width that SDK 2.x frames need. `static_map` joins the Doppler band as a second
        clutter filter."""
        if static_map is not None and clusterer is not None:
            raise ValueError("give static_map with options, not with a ready clusterer")
        if clusterer is None:  # its Doppler wraps where the profile the board runs says
            clusterer = PointClusterer.from_options(
                options or ClusterOptions(), static_map, _max_velocity(cfg_file, model)
            )
            options = None
        cli = None
        parser = None
        if config_port is None and cfg_file is not None:
            try:
                parser = TiFrameParser(doppler_bin_mps(load_profile(cfg_file, model)[0]))
            except (OSError, ValueError) as exc:  # only an aid here: the board is configured already
                log.warning("radar %s: cannot read cfg_file %s: %s", sensor_id, cfg_file, exc)
        if config_port is not None:
            profile, source = load_profile(cfg_file, model)
            # A short read timeout: read() looks at the CLI between data reads.
            cli_transport = SerialTransport(config_port, config_baudrate, timeout_s=0.02)
            cli = TiCliSetup(cli_transport, config_port, profile, source)
        transport = SerialTransport(port, baudrate)
        return cls(
            sensor_id,
            transport,
            clock,
            options=options,
            clusterer=clusterer,
            resolution=resolution,
            parser=parser,
            cli=cli,
            reset_watch=reset_watch,
        )

    def open(self) -> None:
        super().open()
        if self.cli is None:
            return
        try:
            self.cli.transport.open()
            self._configure("start")
        except BaseException:
            self.cli.transport.close()
            super().close()
            raise

    def close(self) -> None:
        if self.cli is not None and self.cli.transport.is_open:
            try:
                self._configurator(self.cli.stop_timeout_s).stop_sensor()
            except (CliError, OSError) as exc:
                log.warning("radar %s: sensorStop on shutdown failed: %s", self.sensor_id, exc)
            self.cli.transport.close()
        super().close()

    def read(self) -> list[AnyMeasurement]:
        self._usable = False
        out = super().read()
        self._watch_versions()
        if self.cli is not None:
            self._watch_for_reset()
        return out

    def to_measurements(self, record: TiFrame, t_capture: float, t_receive: float) -> list[AnyMeasurement]:
        self._note_frame(record.frame_number)
        # Frames that reached this read late (several in one read on a busy host) get the time
        # of their place on the frame grid, not the read's (`frame_clock`).
        t_capture -= t_receive - self.frame_clock.stamp(record.frame_number, t_receive)
        if record.version >> 24 != 3 and self.frames.doppler_bin_mps is None:
            self._degrade(needs_profile_message(record.version))
            return []
        self._usable = True
        if self._problem:
            self._recover()
        found: list[AnyMeasurement] = list(
            self.clusterer.detections(
                record.points,
                record.snr_db,
                sensor_id=self.sensor_id,
                t_capture=t_capture,
                t_receive=t_receive,
                resolution=self.resolution,
            )
        )
        return found or [EmptyRadarScan(self.sensor_id, t_capture, t_receive)]  # it looked: misses count

    def health(self) -> SensorHealth:
        h = super().health()
        h.counters["reconfigurations"] = self.reconfigurations
        h.counters["late_frames_restamped"] = self.frame_clock.restamped
        return h

    def _watch_versions(self) -> None:
        """Degrade when this read brought frames of an unsupported version and none usable."""
        seen = self.frames.counters["unsupported_version"]
        if seen > self._unsupported_seen:
            self._unsupported_seen = seen
            version = self.frames.unsupported_version
            if not self._usable and version is not None:
                self._degrade(unsupported_version_message(version))

    def _degrade(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning("radar %s: %s", self.sensor_id, problem)
        if self.state != SensorState.DOWN:
            self.state, self.detail = SensorState.DEGRADED, problem

    def _recover(self) -> None:
        log.info("radar %s: frames the node can use arrive again", self.sensor_id)
        if self.detail == self._problem:
            self.state, self.detail = SensorState.OK, ""
        self._problem = ""

    def _configurator(self, timeout_s: float) -> TiCliConfigurator:
        assert self.cli is not None
        return TiCliConfigurator(
            self.cli.transport, self.cli.port_name, reply_timeout_s=timeout_s, monotonic=self.monotonic
        )

    def _configure(self, reason: str) -> None:
        assert self.cli is not None
        self.detail = f"configuring the radar ({reason})"
        self._configurator(self.cli.reply_timeout_s).send_profile(self.cli.profile, self.cli.source)
        now = self.monotonic()
        self._last_frame_at = now
        self._last_number = None
        self._restart = None
        # Frames buffered before sensorStop may still arrive with the old numbering: a step back
        # inside this window is the new stream starting, not another reset.
        self._settle_until = now + self._base_stall_s
        self._next_cli_poll = now + self.watch.cli_poll_s
        self.state = SensorState.OK
        self.detail = ""
        log.info("radar %s configured from %s (%s)", self.sensor_id, self.cli.source, reason)

    def _note_frame(self, number: int) -> None:
        now = self.monotonic()
        last, self._last_number = self._last_number, number
        self._last_frame_at = now
        self._stall_s = self._base_stall_s
        if last is None or now < self._settle_until:
            return
        if (number - last) & 0xFFFFFFFF >= 1 << 31:  # a step back: the counter started again
            self._restart = (last, number)

    def _watch_for_reset(self) -> None:
        assert self.cli is not None
        now = self.monotonic()
        reason = ""
        if self._restart is not None:
            reason = f"frame number restarted ({self._restart[0]} -> {self._restart[1]})"
        elif now - self._last_frame_at > self._stall_s:
            reason = f"no data frame for {now - self._last_frame_at:.1f} s"
            self._stall_s = min(self._stall_s * 2, self.watch.max_stall_s)
        elif now >= self._next_cli_poll:
            self._next_cli_poll = now + self.watch.cli_poll_s
            said = self.cli.transport.read().decode("ascii", errors="replace")
            if any(marker in said for marker in BOOT_MARKERS):
                reason = "the CLI printed its boot banner unprompted"
        if not reason:
            return
        log.warning("radar %s: %s; sending the profile again", self.sensor_id, reason)
        self.reconfigurations += 1
        self.last_reset_reason = reason
        stall_s = self._stall_s
        self._configure(reason)
        self._stall_s = stall_s
