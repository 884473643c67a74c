"""The sweep detector of the FPV scanner: noise floor per receiver and channel, hysteresis per
channel, and the merge of neighbouring channels that one transmitter raises together.

`SweepDetector` is pure arithmetic on one sweep of RSSI values (no I/O, no clock), so detection
is tested and tuned without a receiver; `ScanSettings` holds its parameters and the driver's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


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
