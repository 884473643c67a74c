"""Simulated 5.8 GHz FPV bench at register level: an RX5808 that decodes the bit-banged frames on its
three lines, an MCP3008 that decodes SPI command bits, and the RF scene they listen to.

The scanner driver runs unchanged on these models (they implement `cuas_node.drivers.fpv.hardware.Pins` and
`AdcSpi`), so a simulated run exercises the real frame encoder, settling, ADC protocol and
detection. Every pin frame and SPI transaction is recorded with its time, for record/replay.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cuas_node.drivers.fpv.hardware import ADC_FULL_SCALE
from cuas_node.drivers.fpv.rx5808 import (
    SYNTH_B,
    DecodedFrame,
    decode_frame,
    synth_b_register,
    tuned_frequency_mhz,
)
from cuas_node.drivers.fpv.scanner import AntennaPattern, Receiver, RssiCurve
from cuas_node.kernel.clock import Clock, ManualClock
from cuas_node.kernel.pose import Pose, cartesian_to_spherical

RfPowerFn = Callable[[float, float], float]
"""(frequency in MHz, scenario seconds) → dBm at the module's input, noise included."""

Enu = tuple[float, float, float]
_RECORD_LIMIT = 200_000


# Simulated time that only moves when something sleeps: a full sweep runs in microseconds.
SteppedClock = ManualClock


@dataclass(frozen=True)
class FpvTransmitter:
    """An analog video transmitter: fixed ENU position or a function of scenario time (so it can
    ride on a scenario target), on between t_on and t_off."""

    id: str
    freq_mhz: float
    eirp_dbm: float = 14.0  # 25 mW, the usual minimum setting
    position: Enu | Callable[[float], Enu] = (0.0, 100.0, 30.0)
    t_on: float = 0.0
    t_off: float = math.inf

    def enu(self, t: float) -> Enu:
        return self.position(t) if callable(self.position) else self.position


def free_space_loss_db(distance_m: float, freq_mhz: float) -> float:
    return 20 * math.log10(max(distance_m, 1.0)) + 20 * math.log10(freq_mhz) - 27.55


class RfEnvironment:
    """What an RX5808 at the node would receive: Σ transmitters (free-space loss, antenna gain
    towards each, the module's channel filter) over a thermal floor with a little per-frequency
    ripple (so per-channel floors matter) and per-read noise."""

    def __init__(
        self,
        transmitters: Sequence[FpvTransmitter] = (),
        *,
        mount_yaw_deg: float = 0.0,
        offset_m: Enu = (0.0, 0.0, 0.0),
        noise_floor_dbm: float = -90.0,
        noise_sigma_db: float = 0.5,
        ripple_db: float = 1.0,
        filter_halfwidth_mhz: float = 10.0,
        filter_stop_db: float = 40.0,
        seed: int = 1,
    ) -> None:
        self.transmitters = list(transmitters)
        self.pose = Pose.from_angles(mount_yaw_deg, 0.0, 0.0, offset_m)
        self.noise_floor_dbm = noise_floor_dbm
        self.noise_sigma_db = noise_sigma_db
        self.ripple_db = ripple_db
        self.filter_halfwidth_mhz = filter_halfwidth_mhz
        self.filter_stop_db = filter_stop_db
        self.rng = np.random.default_rng(seed)
        self._ripple_phase = self.rng.uniform(0, 2 * math.pi, 2)

    def filter_loss_db(self, offset_mhz: float) -> float:
        """The channel filter: 6 dB down at ±halfwidth, parabolic in dB, flat beyond the stop band."""
        return min(self.filter_stop_db, 6.0 * (offset_mhz / self.filter_halfwidth_mhz) ** 2)

    def floor_dbm(self, freq_mhz: float) -> float:
        a, b = self._ripple_phase
        ripple = 0.6 * math.sin(freq_mhz / 23.0 + a) + 0.4 * math.sin(freq_mhz / 61.0 + b)
        return self.noise_floor_dbm + self.ripple_db * ripple

    def transmitter_dbm(
        self, tx: FpvTransmitter, freq_mhz: float, t: float, antenna: AntennaPattern
    ) -> float:
        """Noise-free power of one transmitter after path loss, antenna and channel filter."""
        rel = self.pose.enu_to_sensor(np.asarray(tx.enu(t), dtype=np.float64))
        r, az, _ = cartesian_to_spherical(rel)
        gain = float(antenna.gain_db(float(az)))
        return (
            tx.eirp_dbm
            - free_space_loss_db(float(r), tx.freq_mhz)
            + gain
            - self.filter_loss_db(freq_mhz - tx.freq_mhz)
        )

    def power_dbm(self, freq_mhz: float, t: float, antenna: AntennaPattern | None = None) -> float:
        ant = antenna or AntennaPattern()
        total_mw = 10 ** (self.floor_dbm(freq_mhz) / 10)
        for tx in self.transmitters:
            if tx.t_on <= t <= tx.t_off:
                total_mw += 10 ** (self.transmitter_dbm(tx, freq_mhz, t, ant) / 10)
        return 10 * math.log10(total_mw) + float(self.rng.normal(0, self.noise_sigma_db))

    def source(self, antenna: AntennaPattern | None = None) -> RfPowerFn:
        """The `rf_power_dbm(freq_mhz, t)` callable for a module on `antenna`."""
        return lambda freq_mhz, t: self.power_dbm(freq_mhz, t, antenna)


