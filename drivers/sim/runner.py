"""Runs a scenario: simulated sensors write real wire bytes into ptys on the scenario clock, and the
ground truth goes to a JSON-lines file on the same clock, so truth and tracks share one time base."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from drivers.sim.gps import SimGps
from drivers.sim.pty import PtyPort
from drivers.sim.radar import SimRadar
from drivers.sim.scenario import Scenario, SimGpsSpec, SimRadarSpec
from drivers.sim.world import World
from node.clock import ScaledClock
from node.geo import LocalFrame


class Simulation:
    def __init__(self, scenario: Scenario, clock: ScaledClock, seed: int | None = None) -> None:
        self.scenario = scenario
        self.clock = clock
        self.seed = scenario.seed if seed is None else seed
        self.world = World(scenario)
        pos = scenario.node.position
        self.frame = LocalFrame(pos.lat, pos.lon, pos.alt_m)
        self.ports = {spec.id: PtyPort() for spec in scenario.sensors}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.finished = threading.Event()

    def node_config(self) -> dict[str, Any]:
        """The node configuration a technician would write for this scenario's hardware."""
        sc = self.scenario
        sensors: list[dict[str, Any]] = []
        for spec in sc.sensors:
            entry: dict[str, Any] = {
                "kind": spec.kind,
                "id": spec.id,
                "port": self.ports[spec.id].path,
                "mount": spec.mount.model_dump(),
            }
            if isinstance(spec, SimRadarSpec):
                entry.update(
                    max_range_m=spec.max_range_m, fov_az_deg=spec.fov_az_deg, fov_el_deg=spec.fov_el_deg
                )
            sensors.append(entry)
        return {"node": {"id": sc.node.id, "position": sc.node.position.model_dump()}, "sensors": sensors}

    def _periodic(self, rate_hz: float, emit: Callable[[float], None]) -> None:
        """Call `emit(t)` at t = k / rate on the scenario clock until the scenario ends."""
        k = 0
        while not self._stop.is_set():
            t = k / rate_hz
            if t > self.scenario.duration_s:
                return
            self.clock.sleep_until(t)
            emit(t)
            k += 1

    def start(self, truth: IO[str] | None = None) -> None:
        for index, spec in enumerate(self.scenario.sensors):
            port = self.ports[spec.id]
            seed = self.seed * 1000 + index
            if isinstance(spec, SimRadarSpec):
                radar = SimRadar(spec, seed)
                emit = self._radar_emitter(radar, port)
            elif isinstance(spec, SimGpsSpec):
                gps = SimGps(spec, self.scenario.node, seed)
                emit = self._gps_emitter(gps, port)
            self._spawn(spec.rate_hz, emit, f"sim-{spec.id}")
        if truth is not None:
            self._spawn(1.0 / self.scenario.step_s, self._truth_emitter(truth), "sim-truth")
        threading.Thread(target=self._watch_end, name="sim-end", daemon=True).start()

    def _radar_emitter(self, radar: SimRadar, port: PtyPort) -> Callable[[float], None]:
        return lambda t: port.write(radar.frame(self.world.state(t)))

    def _gps_emitter(self, gps: SimGps, port: PtyPort) -> Callable[[float], None]:
        return lambda t: port.write(gps.epoch(self.clock.epoch + t))

    def _truth_emitter(self, out: IO[str]) -> Callable[[float], None]:
        def emit(t: float) -> None:
            state = self.world.state(t)
            if not state.ids:
                return
            lat, lon, alt = self.frame.to_geodetic(state.enu)
            lines = [
                json.dumps(
                    {
                        "t": round(self.clock.epoch + t, 3),
                        "id": tid,
                        "kind": kind,
                        "lat": round(float(lat[i]), 7),
                        "lon": round(float(lon[i]), 7),
                        "alt_m": round(float(alt[i]), 2),
                        "enu_m": [round(float(v), 2) for v in state.enu[i]],
                    },
                    separators=(",", ":"),
                )
                for i, (tid, kind) in enumerate(zip(state.ids, state.kinds, strict=True))
            ]
            out.write("\n".join(lines) + "\n")
            out.flush()

        return emit

    def _spawn(self, rate_hz: float, emit: Callable[[float], None], name: str) -> None:
        thread = threading.Thread(target=self._periodic, args=(rate_hz, emit), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch_end(self) -> None:
        for thread in self._threads:
            thread.join()
        self.finished.set()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1.0)
        for port in self.ports.values():
            port.close()


def open_truth(path: Path | None) -> IO[str] | None:
    return path.open("w", encoding="utf-8") if path else None
