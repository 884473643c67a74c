"""The replay loop: a recording's packets through the same drivers and fusion, in timestamp order.

Why a single-threaded loop instead of the live `Runtime`: the runtime's threads and its 50 ms
queue timeout make the order of events depend on the scheduler, and a regression test needs the
same file to give the same output byte for byte. Here one loop walks the packets in timestamp
order, sets a virtual clock to each packet's time before handing it to its driver (so the driver
stamps exactly the recorded receive time), and runs the node's core step (`cuas_node.core.step`,
the same one the runtime runs) on a fixed 50 ms grid of that clock. `speed` only adds wall-clock
waits between cycles; the output does not depend on it. JSON lines are built by the wire format
module (`cuas_node.publish.wire`), as the MQTT messages are.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from cuas_node.config import Config, ConfigError
from cuas_node.core.step import StepResult
from cuas_node.drivers.record_pcapng import FPV_SPI, Channel, Packet, Recording
from cuas_node.publish import wire
from cuas_node.replay_sources import ReplayAdc, ReplayClock, ReplayExhausted, ReplayPins, ReplayTransport
from cuas_node.step_lines import StepLines

CYCLE_S = 0.05
"""The fusion cycle of the replay loop: the live runtime's queue timeout."""
SESSION = 0
"""Replay's track ids are `0.<n>`: no session of a running node is 0."""


@dataclasses.dataclass
class ReplayStats:
    packets: int = 0
    measurements: int = 0
    tracks_messages: int = 0
    alerts: int = 0
    cycles: int = 0
    fpv_mismatches: int = 0