@dataclass(frozen=True, slots=True)
class PinFrame:
    """One SELECT-low period on the RX5808 lines: the bits clocked in, decoded when there were 25."""

    t: float
    bits: tuple[bool, ...]
    decoded: DecodedFrame | None


@dataclass(frozen=True, slots=True)
class SpiTransaction:
    t: float
    out: bytes
    reply: bytes


class SimRx5808:
    """The module at register level: samples DATA on rising CLOCK edges while SELECT is low, and on
    SELECT's rising edge applies a complete 25-bit write to its register file. Its RSSI follows the
    Synth B register, but only `settle_s` after the write (before that it still shows the old
    frequency), so a driver that does not wait reads the wrong channel."""

    def __init__(
        self,
        rf_power_dbm: RfPowerFn,
        clock: Clock,
        *,
        curve: RssiCurve | None = None,
        settle_s: float = 0.025,
        v_min: float = 0.40,
        v_max: float = 1.20,
        initial_mhz: int = 5865,
        record_limit: int = _RECORD_LIMIT,
    ) -> None:
        self.rf_power_dbm = rf_power_dbm
        self.clock = clock
        self.curve = curve or RssiCurve()
        self.settle_s = settle_s
        self.v_min, self.v_max = v_min, v_max
        self.registers: dict[int, int] = {SYNTH_B: synth_b_register(initial_mhz)}
        self.frames: deque[PinFrame] = deque(maxlen=record_limit)
        self._data = self._clock = False
        self._select = True
        self._bits: list[bool] = []
        self._previous_mhz = float(initial_mhz)
        self._tuned_at = -math.inf

    # Pins protocol
    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def set_data(self, level: bool) -> None:
        self._data = level

    def set_clock(self, level: bool) -> None:
        if level and not self._clock and not self._select:
            self._bits.append(self._data)
        self._clock = level

    def set_select(self, level: bool) -> None:
        if not level and self._select:
            self._bits = []
        elif level and not self._select:
            self._end_frame()
        self._select = level

    def _end_frame(self) -> None:
        t = self.clock.monotonic()
        bits = tuple(self._bits)
        decoded = decode_frame(bits) if len(bits) == 25 else None
        self.frames.append(PinFrame(t, bits, decoded))
        if decoded is None or not decoded.write:
            return  # the chip ignores short frames; reads are not modelled (nobody uses them)
        if decoded.address == SYNTH_B:
            self._previous_mhz = self.tuned_mhz
            self._tuned_at = t
        self.registers[decoded.address] = decoded.data

    @property
    def tuned_mhz(self) -> float:
        return float(tuned_frequency_mhz(self.registers[SYNTH_B]))

    def rssi_volts(self) -> float:
        t = self.clock.monotonic()
        freq = self.tuned_mhz if t - self._tuned_at >= self.settle_s else self._previous_mhz
        volts = self.curve.to_volts(self.rf_power_dbm(freq, t))
        return min(max(volts, self.v_min), self.v_max)


