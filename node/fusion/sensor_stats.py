"""What each sensor is observed to do, so that no tracker threshold is a constant of one sensor.

Per sensor (its bit in the tracks' sensor masks), learnt from its own scans:
- `period_s`: the time between its scans (quick to fall, slow to rise: a quiet radar sends no frame
  when it detects nothing, and such gaps are not its rate); a scanning radar's is its configured
  one (its plots and checks come at any time: `sweep`); a Remote ID receiver's at least
  `REMOTE_ID_INTERVAL_S`;
- `false_alarms`: detections per full scan that no established track gates (starts at the
  configured `clutter_per_scan`);
- `doppler_span`: the spread of radial velocities in its scans (range-rate radars only), at least
  six of its own range-rate sigmas;
- `pd`: the fraction of established tracks it should have seen that it did detect (starts at the
  configured `detection_probability`);
- `sigma_range`, `sigma_angle`, `sigma_rate`: its accuracy (medians of the scan's own measurement
  covariance), hence its resolution at any range: max(σ_range, range·σ_angle); `sigma_rate` of a
  radar measuring range-rate (what a fixture's range-rate is known to, `fixtures`).
Everything is a fixed-size numpy array: a scan costs a few scalar updates.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import (
    RADIAL_SPAN_MPS,
    MeasurementModel,
    PositionVelocityModel,
    RadarModel,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

N_SENSORS = 64
_MIN_FALSE_ALARMS = 0.05  # per scan: a density of exactly 0 would make any detection certain
_MEMORY = 0.9  # weight of the past in the per-scan averages (about ten scans)
_PD_MEMORY = 0.98  # Pd is averaged over about fifty looks, with the configured value as ten
_PD_PRIOR_LOOKS = 10.0
_PD_FLOOR, _PD_CEILING = 0.3, 0.99  # learnt Pd bounds (`pds`)
REMOTE_ID_INTERVAL_S = 1.0
"""ASTM F3411: a broadcaster sends its location at least once a second. A Remote ID receiver's
period is at least that: its reports come from every broadcaster in range, so their intervals
are not one broadcaster's (with four drones heard, a 0.25 s period coasted each one's track
between its own reports)."""
REMOTE_ID_LATE = 0.5
"""How late, in intervals, a broadcaster's next report may come (`look_late`): broadcasts are
not clocked, and a receiver hears them when its scan of the channels meets them."""


def fed_by(masks: npt.NDArray[np.uint64], bits: npt.ArrayLike) -> BoolArray:
    """(K, B): which of the sensor `bits` are set in each of the K sensor masks (a track's
    `sensor_mask`: the sensors that fed it)."""
    shifts = np.asarray(bits).astype(np.uint64)
    return np.asarray(((masks[:, None] >> shifts[None, :]) & np.uint64(1)).astype(bool))


def is_radar(model: MeasurementModel) -> bool:
    """A ranging sensor with a field of view measured in range and angles (any radar model)."""
    return model.ranging and not isinstance(model, PositionVelocityModel)


class SensorStats:
    def __init__(self, false_alarms: float, detection_probability: float) -> None:
        self.last_t = np.full(N_SENSORS, -np.inf)  # its newest scan's capture time
        self.report_gap_s = np.full(N_SENSORS, np.inf)  # a scanning radar's: since its report before
        self.period_s = np.full(N_SENSORS, np.nan)
        self.look_late = np.zeros(N_SENSORS)  # a scanning radar's pass, a broadcast: this late (periods)
        self.false_alarms = np.full(N_SENSORS, max(false_alarms, _MIN_FALSE_ALARMS))
        self.specified_false_alarms = self.false_alarms.copy()  # per scan, as configured (not learnt)
        # Per scan, all the detections no established track gated, wherever they fell: what the
        # radar makes (`false_alarms` is the share λ spreads evenly, after the site's known places
        # and the clutter profile took theirs). A silence, the pool of young tracks and the
        # summary ask this one.
        self.all_false_alarms = self.false_alarms.copy()
        self.doppler_span = np.full(N_SENSORS, np.nan)
        self.pd_num = np.full(N_SENSORS, detection_probability * _PD_PRIOR_LOOKS)
        self.pd_den = np.full(N_SENSORS, _PD_PRIOR_LOOKS)
        self.sigma_range = np.full(N_SENSORS, np.nan)
        self.sigma_angle = np.full(N_SENSORS, np.nan)
        self.sigma_rate = np.full(N_SENSORS, np.nan)
        self.models: dict[int, MeasurementModel] = {}
        # Per scanning radar, its sweep so far: start, unexplained plots, radial min and max, and
        # the floor of its Doppler span (`swept`).
        self._sweeps: dict[int, list[float]] = {}

    def seed(
        self,
        bit: int,
        false_alarms_per_scan: float | None,
        scan_rate_hz: float | None,
        look_late: float = 0.0,
    ) -> None:
        """Start a sensor from its own configured figures (a radar section's
        `false_alarms_per_scan`, `rate_hz`) rather than the fusion-wide defaults; learning then
        takes over as its scans arrive. `look_late`: how much of a period later than due its
        next look at a target may come (a scanning radar's sweep guard, `timeout_s`)."""
        self.look_late[bit] = look_late
        if false_alarms_per_scan is not None:
            self.false_alarms[bit] = max(false_alarms_per_scan, _MIN_FALSE_ALARMS)
            self.specified_false_alarms[bit] = self.false_alarms[bit]
            self.all_false_alarms[bit] = self.false_alarms[bit]
        if scan_rate_hz is not None and scan_rate_hz > 0:
            self.period_s[bit] = 1.0 / scan_rate_hz

    # -- learning ---------------------------------------------------------------------------
    def scan(self, bit: int, model: MeasurementModel, t: float, z: FloatArray, r: FloatArray) -> None:
        """A scan arrived: its time, accuracy and (range-rate radars) Doppler spread. A scanning
        radar's period is its configured one (its plots and checks come at any time: `sweep`),
        its Doppler spread that of a sweep's plots (`swept`)."""
        self.models[bit] = model
        if not model.sweeps:
            self._timed(bit, t)
        elif t > self.last_t[bit]:
            self.report_gap_s[bit] = t - self.last_t[bit]
        if isinstance(model, PositionVelocityModel):  # (a receiver's scans interleave broadcasters)
            self.period_s[bit] = np.fmax(self.period_s[bit], REMOTE_ID_INTERVAL_S)
            self.look_late[bit] = REMOTE_ID_LATE
        self.last_t[bit] = max(self.last_t[bit], t)
        if not z.shape[0] or not is_radar(model):
            return
        # statistics.median on a list: a frame is tens of values, where np.median's own overhead
        # costs more than sorting them.
        sig = np.sqrt(np.diagonal(r, axis1=1, axis2=2))
        self.sigma_range[bit] = statistics.median(sig[:, 0].tolist())
        self.sigma_angle[bit] = statistics.median(np.maximum(sig[:, 1], sig[:, 2]).tolist())
        if z.shape[1] >= 4:
            self.sigma_rate[bit] = statistics.median(sig[:, 3].tolist())
            if not model.sweeps:
                self._doppler(bit, float(z[:, 3].max() - z[:, 3].min()), 6.0 * self.sigma_rate[bit])

    def _doppler(self, bit: int, spread: float, floor: float) -> None:
        span = max(spread, floor)
        old = self.doppler_span[bit]
        self.doppler_span[bit] = (
            span if not math.isfinite(old) else max(floor, _MEMORY * old + (1 - _MEMORY) * span)
        )

    def swept(
        self, bit: int, t: float, unexplained: float, ungated: float, z: FloatArray, r: FloatArray
    ) -> None:
        """A scanning radar's plots (partial scans at their own times): their unexplained and
        ungated counts and radial spread add up over one period, then count as one scan's
        (`unexplained`, the Doppler span), at its next plot."""
        tally = self._sweeps.get(bit)
        if tally is None or t - tally[0] >= self.period_s[bit]:
            if tally is not None:
                self.unexplained(bit, float(tally[1]), float(tally[5]))
                if math.isfinite(tally[2]):
                    self._doppler(bit, tally[3] - tally[2], tally[4])
            tally = self._sweeps[bit] = [t, 0.0, math.inf, -math.inf, 0.0, 0.0]
        tally[1] += unexplained
        tally[5] += ungated
        if z.shape[1] >= 4 and z.shape[0]:
            tally[2], tally[3] = min(tally[2], float(z[:, 3].min())), max(tally[3], float(z[:, 3].max()))
            tally[4] = max(tally[4], 6.0 * float(np.sqrt(np.median(r[:, 3, 3]))))

    def _timed(self, bit: int, t: float) -> None:
        """The period: from the times of its scans (each a look at its coverage: not a scanning
        radar's, whose period is its configured one)."""
        last = self.last_t[bit]
        if t > last and math.isfinite(last):
            dt = t - last
            p = self.period_s[bit]
            if not math.isfinite(p):
                self.period_s[bit] = dt
            elif dt < p:
                self.period_s[bit] = 0.5 * (p + dt)
            else:
                self.period_s[bit] = 0.95 * p + 0.05 * min(dt, 2.0 * p)

    def unexplained(self, bit: int, count: float, ungated: float) -> None:
        """Detections of a full scan that no established track gated: `ungated` all of them, and
        `count` the share the uniform density explains (the false-alarm estimate of λ)."""
        self.false_alarms[bit] = max(
            _MEMORY * self.false_alarms[bit] + (1 - _MEMORY) * count, _MIN_FALSE_ALARMS
        )
        self.all_false_alarms[bit] = max(
            _MEMORY * self.all_false_alarms[bit] + (1 - _MEMORY) * ungated, _MIN_FALSE_ALARMS
        )

    def detected(self, bit: int, count: int) -> None:
        """Established tracks the sensor should have seen in a scan and detected: looks that hit.
        The looks that missed are counted later, once known to be misses (`missed_earlier`)."""
        if count:
            self.pd_num[bit] = _PD_MEMORY * self.pd_num[bit] + count
            self.pd_den[bit] = _PD_MEMORY * self.pd_den[bit] + count

    def missed_earlier(self, misses: FloatArray) -> None:
        """Per sensor, looks without a detection of targets since seen again: counted now, when
        they are known to have been misses of a present target, not when they happened."""
        self.pd_den += misses

    # -- derived ----------------------------------------------------------------------------
    def pds(self) -> FloatArray:
        """Every sensor's learnt detection probability, kept within [0.3, 0.99]: an estimate from
        few looks must neither declare a sensor blind nor make one miss final."""
        return np.asarray(np.clip(self.pd_num / self.pd_den, _PD_FLOOR, _PD_CEILING), dtype=np.float64)

    def pd_learnt(self, bit: int) -> bool:
        """Whether any look taught the sensor its Pd (else it is the configured one)."""
        return bool(self.pd_den[bit] != _PD_PRIOR_LOOKS)

    def pd(self, bit: int) -> float:
        """One sensor's `pds` (scalar arithmetic: asked several times a scan)."""
        return min(max(float(self.pd_num[bit]) / float(self.pd_den[bit]), _PD_FLOOR), _PD_CEILING)

    def clutter_density(self, bit: int, model: MeasurementModel, dim: int, configured: float) -> float:
        """False alarms per unit of measurement space (λ): the sensor's false alarms per scan over
        its coverage volume (`Coverage.volume`, × `radial_span` with range rate)."""
        if not is_radar(model):
            return max(configured, _MIN_FALSE_ALARMS) / model.measurement_volume()
        volume = model.coverage.volume()
        if dim >= 4:
            volume *= self.radial_span(bit, model)
        return float(self.false_alarms[bit] / volume)

    def radial_span(self, bit: int, model: MeasurementModel) -> float:
        """The range-rates a radar's false alarms spread over (m/s): the learnt Doppler span
        (`RADIAL_SPAN_MPS` before it is learnt), at most twice the span of a radar whose range-rate
        wraps: its innovations are wrapped there (`RadarModel.innovation`) and every false alarm
        folds into it, however widely their reported values seem to spread (a generator that does
        not wrap its false alarms: docs/evaluation.md, "False tracks an hour")."""
        span = float(self.doppler_span[bit])
        span = span if math.isfinite(span) and span > 0 else RADIAL_SPAN_MPS
        unambiguous = model.unambiguous_range_rate_mps if isinstance(model, RadarModel) else None
        return span if unambiguous is None else min(span, 2.0 * unambiguous)

    def radar_sigmas(self, bit: int, rows: int) -> FloatArray | None:
        """A radar's accuracy as its clutter maps are cut: range, angle, angle (and range-rate
        for detections of 4 rows); None until its scans said (its first plots)."""
        sigmas = [float(self.sigma_range[bit])] + [float(self.sigma_angle[bit])] * 2
        if rows == 4:
            sigmas.append(float(self.sigma_rate[bit]))
        return np.array(sigmas) if all(s > 0 for s in sigmas) else None

    def resolution_m(self, bit: int, range_m: FloatArray) -> FloatArray:
        """The sensor's own position accuracy (1σ) at these ranges; NaN before its first detection."""
        return np.asarray(
            np.maximum(self.sigma_range[bit], range_m * self.sigma_angle[bit]), dtype=np.float64
        )

    def timeout_s(self, mask: npt.NDArray[np.uint64], periods: Sequence[float]) -> FloatArray:
        """Per sensor mask (rows) and count of `periods` (columns: maintenance asks four every
        scan, in one pass over the sensors): that many scan periods of the mask's soonest sensor
        (0 when unknown), each sensor's with its own lateness: a scanning radar's pass over a
        target comes up to its sweep guard late (`sweep.SWEEP_GUARD` of a period: its sweep clock
        calls a pass overdue only then), and a track timed out on whole periods coasted after one
        missed sweep just before the next pass fed it; a broadcast up to `REMOTE_ID_LATE`; a
        frame radar's scan is on time."""
        counts = np.asarray(periods, dtype=np.float64)[:, None]
        return self._soonest(mask, (counts + self.look_late) * self.period_s)

    def radar_mask(self) -> np.uint64:
        """The bits of the radars among the sensors seen: the ones whose scans look at a whole
        coverage, so whose Pd is learnt from looks (Remote ID and acoustic reports are not looks)."""
        return np.uint64(sum(1 << bit for bit, model in self.models.items() if is_radar(model)))

    def unseen_for_s(self, mask: npt.NDArray[np.uint64], alpha: FloatArray) -> FloatArray:
        """Per sensor mask: how long the soonest of its sensors takes to miss a present target
        k scans in a row with probability at most `alpha` (per mask), (1 − Pd)^k ≤ α, at its
        learnt Pd and period (0 when unknown, or when α ≥ 1)."""
        scans = np.maximum(np.log(alpha)[:, None] / np.log1p(-self.pds())[None, :], 0.0)
        return self._soonest(mask, (self.period_s * scans)[:, None, :])[:, 0]

    def _soonest(self, mask: npt.NDArray[np.uint64], seconds: FloatArray) -> FloatArray:
        """Per mask, the least of `seconds` over the sensors in it: `seconds` is (columns ×
        sensors), the same for every mask, or (masks × columns × sensors); (masks × columns)."""
        bits = np.flatnonzero(np.isfinite(self.period_s))  # the few that reported
        fed = fed_by(mask, bits)[:, None, :]
        soonest = np.min(np.where(fed, seconds[..., bits], np.inf), axis=2, initial=np.inf)
        return np.asarray(np.where(np.isfinite(soonest), soonest, 0.0), dtype=np.float64)