class Replay:
    """Builds the drivers and fusion from a recording and runs them; see the module docstring."""

    def __init__(
        self,
        recording: Recording,
        config: Config,
        out: IO[str] | None,
        *,
        sink: Any = None,
        speed: float | None = None,
    ) -> None:
        from cuas_node.assembly import core_setup
        from cuas_node.core.step import NodeCore
        from cuas_node.driver_factory import UnsupportedSensor, build_driver

        self.recording = recording
        self.config = config
        self.out = out
        self.sink = sink
        self.speed = speed
        self.stats = ReplayStats()
        inbound = [p for p in recording.packets if not p.outbound]
        # Timestamp order; ties keep file order (Python's sort is stable).
        self.packets: list[tuple[int, Packet]] = sorted(enumerate(inbound), key=lambda ip: ip[1].ts_us)
        t0 = self.packets[0][1].ts_us / 1e6 if self.packets else 0.0
        self.clock = ReplayClock(t0)
        channels: dict[int, Channel] = {}
        for i in range(len(recording.interfaces)):
            ch = recording.channel(i)
            if ch is not None:
                channels[i] = ch
        self.channels = channels
        self.transports: dict[int, ReplayTransport] = {}
        self.adcs: dict[str, ReplayAdc] = {}
        self.drivers: dict[str, Any] = {}
        fpv_transactions: dict[str, list[tuple[int, bytes, bytes]]] = {}
        hardware: dict[str, tuple[Any, Any]] = {}
        self.fpv_index: dict[int, int] = {}  # packet order → index of that transaction in its ReplayAdc
        for order, packet in self.packets:
            ch = channels.get(packet.interface)
            if ch is not None and ch.kind == "fpv-rx5808" and packet.data[:1] == bytes([FPV_SPI]):
                body = packet.data[1:]
                half = len(body) // 2
                lst = fpv_transactions.setdefault(ch.sensor_id, [])
                self.fpv_index[order] = len(lst)
                lst.append((packet.ts_us, body[:half], body[half:]))
        self.fpv_clocks: dict[str, ReplayClock] = {}
        for sid, transactions in fpv_transactions.items():
            fclock = ReplayClock(t0)
            fclock.set(transactions[0][0] / 1e6)
            self.fpv_clocks[sid] = fclock
            self.adcs[sid] = ReplayAdc(transactions, fclock)
            hardware[sid] = (ReplayPins(), self.adcs[sid])
        for sensor in config.sensors:
            if not sensor.enabled:
                continue
            clock: Any = self.fpv_clocks.get(sensor.id, self.clock)
            if sensor.kind == "fpv-rx5808" and sensor.id not in hardware:
                continue  # nothing recorded for this scanner (and no real SPI bus to fall back on)
            if sensor.kind == "radar":
                continue  # a generic radar has no protocol of its own: nothing to replay for it
            try:
                driver = build_driver(sensor, clock, hardware)
            except UnsupportedSensor as exc:
                raise ConfigError([str(exc)], "recording") from None
            if hasattr(driver, "transport"):
                transport = ReplayTransport()
                driver.transport = transport
                for iface, ch in channels.items():
                    if ch.sensor_id == sensor.id and ch.role == "data":
                        self.transports[iface] = transport
            driver.open()
            self.drivers[sensor.id] = driver
        self.core = NodeCore(core_setup(config))
        self.node_id = config.node.id
        self.lines = StepLines(config.node.id, SESSION, self.out)  # as on MQTT: seq counts from 1
        self._batch: list[Any] = []
        self._wall0 = 0.0

    # -- output ---------------------------------------------------------------------------------

    def _emit(self, obj: Mapping[str, Any]) -> None:
        if self.out is not None:
            self.out.write(wire.dumps(obj) + "\n")

    def _measurements(self, ms: Sequence[Any]) -> None:
        for m in ms:
            self._emit(wire.measurement_record(m))
        self.stats.measurements += len(ms)
        self._batch.extend(ms)

    def _deliver(self, result: StepResult) -> None:
        """What one core step produced, as JSON lines (and through the sink, for `--publish`)."""
        if result.position_changed and self.sink is not None:
            self.sink.update_info(result.position, result.origin)
        if not self.lines.write(result):
            return
        self.stats.tracks_messages, self.stats.alerts = self.lines.tracks_messages, self.lines.alerts
        if self.sink is not None and result.tracks is not None:
            self.sink.publish_tracks(result.t, result.tracks)
            for event in result.alerts:
                self.sink.publish_alert(event)

    # -- the loop -------------------------------------------------------------------------------

    def _feed(self, order: int, packet: Packet) -> None:
        self.stats.packets += 1
        transport = self.transports.get(packet.interface)
        if transport is not None:
            self.clock.set(packet.t)
            transport.feed(packet.data)
            driver = self.drivers[self.channels[packet.interface].sensor_id]
            self._measurements(driver.read())
            return
        index = self.fpv_index.get(order)
        if index is None:
            return
        sid = self.channels[packet.interface].sensor_id
        adc, driver = self.adcs[sid], self.drivers.get(sid)
        if driver is None or adc.position > index:
            return  # already consumed by an earlier read() (one read covers several channels)
        try:
            self._measurements(driver.read())
        except ReplayExhausted:
            adc.position = len(adc.transactions)

    def _take(self, t: float) -> tuple[float, list[Any]]:
        """Close the cycle at time t: wait for the wall clock at `speed`, set the virtual clock."""
        self.stats.cycles += 1
        if self.speed is not None:
            wait = self._wall0 + (t - self.clock.t0) / self.speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self.clock.set(t)
        batch, self._batch = self._batch, []
        return t, batch

    def cycles(self, stop: Callable[[], bool] | None = None) -> Iterator[tuple[float, list[Any]]]:
        """The recording as core-step inputs: (time, measurements the drivers produced since the
        last cycle) on the 50 ms grid, the last one at the end of the recording."""
        self._wall0 = time.monotonic()
        if not self.packets:
            return
        cycle_us = round(CYCLE_S * 1e6)
        first = self.packets[0][1].ts_us
        k = 1
        for order, packet in self.packets:
            while packet.ts_us > first + k * cycle_us:
                yield self._take((first + k * cycle_us) / 1e6)
                k += 1
            if stop is not None and stop():
                break
            self._feed(order, packet)
        yield self._take((first + k * cycle_us) / 1e6)

    def run(self, stop: Callable[[], bool] | None = None) -> ReplayStats:
        end = None
        for t, batch in self.cycles(stop):
            self._deliver(self.core.step(t, batch))
            end = t
        if end is not None:
            # The end of input: fuse what the reorder window still holds, report what changed.
            self._deliver(self.core.finish(end))
        self.stats.fpv_mismatches = sum(a.mismatches for a in self.adcs.values())
        if self.out is not None:
            self.out.flush()
        return self.stats
