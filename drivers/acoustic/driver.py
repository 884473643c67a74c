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
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.coherence import (
    FrameSpectra,
    coherence_logit,
    frame_spectra,
    harmonic_coherence,
)
from cuas_node.drivers.acoustic.detector import Detection, DroneDetector
from cuas_node.drivers.acoustic.doa import DoaOptions, DoaPeak, SrpPhat
from cuas_node.drivers.acoustic.features import comb_fundamental_hz, comb_lines_db, sub_combs
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
_SAME_COMB = 0.08  # f0s this near a whole ratio: one source's comb (an insect's wingbeat wanders ±4 %)
_SAME_COMB_MAX = 0.25  # ... but never wider: at high ratios 8 % would take every f0 for a multiple
_STEP_LEVEL_S = 0.05  # how far the later half's least offset may lie below the earlier's, level


def phasors(bins: int, df_hz: float, tau_s: FloatArray) -> npt.NDArray[np.complex128]:
    """exp(2πi·k·df·τ) for bins k < `bins` and each delay τ, (bins, M): the products of two tables
    of about √bins rows (row k = 256·a + b is hi[a]·lo[b]), a tenth of the cost of a complex
    exponential per bin and channel (the beamformer's largest cost at 48 kHz); within 1e-14 of it
    at a 10 cm array's delays, 3e-13 at 3 ms and 96 kHz (phases of hundreds of radians carry
    that much rounding either way)."""
    step = 256
    turn = 2j * math.pi * df_hz * tau_s
    lo = np.exp(np.arange(step)[:, None] * turn)
    hi = np.exp(np.arange(-(-bins // step))[:, None] * (step * turn))
    return (hi[:, None, :] * lo[None, :, :]).reshape(-1, tau_s.size)[:bins]


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
        n, m = x.shape
        spec = np.fft.rfft(x, axis=0)
        tau = -(self.geometry.positions @ unit) / self.c  # arrival delay of each mic
        steer = phasors(spec.shape[0], self.fs / n, tau)
        return np.asarray(np.fft.irfft(np.einsum("fm,fm->f", spec, steer) / m, n=n), dtype=np.float64)

    def process(self, x: npt.ArrayLike) -> list[SourceEstimate]:
        """Sources in the block: direction, then the beam's detection, moved by the evidence of
        the array: is the comb coherent from that one direction (`coherence.py`), and is its
        source far from the array, not at one of its capsules (`nearfield.py`)?"""
        block = np.asarray(x, dtype=np.float64)
        spectra = frame_spectra(block, self.fs) if block.shape[1] > 1 else None
        out: list[SourceEstimate] = []
        found_beside: dict[int, tuple[Detection, float]] = {}  # index: near detection, its fundamental
        drone_like = False  # a block with a drone-like comb teaches the capsule levels nothing
        for peak in self.srp.localise(block):
            beam = self.beamform(block, peak.unit)
            d = self.detector.detect(beam, self.fs)
            drone_like |= d.detected
            if spectra is not None and d.f0_hz is not None and d.drone_likelihood > 0.0:
                d, near = self._weigh(spectra, peak, d)
                if near:  # marked down as at the array: what else does the beam hold?
                    self.near_field += 1
                    beside, base = self._beside_near_comb(spectra, peak, beam, d)
                    if beside is not d:
                        found_beside[len(out)], d = (d, base), beside
            out.append(SourceEstimate(peak, d))
        if spectra is not None and not drone_like:
            self.capsules.update(spectra)
        if spectra is not None:
            self._one_peak_per_comb(spectra, out, found_beside)
        return out

    def _weigh(
        self,
        spectra: FrameSpectra,
        peak: DoaPeak,
        d: Detection,
        away_from_hz: float | None = None,
        white_db: FloatArray | None = None,
    ) -> tuple[Detection, bool]:
        """The detection moved by the array's evidence of its comb, and whether the comb was
        placed at the array (near-field), judged also on each f0/k whose own lines stand in the
        beam's whitened spectrum (`white_db`, default the detection's: `features.sub_combs`).
        `away_from_hz`: a louder comb's f0, whose harmonics the evidence leaves out
        (`coherence.harmonic_bins`)."""
        assert d.f0_hz is not None
        positions = self.geometry.positions
        gamma = harmonic_coherence(spectra, positions, peak.unit, d.f0_hz, self.c, away_from_hz)
        white = d.white_db if white_db is None else white_db
        spread = level_spread_db(
            spectra,
            positions,
            d.f0_hz,
            self.c,
            self.capsules.relative_db,
            self.tolerance_db,
            away_from_hz,
            () if white is None else sub_combs(white, d.f0_hz, self.fs),
        )
        near = nearfield_logit(spread, self.allowance_db)
        weighed = self.detector.with_evidence(d, coherence_logit(gamma) + near)
        return (replace(weighed, near=True) if near < 0.0 else weighed), near < 0.0

    def _beside_near_comb(
        self, spectra: FrameSpectra, peak: DoaPeak, beam: FloatArray, near: Detection
    ) -> tuple[Detection, float]:
        """A far drone and an insect at a capsule in one block: the drone's beam carries the
        insect's comb too, louder, and the comb search finds that one, which the distance
        evidence then marks down, and the drone with it. So the near comb's lines (of its
        fundamental) are taken off the beam and the search runs again; a comb it then finds that
        is no whole multiple or fraction of that fundamental is weighed by the same evidence on
        its own harmonics (clear of the near comb's), and the likelier of the two is the source's
        detection (returned with the near comb's fundamental; `near` itself when it stays). Only
        blocks with a near comb pay for the second search."""
        assert near.f0_hz is not None and near.white_db is not None
        base = comb_fundamental_hz(near.white_db, near.f0_hz, self.fs)  # (its f0 may be a harmonic)
        lines = comb_lines_db(near.white_db, base, self.fs)
        other = self.detector.detect(beam, self.fs, also_suppress_db=lines)
        if other.f0_hz is None or other.drone_likelihood <= 0.0:
            return near, base
        # What is left of the near comb (its weaker lines) may form a comb at a multiple of it.
        if _one_source(other.f0_hz, base) or _one_source(other.f0_hz, near.f0_hz):
            return near, base
        other, other_near = self._weigh(spectra, peak, other, base, near.white_db - lines)
        return (other if not other_near and other.drone_likelihood > near.drone_likelihood else near), base

    def _one_peak_per_comb(
        self,
        spectra: FrameSpectra,
        out: list[SourceEstimate],
        found_beside: dict[int, tuple[Detection, float]],
    ) -> None:
        """A comb found beside a near one (`_beside_near_comb`) is heard in every beam of the
        block: the insect's own beam holds the far drone's comb too, and the detector may like it
        there as well. It is kept only at the peak from whose direction it is most coherent (the
        drone's: steered elsewhere, its harmonics fall out of step across the array); elsewhere
        the peak keeps its near (marked-down) detection."""
        units = [s.peak.unit for s in out]
        for i, (near, base) in found_beside.items():
            f0 = out[i].detection.f0_hz
            assert f0 is not None
            gamma = [harmonic_coherence(spectra, self.geometry.positions, u, f0, self.c, base) for u in units]
            if int(np.argmax(gamma)) != i:
                out[i] = SourceEstimate(out[i].peak, near)


def _one_source(f0_a: float, f0_b: float) -> bool:
    """Two combs whose f0s stand in a whole ratio (within `_SAME_COMB` of it, at most
    `_SAME_COMB_MAX`): one source's, one of them found on a multiple of the other's fundamental."""
    ratio = max(f0_a, f0_b) / min(f0_a, f0_b)
    return abs(ratio - round(ratio)) < min(_SAME_COMB * ratio, _SAME_COMB_MAX)


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
