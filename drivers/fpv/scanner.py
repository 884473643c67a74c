"""The 5.8 GHz FPV scanner: sweeps an RX5808 over the analog FPV channel plan, learns a noise floor
per channel, detects video transmitters with hysteresis and emits `RfPresence` measurements.

Split in three so each part is tested on its own: `SweepDetector` (`cuas_node.drivers.fpv.sweep`) is pure
arithmetic on one sweep of RSSI values (no I/O, no clock), `rssi_ratio_bearing`
(`cuas_node.drivers.fpv.rssi`) is the direction finder for receivers on directional antennas, and
`Rx5808Driver` (here) does the I/O (tune, settle on the injected clock, read the ADC) through the
small bus protocols of `cuas_node.drivers.fpv.hardware`, so the simulator's register-level models run the
very same code. The names of the first two are re-exported here, where callers import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cuas_node.drivers.driver import SensorHealth, age_since
from cuas_node.drivers.fpv.hardware import (
    ADC_FULL_SCALE,
    AdcSpi,
    BlinkaMcp3008Spi,
    BlinkaPins,
    HardwareUnavailable,
    Pins,
    read_mcp3008,
)
from cuas_node.drivers.fpv.rssi import AntennaPattern as AntennaPattern
from cuas_node.drivers.fpv.rssi import Receiver, emitter_power_dbm, rssi_ratio_bearing
from cuas_node.drivers.fpv.rssi import RssiCurve as RssiCurve
from cuas_node.drivers.fpv.rx5808 import SYNTH_B, Channel, channel_table, synth_b_register, write_register
from cuas_node.drivers.fpv.sweep import ScanSettings, SweepDetector
from cuas_node.drivers.fpv.sweep import SweepResult as SweepResult
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import AnyMeasurement, RfPresence, SensorState


@dataclass(frozen=True, slots=True)
class _Slot:
    register: int
    channel: Channel
    """The first channel (in band table order) that tunes to this register; others are aliases
    the module cannot tell apart (F8 = R7, A1 = B8, ...)."""
    aliases: tuple[Channel, ...]


class Rx5808Driver:
    """One RX5808 scanner node (one or more modules tuned together, RSSI through an MCP3008).

    It mirrors the public surface of `cuas_node.drivers.driver.Driver` (sensor_id, kind, state, detail, open,
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
        self.last_seen_mono: float | None = None  # the same on the monotonic clock
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
            age_s=age_since(self.clock, self.last_seen_mono),
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
                    emitter_power_dbm(rssi, result.floor_dbm[:, i]),
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
        if self.state == SensorState.OK:  # a clean sweep is a sign of life, with or without video
            self.last_seen, self.last_seen_mono = float(self._t_capture.max()), self.clock.monotonic()
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
