"""The 5.8 GHz FPV scanner: sweeps an RX5808 over the analog FPV channel plan, learns a noise floor
per channel, detects video transmitters with hysteresis and emits `RfPresence` measurements.

Split in three so each part is tested on its own: `SweepDetector` is pure arithmetic on one sweep
of RSSI values (no I/O, no clock), `rssi_ratio_bearing` is the direction finder for receivers on
directional antennas, and `Rx5808Driver` does the I/O (tune, settle on the injected clock, read
the ADC) through the small bus protocols of `drivers.fpv.hardware`, so the simulator's
register-level models run the very same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from drivers.base import SensorHealth
from drivers.fpv.hardware import (
    ADC_FULL_SCALE,
    AdcSpi,
    BlinkaMcp3008Spi,
    BlinkaPins,
    HardwareUnavailable,
    Pins,
    read_mcp3008,
)
from drivers.fpv.rx5808 import SYNTH_B, Channel, channel_table, synth_b_register, write_register
from node.clock import Clock
from node.measurement import AnyMeasurement, RfPresence, SensorState

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RssiCurve:
    """The RX5808 RSSI pin, volts ↔ dBm: linear between two calibration points.

    The defaults (0.5 V at -90 dBm, 1.1 V at -40 dBm) are typical of the module, not guaranteed:
    calibrate each module on site (no transmitter / transmitter close by) for absolute dBm. SNR
    over the floor, which is what detection uses, only needs the slope to be roughly right.
    """

    v_low: float = 0.5
    dbm_low: float = -90.0
    v_high: float = 1.1
    dbm_high: float = -40.0

    def __post_init__(self) -> None:
        if self.v_high <= self.v_low or self.dbm_high <= self.dbm_low:
            raise ValueError("RSSI calibration points must increase in both volts and dBm")

    @property
    def db_per_volt(self) -> float:
        return (self.dbm_high - self.dbm_low) / (self.v_high - self.v_low)

    def to_dbm(self, volts: float) -> float:
        return self.dbm_low + (volts - self.v_low) * self.db_per_volt

    def to_volts(self, dbm: float) -> float:
        return self.v_low + (dbm - self.dbm_low) / self.db_per_volt


@dataclass(frozen=True, slots=True)
class AntennaPattern:
    """A receiver's antenna in the sensor frame: azimuth of its boresight (from the sensor's
    boresight towards +x, radians) and a parabolic-in-dB main lobe, gain − min(12·(Δ/θ3dB)², FB),
    the usual sector-antenna approximation. `beamwidth_rad=None` is an omni antenna."""

    boresight_rad: float = 0.0
    beamwidth_rad: float | None = None
    gain_dbi: float = 2.0
    front_back_db: float = 20.0

    @property
    def directional(self) -> bool:
        return self.beamwidth_rad is not None

    def gain_db(self, az_rad: npt.ArrayLike) -> FloatArray:
        az = np.asarray(az_rad, dtype=np.float64)
        if self.beamwidth_rad is None:
            return np.full(az.shape, self.gain_dbi)
        off = _wrap(az - self.boresight_rad)
        return self.gain_dbi - np.minimum(12.0 * (off / self.beamwidth_rad) ** 2, self.front_back_db)


def _wrap(angle: npt.ArrayLike) -> FloatArray:
    """Angles into [-π, π)."""
    return np.asarray((np.asarray(angle, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi)


def rssi_ratio_bearing(
    rssi_dbm: Sequence[float],
    antennas: Sequence[AntennaPattern],
    *,
    sigma_rssi_db: float = 1.0,
    resolution_rad: float = math.radians(0.25),
) -> tuple[float, float] | None:
    """Bearing (sensor frame, radians) and its 1-sigma from the RSSI of one emitter seen by several
    receivers on directional antennas, or None when the geometry says nothing.

    The emitter's power at the node is unknown, so only RSSI *differences* carry direction: the fit
    is P_i = P0 + G_i(φ) in P0 and φ (P0 in closed form, φ on a grid, which is robust to the
    clamped sidelobes where a closed-form two-antenna ratio breaks). A two-antenna ratio has
    mirror solutions (where one antenna's pattern reaches its front-to-back floor), so the search
    is limited to ±one beamwidth around the strongest receiver's boresight with a weak prior
    towards it: the emitter is most likely in front of the antenna hearing it best. Two antennas
    are therefore unambiguous only between their boresights and a little beyond; a ring of three
    or more covers all round. The sigma is the Cramér-Rao bound sigma_rssi / sqrt(Σ(g_i − ḡ)²), g_i = dG_i/dφ.
    """
    if len(rssi_dbm) != len(antennas):
        raise ValueError("one RSSI value per antenna")
    directional = [i for i, a in enumerate(antennas) if a.beamwidth_rad is not None]
    if len(directional) < 2:
        return None
    p = np.asarray([rssi_dbm[i] for i in directional], dtype=np.float64)
    ants = [antennas[i] for i in directional]
    strongest = ants[int(np.argmax(p))]
    span = float(strongest.beamwidth_rad or 0.0)
    n = max(3, int(2 * span / resolution_rad) + 1)
    phi = strongest.boresight_rad + np.linspace(-span, span, n)
    gains = np.stack([a.gain_db(phi) for a in ants])  # (receivers, grid)
    resid = p[:, None] - gains
    resid -= resid.mean(axis=0, keepdims=True)
    # The prior (one beamwidth, 1 sigma, around the strongest boresight) only breaks ties between
    # exact mirror solutions; next to the data term (~100s per rad²) it moves a fit by a fraction of a degree.
    prior = ((phi - strongest.boresight_rad) / span) ** 2
    best = float(phi[int(np.argmin((resid**2).sum(axis=0) / sigma_rssi_db**2 + prior))])
    h = 1e-4
    slopes = np.array([(a.gain_db(best + h) - a.gain_db(best - h)).item() / (2 * h) for a in ants])
    info = float(((slopes - slopes.mean()) ** 2).sum())
    if info < 1e-9:
        return None
    sigma = min(sigma_rssi_db / math.sqrt(info), math.pi)
    return float(_wrap(best)), sigma


@dataclass(frozen=True, slots=True)
class Receiver:
    """One RX5808 whose RSSI pin goes to `adc_channel` of the MCP3008. Several receivers share the
    three control lines (they are tuned together, like a diversity receiver) and differ in their
    ADC channel and antenna."""

    adc_channel: int = 0
    antenna: AntennaPattern = AntennaPattern()
    curve: RssiCurve = RssiCurve()


@dataclass(frozen=True)
class ScanSettings:
    """Sweep and detection parameters; the defaults suit a stock module and antenna."""

    bands: str = "ABEFRL"
    exclude: frozenset[str] = frozenset()
    """Channel labels ("F4") never swept, e.g. the site's own video link or a fixed Wi-Fi AP."""
    settle_s: float = 0.030
    """Wait after tuning before reading RSSI: the module needs > 20-25 ms to lock (rx5808-pro
    uses 25 ms, RotorHazard 30 ms between writes)."""
    adc_reads: int = 2
    """Reads averaged per channel, after one discarded read (the RSSI filter and ADC settle)."""
    enter_db: float = 10.0
    exit_db: float = 6.0
    confirm_sweeps: int = 2
    """Consecutive sweeps at or above floor + enter_db before a channel is declared occupied; it
    stays occupied until a sweep falls below floor + exit_db."""
    learn_margin_db: float = 3.0
    """The floor only rises on readings less than this above it, so it never learns a transmitter
    that appears (it only creeps up with slow drifts such as temperature)."""
    floor_quantile: float = 0.1
    floor_step_db: float = 0.5
    """Per sweep, the floor moves up by step·q when a reading is above it and down by step·(1−q)
    when below: a stochastic estimate of the q-quantile, which sits just under the noise."""
    alias_mhz: float = 4.0
    """Channels whose tuned frequencies are this close (B3/R4, A2/R6/B7, ...) cannot be told apart
    through the channel filter; the ones not reported go in `RfPresence.aliases`."""
    merge_mhz: float = 22.0
    """One transmitter raises neighbouring channels through the ~±10 MHz channel filter; only the
    strongest channel within ±merge_mhz is reported (22 MHz > the 20 MHz F/A/E spacing, < the 37
    MHz Raceband spacing)."""
    read_budget_s: float = 0.1
    vref: float = 3.3
    sigma_rssi_db: float = 1.0

    def __post_init__(self) -> None:
        if self.exit_db > self.enter_db:
            raise ValueError("exit_db must not exceed enter_db (hysteresis)")
        if self.confirm_sweeps < 1 or self.adc_reads < 1:
            raise ValueError("confirm_sweeps and adc_reads must be at least 1")
        if not 0 < self.floor_quantile < 1:
            raise ValueError("floor_quantile must be in (0, 1)")
        if self.settle_s < 0 or self.read_budget_s <= 0:
            raise ValueError("settle_s must be >= 0 and read_budget_s > 0")


@dataclass
class SweepResult:
    """The detector's view after one sweep (arrays over the swept slots)."""

    snr_db: FloatArray
    best_receiver: IntArray
    active: BoolArray
    reported: list[int]
    floor_dbm: FloatArray


@dataclass
class SweepDetector:
    """Per-receiver, per-slot noise floor and per-slot hysteresis, updated once per sweep.

    A slot is one tuned frequency. At the first sweep the floor starts at the lower of the reading
    and the sweep's median over all slots, so a transmitter already on at power-up is not taken
    for the floor (most channels are empty at any time).
    """

    freqs_mhz: FloatArray
    settings: ScanSettings = field(default_factory=ScanSettings)
    floor: FloatArray | None = None
    streak: IntArray = field(init=False)
    active: BoolArray = field(init=False)

    def __post_init__(self) -> None:
        self.streak = np.zeros(self.freqs_mhz.shape[0], dtype=np.int64)
        self.active = np.zeros(self.freqs_mhz.shape[0], dtype=np.bool_)

    def update(self, rssi_dbm: FloatArray) -> SweepResult:
        """`rssi_dbm` is (receivers, slots) for one complete sweep."""
        s = self.settings
        rssi = np.atleast_2d(np.asarray(rssi_dbm, dtype=np.float64))
        if self.floor is None:
            self.floor = np.minimum(rssi, np.median(rssi, axis=1, keepdims=True))
        floor = self.floor
        excess = rssi - floor
        best = np.argmax(excess, axis=0)
        snr = excess[best, np.arange(excess.shape[1])]
        self.streak = np.where(snr >= s.enter_db, self.streak + 1, 0)
        self.active = np.where(self.active, snr >= s.exit_db, self.streak >= s.confirm_sweeps)
        q, step = s.floor_quantile, s.floor_step_db
        learn_up = (excess < s.learn_margin_db) & ~self.active[None, :]
        rise = np.where(learn_up, floor + step * q, floor)
        fall = np.maximum(floor - step * (1 - q), rssi)
        self.floor = np.where(rssi > floor, rise, fall)
        return SweepResult(
            snr_db=snr,
            best_receiver=best.astype(np.int64),
            active=self.active.copy(),
            reported=self._peaks(snr),
            floor_dbm=floor,
        )

    def _peaks(self, snr: FloatArray) -> list[int]:
        """Active slots that are the strongest within ±merge_mhz (ties go to the earlier slot)."""
        out: list[int] = []
        for i in np.flatnonzero(self.active):
            near = np.flatnonzero(np.abs(self.freqs_mhz - self.freqs_mhz[i]) <= self.settings.merge_mhz)
            stronger = (snr[near] > snr[i]) | ((snr[near] == snr[i]) & (near < i))
            if not stronger.any():
                out.append(int(i))
        return out


def _minus_floor(rssi_dbm: FloatArray, floor_dbm: FloatArray) -> list[float]:
    """The emitter's own power at each receiver: noise adds to a weak antenna's reading and would
    compress the ratio (pulling bearings towards the middle), so subtract the floor in milliwatts.
    Readings at or under the floor count as 10 dB below it."""
    signal = 10 ** (rssi_dbm / 10) - 10 ** (floor_dbm / 10)
    under = floor_dbm - 10.0
    return [
        float(10 * np.log10(p)) if p > 10 ** (u / 10) else float(u)
        for p, u in zip(signal, under, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _Slot:
    register: int
    channel: Channel
    """The first channel (in band table order) that tunes to this register; others are aliases
    the module cannot tell apart (F8 = R7, A1 = B8, ...)."""
    aliases: tuple[Channel, ...]


class Rx5808Driver:
    """One RX5808 scanner node (one or more modules tuned together, RSSI through an MCP3008).

    It mirrors the public surface of `drivers.base.Driver` (sensor_id, kind, state, detail, open,
    read, close, health) rather than subclassing it: that base class is built around a byte
    transport and a parser, while this sensor is driven (tune, wait, sample) and has no byte
    stream; a subclass would carry a meaningless transport and parser and override every method.
    """

    kind = "fpv-rx5808"

    def __init__(
        self,
        sensor_id: str,
        pins: Pins,
        adc: AdcSpi,
        clock: Clock,
        *,
        receivers: Sequence[Receiver] = (Receiver(),),
        settings: ScanSettings | None = None,
    ) -> None:
        if not receivers:
            raise ValueError("at least one receiver")
        self.sensor_id = sensor_id
        self.pins = pins
        self.adc = adc
        self.clock = clock
        self.receivers = tuple(receivers)
        self.settings = settings or ScanSettings()
        self.slots = self._build_slots()
        self.detector = SweepDetector(
            np.array([float(s.channel.tuned_mhz) for s in self.slots]), self.settings
        )
        self.state = SensorState.DOWN
        self.detail = "not opened"
        self.measurement_count = 0
        self.last_seen: float | None = None
        self.counters: dict[str, int] = {
            "sweeps": 0,
            "tunes": 0,
            "adc_reads": 0,
            "adc_no_reply": 0,
            "detections": 0,
            "active_channels": 0,
        }
        self._open = False
        self._reset_sweep()

    @classmethod
    def from_pi(
        cls,
        sensor_id: str,
        clock: Clock,
        *,
        data_pin: str,
        clock_pin: str,
        select_pin: str,
        bus: str = "spi0",
        cs_pin: str | None = None,
        receivers: Sequence[Receiver] = (Receiver(),),
        settings: ScanSettings | None = None,
    ) -> Rx5808Driver:
        """The real wiring: RX5808 lines on three GPIOs, RSSI through an MCP3008 on `bus`."""
        return cls(
            sensor_id,
            BlinkaPins(data_pin, clock_pin, select_pin),
            BlinkaMcp3008Spi(bus, cs_pin),
            clock,
            receivers=receivers,
            settings=settings,
        )

    def _build_slots(self) -> list[_Slot]:
        by_register: dict[int, list[Channel]] = {}
        for ch in channel_table(self.settings.bands):
            if ch.label not in self.settings.exclude:
                by_register.setdefault(synth_b_register(ch.freq_mhz), []).append(ch)
        if not by_register:
            raise ValueError("no channels left to sweep")
        return [_Slot(reg, chs[0], tuple(chs[1:])) for reg, chs in by_register.items()]

    def _reset_sweep(self) -> None:
        n = len(self.slots)
        self._index = 0
        self._rssi = np.zeros((len(self.receivers), n))
        self._raw = np.zeros((len(self.receivers), n), dtype=np.int64)
        self._t_capture = np.zeros(n)
        self._t_receive = np.zeros(n)
        self._no_reply = 0

    # -- the Driver surface -------------------------------------------------------------------

    def open(self) -> None:
        self.pins.open()
        try:
            self.adc.open()
        except Exception:
            self.pins.close()
            raise
        self._open = True
        self._reset_sweep()
        self.state = SensorState.OK
        self.detail = ""

    def close(self) -> None:
        self._open = False
        self.pins.close()
        self.adc.close()
        self.state = SensorState.DOWN
        self.detail = "closed"

    def read(self) -> list[AnyMeasurement]:
        """Measure as many channels as fit in `read_budget_s` (each one costs `settle_s`) and
        return the measurements of any sweep completed on the way."""
        if not self._open:
            raise HardwareUnavailable(f"{self.sensor_id} is not open")
        start = self.clock.monotonic()
        out: list[AnyMeasurement] = []
        while True:
            out.extend(self._step())
            elapsed = self.clock.monotonic() - start
            if elapsed + self.settings.settle_s > self.settings.read_budget_s:
                break
        return out

    def health(self) -> SensorHealth:
        return SensorHealth(
            sensor_id=self.sensor_id,
            kind=self.kind,
            state=self.state,
            measurements=self.measurement_count,
            last_seen=self.last_seen,
            counters=dict(self.counters),
            detail=self.detail,
        )

    # -- the sweep ----------------------------------------------------------------------------

    def sweep(self) -> list[RfPresence]:
        """Run exactly one full sweep from wherever the current one stands (tests, calibration)."""
        out: list[RfPresence] = []
        while True:
            out.extend(self._step())
            if self._index == 0:
                return out

    @property
    def sweep_duration_s(self) -> float:
        return len(self.slots) * self.settings.settle_s

    def _step(self) -> list[RfPresence]:
        i = self._index
        write_register(self.pins, SYNTH_B, self.slots[i].register)
        self.counters["tunes"] += 1
        self.clock.sleep(self.settings.settle_s)
        for r, receiver in enumerate(self.receivers):
            raw, volts = self._sample(receiver.adc_channel)
            self._raw[r, i] = raw
            self._rssi[r, i] = receiver.curve.to_dbm(volts)
        self._t_receive[i] = self.clock.monotonic()
        self._t_capture[i] = self.clock.now()
        self._index = (i + 1) % len(self.slots)
        return self._finish_sweep() if self._index == 0 else []

    def _sample(self, channel: int) -> tuple[int, float]:
        s = self.settings
        values: list[int] = []
        for k in range(s.adc_reads + 1):
            sample = read_mcp3008(self.adc, channel)
            self.counters["adc_reads"] += 1
            if not sample.null_bit_ok:
                self.counters["adc_no_reply"] += 1
                self._no_reply += 1
            if k:
                values.append(sample.raw)
        raw = round(sum(values) / len(values))
        return raw, sum(values) / len(values) * s.vref / ADC_FULL_SCALE

    def _finish_sweep(self) -> list[RfPresence]:
        self.counters["sweeps"] += 1
        self._check_signal()
        result = self.detector.update(self._rssi)
        self.counters["active_channels"] = int(result.active.sum())
        antennas = [rx.antenna for rx in self.receivers]
        out: list[RfPresence] = []
        for i in result.reported:
            ch = self.slots[i].channel
            rssi = self._rssi[:, i]
            best = int(result.best_receiver[i])
            bearing = None
            if not any(rssi[r] >= rx.curve.dbm_high for r, rx in enumerate(self.receivers)):
                # A saturated RSSI pin flattens the ratio and would pull the bearing to the middle.
                bearing = rssi_ratio_bearing(
                    _minus_floor(rssi, result.floor_dbm[:, i]),
                    antennas,
                    sigma_rssi_db=self.settings.sigma_rssi_db,
                )
            out.append(
                RfPresence(
                    sensor_id=self.sensor_id,
                    t_capture=float(self._t_capture[i]),
                    t_receive=float(self._t_receive[i]),
                    band=ch.band,
                    channel=ch.number,
                    freq_mhz=float(ch.freq_mhz),
                    rssi_dbm=float(rssi[best]),
                    snr_db=float(result.snr_db[i]),
                    bearing_rad=bearing[0] if bearing else None,
                    sigma_bearing_rad=bearing[1] if bearing else None,
                    aliases=self._aliases(i),
                )
            )
        self.counters["detections"] += len(out)
        if out:
            self.measurement_count += len(out)
            self.last_seen = max(m.t_capture for m in out)
        self._no_reply = 0
        return out

    def _aliases(self, index: int) -> tuple[str, ...]:
        """The other labels on this slot's register and on slots within alias_mhz, in table order."""
        freq = self.detector.freqs_mhz[index]
        out: list[str] = []
        for j, slot in enumerate(self.slots):
            if abs(self.detector.freqs_mhz[j] - freq) <= self.settings.alias_mhz:
                labels = [slot.channel.label] if j != index else []
                out.extend(labels + [ch.label for ch in slot.aliases])
        return tuple(out)

    def _check_signal(self) -> None:
        """Field diagnostics from the raw sweep: an ADC that never answers, or an RSSI pin stuck at
        a rail (module unpowered, RSSI wire off), make every channel look alike."""
        if not self._open:
            return
        if self._no_reply:
            self.state = SensorState.DEGRADED
            self.detail = "MCP3008 not answering (MISO high): check SPI wiring and ADC power"
        elif (self._raw.max(axis=1) <= 5).any():
            self.state = SensorState.DEGRADED
            self.detail = "RSSI reads 0 V on every channel: is the RX5808 powered and its RSSI wired?"
        elif (self._raw.min(axis=1) >= ADC_FULL_SCALE - 6).any():
            self.state = SensorState.DEGRADED
            self.detail = "RSSI at the ADC's full scale: check the RSSI wire and Vref"
        else:
            self.state = SensorState.OK
            self.detail = ""
