"""Runs a scenario: simulated sensors write real wire bytes into ptys on the scenario clock, and the
ground truth goes to a JSON-lines file on the same clock, so truth and tracks share one time base."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from cuas_node.drivers.sim.gps import SimGps
from cuas_node.drivers.sim.pty import PtyPort
from cuas_node.drivers.sim.radar import SimRadar
from cuas_node.drivers.sim.remoteid import SimRemoteIdBroadcaster
from cuas_node.drivers.sim.scenario import (
    Scenario,
    SimAcousticSpec,
    SimFpvSpec,
    SimGpsSpec,
    SimRadarSpec,
    SimRemoteIdSpec,
    ZoneSpec,
)
from cuas_node.drivers.sim.ti_board import SimTiBoard
from cuas_node.drivers.sim.world import World
from cuas_node.kernel.clock import ScaledClock
from cuas_node.kernel.geo import LocalFrame


class Simulation:
    def __init__(self, scenario: Scenario, clock: ScaledClock, seed: int | None = None) -> None:
        self.scenario = scenario
        self.clock = clock
        self.seed = scenario.seed if seed is None else seed
        self.world = World(scenario)
        pos = scenario.node.position
        self.frame = LocalFrame(pos.lat, pos.lon, pos.alt_m)
        # FPV scanners sit on SPI/GPIO, not a serial port: they get register-level models instead.
        self.ports = {spec.id: PtyPort() for spec in scenario.sensors if not isinstance(spec, SimFpvSpec)}
        self.hardware: dict[str, tuple[Any, Any]] = {}
        # A simulated radar has a second port, its CLI, answered by a model of the board's firmware:
        # the node configures it exactly as it would a real xWR board.
        self.cli_ports = {spec.id: PtyPort() for spec in scenario.sensors if isinstance(spec, SimRadarSpec)}
        self.radars = {
            spec.id: SimRadar(spec, self.seed * 1000 + index)
            for index, spec in enumerate(scenario.sensors)
            if isinstance(spec, SimRadarSpec)
        }
        self.boards = {
            sid: SimTiBoard(self.cli_ports[sid], on_start=radar.restart) for sid, radar in self.radars.items()
        }
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.finished = threading.Event()

    def node_config(self) -> dict[str, Any]:
        """The node configuration a technician would write for this scenario's hardware."""
        sc = self.scenario
        sensors: list[dict[str, Any]] = []
        for spec in sc.sensors:
            entry: dict[str, Any] = {"kind": spec.kind, "id": spec.id, "mount": spec.mount.model_dump()}
            if spec.id in self.ports:
                entry["port"] = self.ports[spec.id].path
            if isinstance(spec, SimAcousticSpec):
                # A pty does not enforce a baud rate, but the config should state a real one.
                entry.update(geometry=spec.geometry, baudrate=4_000_000)
            if isinstance(spec, SimFpvSpec) and spec.receivers:
                entry["receivers"] = [receiver.model_dump() for receiver in spec.receivers]
            if isinstance(spec, SimRadarSpec):
                entry["config_port"] = self.cli_ports[spec.id].path
                entry.update(
                    max_range_m=spec.max_range_m, fov_az_deg=spec.fov_az_deg, fov_el_deg=spec.fov_el_deg
                )
            sensors.append(entry)
        config: dict[str, Any] = {
            "node": {"id": sc.node.id, "position": sc.node.position.model_dump()},
            "sensors": sensors,
        }
        if sc.zones:
            config["zones"] = [self._zone_config(zone) for zone in sc.zones]
        return config

    def _zone_config(self, zone: ZoneSpec) -> dict[str, Any]:
        """A scenario zone as the node's `[[zones]]` table: its ENU polygon in [lat, lon]."""
        entry: dict[str, Any] = zone.model_dump(exclude={"polygon_enu_m", "classes"})
        corners = np.array([(e, n, 0.0) for e, n in zone.polygon_enu_m], dtype=np.float64)
        lat, lon, _ = self.frame.to_geodetic(corners)
        entry["polygon"] = [[round(float(a), 8), round(float(b), 8)] for a, b in zip(lat, lon, strict=True)]
        if zone.classes is not None:
            entry["classes"] = list(zone.classes)
        return entry

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

    def build_hardware(self, receivers: dict[str, list[Any]]) -> None:
        """Register-level FPV models for each simulated scanner, given the receivers (antennas,
        ADC channels) that the node's config builds for it."""
        from cuas_node.drivers.sim.fpv import FpvTransmitter, RfEnvironment, SimFpvBench

        transmitters = [
            FpvTransmitter(
                id=spec.id,
                freq_mhz=spec.fpv.freq_mhz,
                eirp_dbm=spec.fpv.eirp_dbm,
                position=self._target_position(spec.id),
                t_on=spec.waypoints[0].t,
                t_off=spec.waypoints[-1].t,
            )
            for spec in self.scenario.targets
            if spec.fpv is not None
        ]
        for index, spec in enumerate(self.scenario.sensors):
            if isinstance(spec, SimFpvSpec):
                env = RfEnvironment(
                    transmitters,
                    mount_yaw_deg=spec.mount.yaw_deg,
                    offset_m=spec.mount.offset_m,
                    noise_floor_dbm=spec.noise_floor_dbm,
                    seed=self.seed * 1000 + index,
                )
                bench = SimFpvBench(env, self.clock, receivers[spec.id])
                self.hardware[spec.id] = (bench.pins, bench.adc)

    def _target_position(self, target_id: str) -> Callable[[float], tuple[float, float, float]]:
        def position(t: float) -> tuple[float, float, float]:
            state = self.world.state(t)
            if target_id not in state.ids:
                return (1e9, 1e9, 0.0)  # gone: out of reach
            e, n, u = state.enu[state.ids.index(target_id)]
            return (float(e), float(n), float(u))

        return position

    def start_devices(self) -> None:
        """Power up the simulated boards (their CLIs answer) before the node opens its ports."""
        for board in self.boards.values():
            board.start()

    def emitter(self, index: int, spec: Any, port: PtyPort) -> Callable[[float], None] | None:
        """What writes sensor `index`'s bytes into `port` at each of its ticks; None for a sensor
        that is not driven by ticks (the FPV scanner: the node polls its register-level model)."""
        seed = self.seed * 1000 + index
        if isinstance(spec, SimFpvSpec):
            return None
        if isinstance(spec, SimRadarSpec):
            return self._radar_emitter(spec.id, port)
        if isinstance(spec, SimGpsSpec):
            return self._gps_emitter(SimGps(spec, self.scenario.node, seed), port)
        if isinstance(spec, SimAcousticSpec):
            return self._acoustic_emitter(spec, port, seed)
        return self._remote_id_emitter(spec, port, seed)

    def start(self, truth: IO[str] | None = None) -> None:
        for index, spec in enumerate(self.scenario.sensors):
            if spec.id not in self.ports:
                continue  # the FPV scanner: driven by the node's own sweeps through its model
            emit = self.emitter(index, spec, self.ports[spec.id])
            if emit is not None:
                self._spawn(spec.rate_hz, emit, f"sim-{spec.id}")
        if truth is not None:
            self._spawn(1.0 / self.scenario.step_s, self._truth_emitter(truth), "sim-truth")
        threading.Thread(target=self._watch_end, name="sim-end", daemon=True).start()

    def _radar_emitter(self, sensor_id: str, port: PtyPort) -> Callable[[float], None]:
        radar, board = self.radars[sensor_id], self.boards[sensor_id]

        def emit(t: float) -> None:
            if board.streaming:  # like the real board: no frames until sensorStart
                port.write(radar.frame(self.world.state(t)))

        return emit

    def _gps_emitter(self, gps: SimGps, port: PtyPort) -> Callable[[float], None]:
        return lambda t: port.write(gps.epoch(self.clock.epoch + t))

    def _remote_id_emitter(self, spec: SimRemoteIdSpec, port: PtyPort, seed: int) -> Callable[[float], None]:
        broadcasters: dict[str, SimRemoteIdBroadcaster] = {}
        offsets: dict[str, np.ndarray] = {}
        for target in self.scenario.targets:
            rid = target.remote_id
            if rid is None:
                continue
            op_lat, op_lon, op_alt = self.frame.to_geodetic(rid.operator_enu_m)
            broadcasters[target.id] = SimRemoteIdBroadcaster(
                rid.uas_id,
                float(op_lat),
                float(op_lon),
                operator_alt_m=float(op_alt),
                operator_id=rid.operator_id,
                carriers=rid.carriers,
                seed=seed,
            )
            offsets[target.id] = np.asarray(rid.spoof_offset_m, dtype=np.float64)
        receiver = np.asarray(spec.mount.offset_m, dtype=np.float64)

        def emit(t: float) -> None:
            state = self.world.state(t)
            # Every broadcaster in range at once: one geodetic conversion for all (a flood of
            # hundreds, converted one by one, took the simulator longer than real time).
            index = np.array([i for i, tid in enumerate(state.ids) if tid in broadcasters], dtype=np.intp)
            if not index.size:
                return
            distance = np.linalg.norm(state.enu[index] - receiver, axis=1)
            heard = distance <= spec.range_m
            index, distance = index[heard], distance[heard]
            if not index.size:
                return
            claimed = state.enu[index] + np.array([offsets[state.ids[i]] for i in index]).reshape(-1, 3)
            lat, lon, alt = (np.atleast_1d(a) for a in self.frame.to_geodetic(claimed))
            out: list[bytes] = []
            for k, i in enumerate(index):
                rssi = -40.0 - 20.0 * math.log10(max(float(distance[k]), 1.0) / 10.0)
                ve, vn, vu = (float(v) for v in state.vel[i])
                out.append(
                    broadcasters[state.ids[i]].step(
                        self.clock.epoch + t,
                        float(lat[k]),
                        float(lon[k]),
                        float(alt[k]),
                        (ve, vn, vu),
                        rssi_dbm=rssi,
                    )
                )
            port.write(b"".join(out))

        return emit

    def _acoustic_emitter(self, spec: SimAcousticSpec, port: PtyPort, seed: int) -> Callable[[float], None]:
        from cuas_node.drivers.acoustic.geometry import preset
        from cuas_node.drivers.sim.acoustic import SimAcousticArray

        array = SimAcousticArray(
            preset(spec.geometry),
            spec.mount.pose(),
            sample_rate=spec.sample_rate,
            seed=seed,
            epoch=self.clock.epoch,
            ambient_db_spl=spec.ambient_db_spl,
            wind_db_spl=spec.wind_db_spl,
        )

        def emit(t: float) -> None:
            s = self.world.state(t)
            port.write(array.block(t, s.ids, s.kinds, s.enu, s.vel))

        return emit

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
        for board in self.boards.values():
            board.stop()
        for port in [*self.ports.values(), *self.cli_ports.values()]:
            port.close()


def open_truth(path: Path | None) -> IO[str] | None:
    return path.open("w", encoding="utf-8") if path else None
