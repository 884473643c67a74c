"""The replay loop: a recording's packets through the same drivers and fusion, in timestamp order.

Why a single-threaded loop instead of the live `Runtime`: the runtime's threads and its 50 ms
queue timeout make the order of events depend on the scheduler, and a regression test needs the
same file to give the same output byte for byte. Here one loop walks the packets in timestamp
order, sets a virtual clock to each packet's time before handing it to its driver (so the driver
stamps exactly the recorded receive time), and runs a fusion cycle on a fixed 50 ms grid of that
clock, publishing tracks with the runtime's own rate limit. `speed` only adds wall-clock waits
between cycles; the output does not depend on it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from cuas_node.config import Config, ConfigError, build_config, deep_merge
from cuas_node.drivers.record_pcapng import FPV_SPI, Channel, Packet, Recording
from cuas_node.replay_sources import ReplayAdc, ReplayClock, ReplayExhausted, ReplayPins, ReplayTransport

CYCLE_S = 0.05
"""The fusion cycle of the replay loop: the live runtime's queue timeout."""


def measurement_record(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "measurement", "kind": type(m).__name__}
    out.update(dataclasses.asdict(m))
    return out


def dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def replay_config(
    recording: Recording, overrides: Mapping[str, Any] | None, workdir: Path, source: str
) -> Config:
    """The recorded config, rebuilt for replay: calibration files restored from the recording,
    recording off, radar CLI ports dropped (nothing answers them), `overrides` (e.g. a broker or
    a node id for `--publish`) merged on top; sensors always come from the recording."""
    header = recording.header
    if header is None or "config" not in header:
        raise ConfigError(
            ["the file carries no cuas-node config header (not made by cuas-node record?)"], source
        )
    data: dict[str, Any] = dict(header["config"])
    restored: dict[str, str] = {}
    for index, (original, content) in enumerate(sorted(header.get("files", {}).items())):
        target = workdir / f"{index}-{Path(original).name}"
        target.write_bytes(base64.b64decode(content))
        restored[original] = str(target)
    sensors = []
    for sensor in data.get("sensors", []):
        entry = dict(sensor)
        for key in ("static_map_file", "cfg_file"):
            if entry.get(key) is not None:
                entry[key] = restored.get(str(entry[key]), entry[key])
        if entry.get("kind") == "ti-mmwave":
            entry["config_port"] = None
        sensors.append(entry)
    data["sensors"] = sensors
    if overrides:
        extra = dict(overrides)
        extra.pop("sensors", None)
        data = deep_merge(data, extra)
    data["record"] = {**data.get("record", {}), "enabled": False}
    return build_config(data, source)


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
        from cuas_node.driver_factory import UnsupportedSensor, build_driver
        from cuas_node.fusion.engine import FusionEngine

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
        self.fusion = FusionEngine(config, session=0)
        self.node_id = config.node.id
        self._seq = {"tracks": 0, "alerts": 0}
        self._last_tracks = -math.inf
        self._position: dict[str, Any] | None = None
        self._batch: list[Any] = []
        self._wall0 = 0.0

    # -- output ---------------------------------------------------------------------------------

    def _emit(self, obj: Mapping[str, Any]) -> None:
        if self.out is not None:
            self.out.write(dumps(obj) + "\n")

    def _measurements(self, ms: list[Any]) -> None:
        for m in ms:
            self._emit(measurement_record(m))
        self.stats.measurements += len(ms)
        self._batch.extend(ms)

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

    def _cycle(self, t: float) -> None:
        """One fusion cycle at time t, as the runtime's `_cycle` does it."""
        self.stats.cycles += 1
        if self.speed is not None:
            wait = self._wall0 + (t - self.clock.t0) / self.speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self.clock.set(t)
        if self._batch:
            self.fusion.process(self._batch)
            self._batch = []
        self.fusion.tick(t)
        position = self.fusion.node_position()
        if position != self._position:
            self._position = position
            if self.sink is not None:
                self.sink.update_info(position)
        min_interval = 1.0 / self.config.mqtt.tracks_max_rate_hz
        if self.fusion.has_changes() and t - self._last_tracks >= min_interval:
            self._last_tracks = t
            self._publish(t, self.fusion.drain_tracks(t))

    def _publish(self, t: float, tracks: list[dict[str, Any]]) -> None:
        self._emit(
            {"type": "tracks", "node_id": self.node_id, "seq": self._seq["tracks"], "t": t, "tracks": tracks}
        )
        self._seq["tracks"] += 1
        self.stats.tracks_messages += 1
        if self.sink is not None:
            self.sink.publish_tracks(t, tracks)
        for event in self.fusion.drain_alerts():
            message: dict[str, Any] = {"type": "alert", "node_id": self.node_id, "seq": self._seq["alerts"]}
            message.update(event)
            self._emit(message)
            self._seq["alerts"] += 1
            self.stats.alerts += 1
            if self.sink is not None:
                self.sink.publish_alert(event)

    def run(self, stop: Callable[[], bool] | None = None) -> ReplayStats:
        self._wall0 = time.monotonic()
        if not self.packets:
            return self.stats
        cycle_us = round(CYCLE_S * 1e6)
        first = self.packets[0][1].ts_us
        k = 1
        for order, packet in self.packets:
            while packet.ts_us > first + k * cycle_us:
                self._cycle((first + k * cycle_us) / 1e6)
                k += 1
            if stop is not None and stop():
                break
            self._feed(order, packet)
        # The end: one last cycle for what the final packets produced, then everything still held.
        end = (first + k * cycle_us) / 1e6
        self._cycle(end)
        self.fusion.flush()
        self.fusion.tick(end)
        if self.fusion.has_changes():
            self._publish(end, self.fusion.drain_tracks(end))
        self.stats.fpv_mismatches = sum(a.mismatches for a in self.adcs.values())
        if self.out is not None:
            self.out.flush()
        return self.stats
