"""Remote ID receiver driver: frames from a serial receiver, assembled per drone into reports.

A drone spreads its state over several messages sent at different rates (Location at least once a
second, identity and operator every few seconds) and, on Bluetooth, over separate adverts. Fusion
wants one record per position, so the assembler keeps, per drone, the latest identity and operator
fields and emits a `RemoteIdReport` for every Location message, carrying them along.

A drone is known by its MAC until it sends an ID; an ID seen under two MACs (Bluetooth and Wi-Fi
from one drone, or a rotated random BLE address) joins them into one drone. Memory is bounded: the
least recently heard drones are forgotten beyond `max_drones`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from cuas_node.drivers.driver import Driver, SensorHealth
from cuas_node.drivers.remoteid.carriers import OdidFrame
from cuas_node.drivers.remoteid.lines import MeshMapperLineParser, OdidLineParser
from cuas_node.drivers.remoteid.messages import (
    H_ACCURACY_M,
    HEIGHT_TYPES,
    ID_TYPES,
    OPERATOR_LOCATION_TYPES,
    SPEED_ACCURACY_MPS,
    STATUSES,
    UA_TYPES,
    V_ACCURACY_M,
    BasicId,
    Location,
    OperatorId,
    SelfId,
    System,
    name_of,
    resolve_hour,
)
from cuas_node.drivers.transport import SerialTransport, Transport
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import REMOTE_ID_SKEW_S, AnyMeasurement, RemoteIdReport

LineFormat = Literal["odid-lines", "drone-mesh-mapper"]

# Which ID type names the drone best, for `uas_id` (lower is better).
_ID_PREFERENCE = {1: 0, 2: 1, None: 2, 3: 3, 4: 3, 0: 4}


@dataclass(slots=True)
class _Drone:
    macs: set[str] = field(default_factory=set)
    ids: dict[int | None, str] = field(default_factory=dict)
    ua_type: int | None = None
    self_id: str | None = None
    operator_id: str | None = None
    operator_lat: float | None = None
    operator_lon: float | None = None
    operator_alt_m: float | None = None
    operator_location_type: int | None = None

    def best_id(self) -> tuple[str, int | None] | None:
        if not self.ids:
            return None
        id_type = min(self.ids, key=lambda k: _ID_PREFERENCE.get(k, 5))
        return self.ids[id_type], id_type


def _table(table: tuple[float | None, ...], code: int) -> float | None:
    return table[code] if code < len(table) else None


class RemoteIdAssembler:
    """Per-drone state and the reports it yields (sans-IO, shared by the driver and by tests)."""

    def __init__(self, max_drones: int = 256) -> None:
        self.max_drones = max_drones
        self._drones: OrderedDict[int, _Drone] = OrderedDict()
        self._by_mac: dict[str, _Drone] = {}
        self._by_id: dict[str, _Drone] = {}
        self.counts: dict[str, int] = {"reports": 0, "anonymous_locations": 0, "drones_forgotten": 0}

    def __len__(self) -> int:
        return len(self._drones)

    def update(
        self, frame: OdidFrame, sensor_id: str, t_capture: float, t_receive: float
    ) -> list[RemoteIdReport]:
        ids = [m.id for m in frame.messages if isinstance(m, BasicId) and m.id]
        drone = self._find(frame.mac, ids)
        if drone is None:
            self.counts["anonymous_locations"] += sum(isinstance(m, Location) for m in frame.messages)
            return []
        for m in frame.messages:
            if isinstance(m, BasicId) and m.id:
                drone.ids[m.id_type] = m.id
                drone.ua_type = m.ua_type
                self._by_id[m.id] = drone
            elif isinstance(m, SelfId) and m.desc_type == 0 and m.description:  # free text only
                drone.self_id = m.description
            elif isinstance(m, System):
                drone.operator_lat, drone.operator_lon = m.operator_lat, m.operator_lon
                drone.operator_alt_m = m.operator_alt_geo_m
                drone.operator_location_type = m.operator_location_type
            elif isinstance(m, OperatorId) and m.operator_id:
                drone.operator_id = m.operator_id
        reports = [
            self._report(drone, frame, m, sensor_id, t_capture, t_receive)
            for m in frame.messages
            if isinstance(m, Location)
        ]
        self.counts["reports"] += len(reports)
        return reports

    def _find(self, mac: str | None, ids: list[str]) -> _Drone | None:
        drone = next((self._by_id[i] for i in ids if i in self._by_id), None)
        if drone is None and mac is not None:
            drone = self._by_mac.get(mac)
        if drone is None:
            if mac is None and not ids:
                return None
            drone = _Drone()
            self._drones[id(drone)] = drone
        if mac is not None and self._by_mac.get(mac) is not drone:
            old = self._by_mac.get(mac)
            if old is not None:
                old.macs.discard(mac)
                if not old.macs and not old.ids:  # a MAC-only drone that turned out to be this one
                    self._drones.pop(id(old), None)
            self._by_mac[mac] = drone
            drone.macs.add(mac)
        self._drones.move_to_end(id(drone))
        while len(self._drones) > self.max_drones:
            _, gone = self._drones.popitem(last=False)
            self.counts["drones_forgotten"] += 1
            for key in gone.macs:
                self._by_mac.pop(key, None)
            for key in gone.ids.values():
                if self._by_id.get(key) is gone:
                    del self._by_id[key]
        return drone

    def _report(
        self,
        drone: _Drone,
        frame: OdidFrame,
        loc: Location,
        sensor_id: str,
        t_capture: float,
        t_receive: float,
    ) -> RemoteIdReport:
        time_utc = (
            None if loc.timestamp_s is None else resolve_hour(loc.timestamp_s, t_capture, REMOTE_ID_SKEW_S)
        )
        vel = None
        if loc.speed_h_mps is not None and loc.direction_deg is not None and loc.speed_v_mps is not None:
            heading = math.radians(loc.direction_deg)
            vel = (loc.speed_h_mps * math.sin(heading), loc.speed_h_mps * math.cos(heading), loc.speed_v_mps)
        best = drone.best_id()
        uas_id, id_type = best if best is not None else (frame.mac or "", None)
        return RemoteIdReport(
            sensor_id=sensor_id,
            t_capture=time_utc if time_utc is not None else t_capture,
            t_receive=t_receive,
            uas_id=uas_id,
            lat=loc.lat,
            lon=loc.lon,
            alt_geo_m=loc.alt_geo_m,
            height_m=loc.height_m,
            vel_enu_mps=vel,
            h_accuracy_m=_table(H_ACCURACY_M, loc.h_accuracy),
            v_accuracy_m=_table(V_ACCURACY_M, loc.v_accuracy),
            speed_accuracy_mps=_table(SPEED_ACCURACY_MPS, loc.speed_accuracy),
            ua_type=None if drone.ua_type is None else UA_TYPES[drone.ua_type],
            operator_id=drone.operator_id,
            operator_lat=drone.operator_lat,
            operator_lon=drone.operator_lon,
            rssi_dbm=frame.rssi_dbm,
            carrier=frame.carrier,
            mac=frame.mac,
            id_type="mac" if best is None else ("unknown" if id_type is None else name_of(ID_TYPES, id_type)),
            serial_number=drone.ids.get(1),
            registration_id=drone.ids.get(2),
            session_id=drone.ids.get(4) or drone.ids.get(3),
            self_id=drone.self_id,
            status=None if frame.source != "odid" else name_of(STATUSES, loc.status),
            speed_h_mps=loc.speed_h_mps,
            speed_v_mps=loc.speed_v_mps,
            heading_deg=loc.direction_deg,
            height_type=HEIGHT_TYPES[loc.height_type] if loc.height_m is not None else None,
            alt_baro_m=loc.alt_baro_m,
            baro_accuracy_m=_table(V_ACCURACY_M, loc.baro_accuracy),
            time_utc=time_utc,
            operator_alt_m=drone.operator_alt_m,
            operator_location_type=None
            if drone.operator_location_type is None or frame.source != "odid"
            else name_of(OPERATOR_LOCATION_TYPES, drone.operator_location_type),
            source=frame.source,
        )


class RemoteIdDriver(Driver[OdidFrame]):
    """A Remote ID receiver on a serial port: one `RemoteIdReport` per Location message heard."""

    kind = "remoteid"

    def __init__(
        self,
        sensor_id: str,
        transport: Transport,
        clock: Clock,
        *,
        format: LineFormat = "odid-lines",
        assembler: RemoteIdAssembler | None = None,
    ) -> None:
        parser: OdidLineParser | MeshMapperLineParser
        if format == "odid-lines":
            parser = OdidLineParser()
        elif format == "drone-mesh-mapper":
            parser = MeshMapperLineParser()
        else:
            raise ValueError(f"unknown Remote ID line format {format!r}")
        super().__init__(sensor_id, transport, parser, clock)
        self.format = format
        self.assembler = assembler or RemoteIdAssembler()

    @classmethod
    def from_port(
        cls,
        sensor_id: str,
        port: str,
        clock: Clock,
        *,
        baudrate: int = 115200,
        format: LineFormat = "odid-lines",
    ) -> RemoteIdDriver:
        """An ESP32-class receiver on USB serial (e.g. /dev/ttyUSB0); both firmwares default to 115200."""
        return cls(sensor_id, SerialTransport(port, baudrate), clock, format=format)

    def to_measurements(self, record: OdidFrame, t_capture: float, t_receive: float) -> list[AnyMeasurement]:
        return list(self.assembler.update(record, self.sensor_id, t_capture, t_receive))

    def health(self) -> SensorHealth:
        snapshot = super().health()
        snapshot.counters.update(self.assembler.counts)
        return snapshot
