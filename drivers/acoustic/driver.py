"""Driver for a microphone array streaming framed PCM (docs/acoustic.md) over a serial port or pty.

Frames are stitched into blocks (default 0.5 s); each block runs SRP-PHAT over the last analysis
window (default 1 s, the length the detector was trained on), then for every direction found the
array is steered there (delay-and-sum, which also gains 10·log10(M) dB against diffuse noise) and
the beamformed sound is classified. An `AcousticBearing` is emitted per source whose drone
likelihood reaches the threshold. A gap in the sequence numbers or a change of format resets the
stitching: two stretches of audio that were not adjacent must never form one block.

Bearings are in the array's own frame (the measurement contract); the optional mount pose is used
only to pick the sky-side hemisphere for planar arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.coherence import coherence_logit, frame_spectra, harmonic_coherence
from cuas_node.drivers.acoustic.detector import Detection, DroneDetector
from cuas_node.drivers.acoustic.doa import DoaOptions, DoaPeak, SrpPhat
from cuas_node.drivers.acoustic.geometry import ArrayGeometry, resolve
from cuas_node.drivers.acoustic.nearfield import (
    CapsuleGains,
    far_field_spread_db,
    level_spread_db,
    nearfield_logit,
)
from cuas_node.drivers.acoustic.protocol import PcmFrame, PcmFrameParser
from cuas_node.drivers.driver import Driver, SensorHealth
from cuas_node.drivers.transport import SerialTransport, Transport
from cuas_node.kernel.clock import STEP_S, Clock
from cuas_node.kernel.measurement import AcousticBearing, AnyMeasurement
from cuas_node.kernel.pose import Pose

FloatArray = npt.NDArray[np.float64]
DEFAULT_BAUDRATE = 2_000_000
BLOCK_S = 0.5  # a block is processed every this long of audio
WINDOW_S = 1.0  # over the last this long (the detector's window)
_STEP_CONFIRM_S = 5.0  # seconds of frames whose offset stays level a clock step above the known one
_STEP_LEVEL_S = 0.05  # how far the later half's least offset may lie below the earlier's, level


@dataclass(frozen=True, slots=True)
class SourceEstimate:
    peak: DoaPeak
    detection: Detection


class AcousticPipeline:
    """DoA + detection for one array and sample rate (shared by the driver, decode and benchmark)."""

    def __init__(
        self,
        geometry: ArrayGeometry,
        sample_rate: int,
        *,
        doa: DoaOptions | None = None,
        pose: Pose | None = None,
        detector: DroneDetector | None = None,
        sensitivity_tolerance_db: float = 1.0,
    ) -> None:
        self.geometry = geometry
        self.fs = sample_rate
        self.srp = SrpPhat(geometry, sample_rate, doa, pose)
        self.detector = detector or DroneDetector()
        self.c = self.srp.opt.speed_of_sound_mps
        self.tolerance_db = sensitivity_tolerance_db
        self.allowance_db = far_field_spread_db(geometry.positions, sensitivity_tolerance_db)
        self.capsules = CapsuleGains(geometry.n_mics)
        self.near_field = 0  # sources marked down as at the array itself (`nearfield`)

    def beamform(self, x: FloatArray, unit: FloatArray) -> FloatArray:
        """Delay-and-sum towards `unit`: advance each channel by its arrival delay, then average."""
        n = x.shape[0]
        spec = np.fft.rfft(x, axis=0)
        f = np.fft.rfftfreq(n, 1.0 / self.fs)
        tau = -(self.geometry.positions @ unit) / self.c  # arrival delay of each mic
        steer = np.exp(2j * math.pi * f[:, None] * tau[None, :])
        return np.asarray(np.fft.irfft((spec * steer).mean(axis=1), n=n), dtype=np.float64)

    def process(self, x: npt.ArrayLike) -> list[SourceEstimate]:
        """Sources in the block: direction, then the beam's detection, moved by the evidence of
        the array: is the comb coherent from that one direction (`coherence.py`), and is its
        source far from the array, not at one of its capsules (`nearfield.py`)?"""
        block = np.asarray(x, dtype=np.float64)
        spectra = frame_spectra(block, self.fs) if block.shape[1] > 1 else None
        out = []
        positions = self.geometry.positions
        drone_like = False  # a block with a drone-like comb teaches the capsule levels nothing
        for peak in self.srp.localise(block):
            d = self.detector.detect(self.beamform(block, peak.unit), self.fs)
            drone_like |= d.detected
            if spectra is not None and d.f0_hz is not None and d.drone_likelihood > 0.0:
                gamma = harmonic_coherence(spectra, positions, peak.unit, d.f0_hz, self.c)
                spread = level_spread_db(
                    spectra, positions, d.f0_hz, self.c, self.capsules.relative_db, self.tolerance_db
                )
                near = nearfield_logit(spread, self.allowance_db)
                self.near_field += near < 0.0
                d = self.detector.with_evidence(d, coherence_logit(gamma) + near)
            out.append(SourceEstimate(peak, d))
        if spectra is not None and not drone_like:
            self.capsules.update(spectra)
        return out


class AcousticArrayDriver(Driver[PcmFrame]):
    kind = "acoustic-array"

    def __init__(
        self,
        sensor_id: str,
        transport: Transport,
        clock: Clock,
        *,
        geometry: ArrayGeometry | str = "respeaker-4",
        pose: Pose | None = None,
        doa: DoaOptions | None = None,
        threshold: float | None = None,
        detector: DroneDetector | None = None,
        sensitivity_tolerance_db: float = 1.0,
        block_s: float = BLOCK_S,
        window_s: float = WINDOW_S,
        parser: PcmFrameParser | None = None,
    ) -> None:
        super().__init__(sensor_id, transport, parser or PcmFrameParser(), clock)
        self.geometry = resolve(geometry) if isinstance(geometry, str) else geometry
        self.pose = pose
        self.doa = doa
        # The decision (threshold, site background) is the detector's: one path for node and tools.
        self.detector = detector or DroneDetector(threshold=threshold)
        self.threshold = self.detector.threshold
        self.sensitivity_tolerance_db = sensitivity_tolerance_db
        self.block_s = block_s
        self.window_s = max(window_s, block_s)
        self._pipeline: AcousticPipeline | None = None
        self._rate = 0
        self._chunks: list[FloatArray] = []
        self._buffered = 0
        self._new = 0
        self._end_device_s = 0.0
        self._offset_s: float | None = None
        self._ahead: list[tuple[float, float]] = []  # (device time, offset) of frames a step above
        self._counts = dict.fromkeys(("blocks", "detections", "channel_mismatch", "stream_resets"), 0)

    @classmethod
    def from_port(
        cls,
        sensor_id: str,
        port: str,
        clock: Clock,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        geometry: ArrayGeometry | str = "respeaker-4",
        pose: Pose | None = None,
        doa: DoaOptions | None = None,
        threshold: float | None = None,
        detector: DroneDetector | None = None,
        sensitivity_tolerance_db: float = 1.0,
    ) -> AcousticArrayDriver:
        transport = SerialTransport(port, baudrate)
        return cls(
            sensor_id,
            transport,
            clock,
            geometry=geometry,
            pose=pose,
            doa=doa,
            threshold=threshold,
            detector=detector,
            sensitivity_tolerance_db=sensitivity_tolerance_db,
        )

    @property
    def counters(self) -> dict[str, int]:
        near = 0 if self._pipeline is None else self._pipeline.near_field
        return {**self.parser.counters, **self._counts, "near_field": near}

    def health(self) -> SensorHealth:
        """The driver's snapshot, with a word on any microphone whose learnt level sets it apart:
        low (blocked, damaged), high (wind at its port, another sensitivity) or silent
        (`nearfield.CapsuleGains.odd`)."""
        snap = super().health()
        snap.counters = self.counters
        odd = "" if self._pipeline is None else self._pipeline.capsules.odd(self.sensitivity_tolerance_db)
        if odd:
            snap.detail = f"{snap.detail}; {odd}" if snap.detail else odd
        return snap

    def _reset(self) -> None:
        self._chunks.clear()
        self._buffered = 0
        self._new = 0

    def accept(self, frame: PcmFrame, t_capture: float) -> list[tuple[float, SourceEstimate]]:
        """Add one frame; return (device-clock time of the window centre, source) per processed block."""
        if frame.channels < self.geometry.min_channels:
            self._counts["channel_mismatch"] += 1
            return []
        if frame.sample_rate != self._rate or self._pipeline is None:
            self._rate = frame.sample_rate
            self._pipeline = AcousticPipeline(
                self.geometry,
                self._rate,
                doa=self.doa,
                pose=self.pose,
                detector=self.detector,
                sensitivity_tolerance_db=self.sensitivity_tolerance_db,
            )
            self._reset()
        elif frame.gap or frame.restart:
            self._counts["stream_resets"] += 1
            self._reset()
            if frame.restart:  # the front end rebooted: its free-running clock began again at 0
                self._offset_s = None
        start_s = frame.timestamp_us * 1e-6
        self._end_device_s = start_s + frame.n_samples / self._rate
        self._offset_s = 0.0 if frame.utc else self._clock_offset(t_capture - self._end_device_s)
        chunk = frame.samples[:, list(self.geometry.channel_map)].astype(np.float64) / 32768.0
        self._chunks.append(chunk)
        self._buffered += chunk.shape[0]
        self._new += chunk.shape[0]
        window_n = int(self.window_s * self._rate)
        if self._new < int(self.block_s * self._rate) or self._buffered < min(
            window_n, int(self.block_s * self._rate)
        ):
            return []
        data = np.concatenate(self._chunks, axis=0)[-window_n:]
        self._chunks = [data]
        self._buffered = data.shape[0]
        self._new = 0
        self._counts["blocks"] += 1
        t_centre = self._end_device_s - 0.5 * data.shape[0] / self._rate
        return [(t_centre, s) for s in self._pipeline.process(data)]

    def _clock_offset(self, offset: float) -> float:
        """The node clock minus the front end's free-running one, from this frame's `offset` (its
        arrival on the node's clock less its end on the device's): the least-delayed frame bounds
        it best, so the smallest is kept. Offsets above it by more than a clock step
        (`kernel.clock.STEP_S`) for `_STEP_CONFIRM_S` of frames are the node's clock stepped
        forward (NTP at boot) if they stay level: the least of the later half of them is taken;
        otherwise every bearing would stay late by the step. A stalled host's backlog raises them
        too, but they fall as it drains (each frame less delayed than the one before): the least
        of the later half lies below the earlier half's by the drain, and the earlier half is let
        go. Only a backlog drained slower than `_STEP_LEVEL_S` per half-window passes for a step."""
        known = self._offset_s
        if known is None or offset < known:
            self._ahead.clear()
            return offset
        if offset <= known + STEP_S:
            self._ahead.clear()
            return known
        ahead = self._ahead
        ahead.append((self._end_device_s, offset))
        since = ahead[0][0]
        if self._end_device_s - since < _STEP_CONFIRM_S:
            return known
        middle = since + 0.5 * (self._end_device_s - since)
        earlier = min(o for t, o in ahead if t < middle)
        later = min(o for t, o in ahead if t >= middle)
        if earlier - later > _STEP_LEVEL_S:  # falling: a backlog draining
            self._ahead = [(t, o) for t, o in ahead if t >= middle]
            return known
        self._ahead = []
        return later

    def to_measurements(self, record: PcmFrame, t_capture: float, t_receive: float) -> list[AnyMeasurement]:
        out: list[AnyMeasurement] = []
        for t_device, src in self.accept(record, t_capture):
            if not src.detection.detected:
                continue
            self._counts["detections"] += 1
            out.append(to_bearing(self.sensor_id, t_device + (self._offset_s or 0.0), t_receive, src))
        return out


def to_bearing(sensor_id: str, t_capture: float, t_receive: float, src: SourceEstimate) -> AcousticBearing:
    p, d = src.peak, src.detection
    return AcousticBearing(
        sensor_id=sensor_id,
        t_capture=t_capture,
        t_receive=t_receive,
        az_rad=p.az_rad,
        el_rad=p.el_rad,
        sigma_az_rad=p.sigma_az_rad,
        sigma_el_rad=p.sigma_el_rad,
        drone_likelihood=d.drone_likelihood,
        level_db=d.level_dbfs,
        f0_hz=d.f0_hz,
        snr_db=p.snr_db,
    )