class SimPinsFanout:
    """Several modules on the same three lines (tuned together, as in a diversity receiver)."""

    def __init__(self, modules: Sequence[SimRx5808]) -> None:
        self.modules = list(modules)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def set_data(self, level: bool) -> None:
        for m in self.modules:
            m.set_data(level)

    def set_clock(self, level: bool) -> None:
        for m in self.modules:
            m.set_clock(level)

    def set_select(self, level: bool) -> None:
        for m in self.modules:
            m.set_select(level)


class SimMcp3008:
    """The ADC at bit level, as the datasheet clocks it: MISO floats (reads 1) until the start bit
    and four control bits have gone in and the input has been sampled, then a null bit (0), the
    result B9..B0 MSB first, then B1..B9 again LSB first if the master keeps clocking, then zeros.
    `inputs` maps channel → a function giving the pin voltage now."""

    def __init__(
        self,
        inputs: Mapping[int, Callable[[], float]],
        clock: Clock,
        *,
        vref: float = 3.3,
        noise_lsb: float = 0.5,
        seed: int = 2,
        record_limit: int = _RECORD_LIMIT,
    ) -> None:
        self.inputs = dict(inputs)
        self.clock = clock
        self.vref = vref
        self.noise_lsb = noise_lsb
        self.rng = np.random.default_rng(seed)
        self.transactions: deque[SpiTransaction] = deque(maxlen=record_limit)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _voltage(self, single_ended: bool, code: int) -> float:
        def pin(ch: int) -> float:
            source = self.inputs.get(ch)
            return source() if source else 0.0

        if single_ended:
            return pin(code)
        pair = code & 0b110
        plus, minus = (pair, pair + 1) if not code & 1 else (pair + 1, pair)
        return max(0.0, pin(plus) - pin(minus))

    def _convert(self, volts: float) -> int:
        raw = volts / self.vref * ADC_FULL_SCALE + float(self.rng.normal(0, self.noise_lsb))
        return min(max(round(raw), 0), ADC_FULL_SCALE - 1)

    def transfer(self, out: bytes) -> bytes:
        n = len(out) * 8
        mosi = [bool((out[i // 8] >> (7 - i % 8)) & 1) for i in range(n)]
        miso = [True] * n
        start = next((i for i, bit in enumerate(mosi) if bit), None)
        if start is not None and start + 4 < n:
            single = mosi[start + 1]
            code = (mosi[start + 2] << 2) | (mosi[start + 3] << 1) | int(mosi[start + 4])
            value = self._convert(self._voltage(single, code))
            msb_first = [bool((value >> (9 - k)) & 1) for k in range(10)]
            tail = [False, *msb_first, *msb_first[-2::-1]]  # null, B9..B0, B1..B9
            for k in range(start + 6, n):
                j = k - (start + 6)
                miso[k] = tail[j] if j < len(tail) else False
        reply = bytes(sum(int(miso[b * 8 + i]) << (7 - i) for i in range(8)) for b in range(len(out)))
        self.transactions.append(SpiTransaction(self.clock.monotonic(), bytes(out), reply))
        return reply


class SimFpvBench:
    """A complete simulated scanner: one module per receiver on shared lines, their RSSI pins on
    the receivers' MCP3008 channels. Give `pins` and `adc` to `Rx5808Driver`."""

    def __init__(
        self, env: RfEnvironment, clock: Clock, receivers: Sequence[Receiver] = (Receiver(),)
    ) -> None:
        self.env = env
        self.modules = [SimRx5808(env.source(rx.antenna), clock) for rx in receivers]
        self.pins = SimPinsFanout(self.modules)
        self.adc = SimMcp3008(
            {rx.adc_channel: m.rssi_volts for rx, m in zip(receivers, self.modules, strict=True)}, clock
        )
