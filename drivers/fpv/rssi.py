"""The RF arithmetic of the FPV scanner: RSSI volts ↔ dBm, antenna patterns, and the bearing of an
emitter from the RSSI it gives several receivers on directional antennas.

Kept apart from the sweep and the driver because it is pure math on numbers (no I/O, no clock,
no state) that the simulator (`cuas_node.drivers.sim.fpv`) also uses to model what each receiver hears.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.kernel.pose import wrap

FloatArray = npt.NDArray[np.float64]


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
        off = wrap(az - self.boresight_rad)
        return self.gain_dbi - np.minimum(12.0 * (off / self.beamwidth_rad) ** 2, self.front_back_db)


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
    return float(wrap(best)), sigma


@dataclass(frozen=True, slots=True)
class Receiver:
    """One RX5808 whose RSSI pin goes to `adc_channel` of the MCP3008. Several receivers share the
    three control lines (they are tuned together, like a diversity receiver) and differ in their
    ADC channel and antenna."""

    adc_channel: int = 0
    antenna: AntennaPattern = AntennaPattern()
    curve: RssiCurve = RssiCurve()


def emitter_power_dbm(rssi_dbm: FloatArray, floor_dbm: FloatArray) -> list[float]:
    """The emitter's own power at each receiver: noise adds to a weak antenna's reading and would
    compress the ratio (pulling bearings towards the middle), so subtract the floor in milliwatts.
    Readings at or under the floor count as 10 dB below it."""
    signal = 10 ** (rssi_dbm / 10) - 10 ** (floor_dbm / 10)
    under = floor_dbm - 10.0
    return [
        float(10 * np.log10(p)) if p > 10 ** (u / 10) else float(u)
        for p, u in zip(signal, under, strict=True)
    ]
