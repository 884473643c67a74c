"""Simulated Remote ID receiver: what an ESP32 sniffer would print for one broadcasting drone.

The bytes are made by the node's own encoder and carrier framing and written as the node's line
protocol, so a simulated drone exercises exactly the decoder path a real one does. Rates follow
F3411 (dynamic data at least once a second, static data at least every 3 s): on Bluetooth 4 every
message is its own advert, on a Wi-Fi beacon the messages due are sent together as one pack.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from cuas_node.drivers.remoteid.carriers import ODID_APP_CODE
from cuas_node.drivers.remoteid.encode import encode_message, encode_pack
from cuas_node.drivers.remoteid.messages import BasicId, Location, OdidMessage, OperatorId, SelfId, System

SIM_CARRIERS = ("bt4", "wifi-beacon")


def _mac(rng: random.Random, carrier: str) -> str:
    raw = bytearray(rng.randbytes(6))
    if carrier.startswith("bt"):
        raw[0] |= 0xC0  # BLE random static address
    else:
        raw[0] = (raw[0] | 0x02) & 0xFE  # locally administered, unicast
    return raw.hex(":")


class SimRemoteIdBroadcaster:
    """One drone's Remote ID as heard by a receiver speaking the line protocol.

    Call `step()` with the drone's geodetic state as often as the simulator ticks; it returns the
    lines due since the previous call (possibly none).
    """

    def __init__(
        self,
        uas_id: str,
        operator_lat: float,
        operator_lon: float,
        *,
        operator_alt_m: float | None = None,
        operator_id: str = "",
        self_id: str = "",
        ua_type: int = 2,
        id_type: int = 1,
        carriers: Sequence[str] = SIM_CARRIERS,
        location_period_s: float = 1.0,
        static_period_s: float = 3.0,
        seed: int = 0,
        version: int = 2,
    ) -> None:
        unknown = set(carriers) - set(SIM_CARRIERS)
        if unknown:
            raise ValueError(f"carriers {sorted(unknown)} not simulated (use {SIM_CARRIERS})")
        if not 0 < location_period_s <= 1.0:
            raise ValueError("F3411 requires Location at least once a second")
        rng = random.Random(f"{seed}:{uas_id}")
        self.carriers = tuple(carriers)
        self.macs = {carrier: _mac(rng, carrier) for carrier in self.carriers}
        self.location_period_s = location_period_s
        self.static_period_s = static_period_s
        self.version = version
        self._static: list[OdidMessage] = [BasicId(id_type, ua_type, uas_id.encode("ascii")[:20], version)]
        if self_id:
            self._static.append(SelfId(0, self_id, version))
        if operator_id:
            self._static.append(OperatorId(0, operator_id, version))
        self._operator = (operator_lat, operator_lon, operator_alt_m)
        self._takeoff_alt_m: float | None = None
        self._last_location: float | None = None
        self._last_static: float | None = None
        self._counters: dict[tuple[str, int], int] = {}

    def _counter(self, carrier: str, kind: int) -> int:
        value = self._counters.get((carrier, kind), -1) + 1 & 0xFF
        self._counters[(carrier, kind)] = value
        return value

    def location(
        self, t: float, lat: float, lon: float, alt_m: float, vel_enu_mps: tuple[float, float, float]
    ) -> Location:
        """The Location message for a state (height above the take-off point: the first altitude seen)."""
        if self._takeoff_alt_m is None:
            self._takeoff_alt_m = alt_m
        ve, vn, vu = vel_enu_mps
        height = alt_m - self._takeoff_alt_m
        return Location(
            status=2 if height > 0.5 else 1,
            height_type=0,
            direction_deg=math.degrees(math.atan2(ve, vn)) % 360.0,
            speed_h_mps=min(math.hypot(ve, vn), 254.25),
            speed_v_mps=max(-62.0, min(62.0, vu)),
            lat=lat,
            lon=lon,
            alt_geo_m=alt_m,
            height_m=height,
            h_accuracy=10,  # < 10 m: a consumer GNSS receiver
            v_accuracy=4,  # < 10 m
            baro_accuracy=0,
            speed_accuracy=3,  # < 1 m/s
            timestamp_s=round(t % 3600.0, 1),
            timestamp_accuracy_s=0.2,
            version=self.version,
        )

    def system(self, t: float) -> System:
        lat, lon, alt = self._operator
        return System(
            operator_location_type=0,
            classification_type=1,
            operator_lat=lat,
            operator_lon=lon,
            category_eu=1,
            class_eu=2,
            operator_alt_geo_m=alt,
            timestamp=float(int(t)),
            version=self.version,
        )

    def step(
        self,
        t: float,
        lat: float,
        lon: float,
        alt_m: float,
        vel_enu_mps: tuple[float, float, float],
        *,
        rssi_dbm: float = -60.0,
    ) -> bytes:
        """Line-protocol bytes for the messages due at UTC time `t` (seconds)."""
        due: list[OdidMessage] = []
        if self._last_location is None or t - self._last_location >= self.location_period_s - 1e-6:
            self._last_location = t
            due.append(self.location(t, lat, lon, alt_m, vel_enu_mps))
        if self._last_static is None or t - self._last_static >= self.static_period_s - 1e-6:
            self._last_static = t
            due = [*self._static, self.system(t), *due]
        if not due:
            return b""
        lines: list[str] = []
        rssi = f"{rssi_dbm:.0f}"
        for carrier in self.carriers:
            mac = self.macs[carrier]
            if carrier == "bt4":
                for message in due:
                    raw = encode_message(message)
                    body = bytes((ODID_APP_CODE, self._counter(carrier, raw[0] >> 4))) + raw
                    lines.append(f"ODID,{carrier},{mac},{rssi},{body.hex()}\n")
            else:
                body = bytes((ODID_APP_CODE, self._counter(carrier, 0xF))) + encode_pack(due, self.version)
                lines.append(f"ODID,{carrier},{mac},{rssi},{body.hex()}\n")
        return "".join(lines).encode("ascii")
