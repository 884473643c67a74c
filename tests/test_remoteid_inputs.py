"""Remote ID inputs: the real captures, the two serial line formats, the driver, the simulator."""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cuas_node.drivers.remoteid.carriers import beacon_vendor_ie, nan_action_body
from cuas_node.drivers.remoteid.decode import decode_frames, decode_remoteid, frame_to_dicts
from cuas_node.drivers.remoteid.driver import RemoteIdAssembler, RemoteIdDriver
from cuas_node.drivers.remoteid.encode import encode_message, encode_pack
from cuas_node.drivers.remoteid.lines import MeshMapperLineParser, OdidLineParser
from cuas_node.drivers.remoteid.messages import BasicId, Location, OperatorId, System
from cuas_node.drivers.sim.remoteid import SimRemoteIdBroadcaster
from cuas_node.kernel.measurement import RemoteIdReport
from tests.fakes import ChunkTransport

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "captures" / "remoteid"


def _capture(name: str) -> bytes:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"reference captures not found at {CAPTURES} (../shared is absent)")
    return path.read_bytes()


def _decode(name: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    counts: dict[str, int] = {}
    data = _capture(name)
    frames = list(decode_frames(data, counts))
    return [d for f in frames for d in frame_to_dicts(f)], counts


# --- real captures: values verified by hand from the hex (docs/protocols.md 2.1.10) -----------------------

BEACON_FIRST = [
    {"msg_type": "basic_id", "id_type": "none", "ua_type": "none", "id_text": "MFG1A0123456789"},
    {"msg_type": "location", "status": "undeclared", "direction_deg": 92.0, "speed_h_mps": 20.5,
     "lat": 45.5457468, "lon": -122.9681496, "alt_geo_m": 237.0, "height_m": 100.0, "h_accuracy_m": 30.0,
     "v_accuracy_m": 25.0, "baro_accuracy_m": 10.0, "speed_accuracy_mps": 10.0, "timestamp_s": 0.0,
     "timestamp_accuracy_s": 1.0},
    {"msg_type": "self_id", "desc_type": "text", "description": "Recreational"},
    {"msg_type": "system", "operator_location_type": "takeoff", "classification_type": "eu",
     "operator_lat": 45.5443876, "operator_lon": -122.9726866, "area_count": 1, "area_radius_m": 500.0,
     "category_eu": "open", "class_eu": "c4"},
    {"msg_type": "operator_id", "operator_id": "GBR-OP-123ABCD"},
]  # fmt: skip


def test_wifi_beacon_capture() -> None:
    out, counts = _decode("odid_wifi_bcn_sample.pcap")
    assert counts["packets"] == 21 and counts["frames"] == 21 and len(out) == 105
    for expected, got in zip(BEACON_FIRST, out[:5], strict=True):
        assert got.items() >= expected.items()
        assert (
            got["carrier"] == "wifi-beacon" and got["mac"] == "84:cc:a8:60:43:24" and got["counter"] == 0xD0
        )
        assert got["rssi_dbm"] == -33.0 and got["version"] == 0
    # Invalid fields are left out, not printed as numbers.
    assert not {"speed_v_mps", "alt_baro_m"} & out[1].keys()
    assert not {"area_ceiling_m", "area_floor_m", "operator_alt_geo_m", "timestamp"} & out[3].keys()
    _plausible(out, operator=(45.5443876, -122.9726866))


def test_wifi_nan_capture() -> None:
    out, counts = _decode("odid_wifi_sample.pcap")
    assert counts["packets"] == 63 and counts["non_odid_packets"] == 21  # the NaN sync beacons
    carriers = Counter(d["carrier"] for d in out)
    assert carriers == {"wifi-nan": 21, "wifi-beacon": 21}
    first = out[0]  # frame 2 of the capture, hand-decoded: counter 0x22, a 1-message pack
    assert first.items() >= {"carrier": "wifi-nan", "counter": 0x22, "msg_type": "operator_id",
                             "operator_id": "GBR-OP-123ABCD", "rssi_dbm": -37.0}.items()  # fmt: skip
    _plausible(out, operator=(45.5443876, -122.9726866))


def test_bt5_long_range_capture() -> None:
    out, counts = _decode("odid_bt5_lr_sample.pcapng")
    assert counts["packets"] == 274 and counts["bad_crc"] == 30 and counts["empty_pack"] == 19
    assert counts["frames"] == 274 - 30 - 19
    assert {d["carrier"] for d in out} == {"bt5"} and {d["mac"] for d in out} == {"e0:7d:ea:eb:2f:1c"}
    ids = {(d["id_type"], d["id"], d["ua_type"]) for d in out if d["msg_type"] == "basic_id"}
    assert ids == {("serial_number", "SSEVTFG93700070", "helicopter_or_multirotor")}
    assert {d["operator_id"] for d in out if d["msg_type"] == "operator_id"} == {"FIN87astrdge12kxyz8"}
    assert {d["description"] for d in out if d["msg_type"] == "self_id"} == {"Drone ID demo"}
    # Packet 54 (hand-decoded): counter 0x41, Location byte 1 = 0x23 (airborne, direction and speed
    # invalid), lat = lon = 0: so no position, direction or speed keys at all.
    locations = [d for d in out if d["msg_type"] == "location"]
    assert locations and all(d["status"] == "airborne" for d in locations)
    assert not any(
        {"lat", "lon", "direction_deg", "speed_h_mps", "speed_v_mps"} & d.keys() for d in locations
    )
    assert all(-120 < d["rssi_dbm"] < -20 for d in out)
    times = [d["t"] for d in out]
    assert times == sorted(times) and times[-1] - times[0] < 600


def _plausible(out: list[dict[str, Any]], operator: tuple[float, float]) -> None:
    locations = [d for d in out if d["msg_type"] == "location"]
    assert locations
    for d in locations:
        north = (d["lat"] - operator[0]) * 111_320
        east = (d["lon"] - operator[1]) * 111_320 * math.cos(math.radians(operator[0]))
        assert math.hypot(north, east) < 1000, d
        assert 0 <= d["timestamp_s"] <= 3600 and 0 <= d["direction_deg"] < 360


# --- serial line formats ---------------------------------------------------------------------------------


def test_odid_lines_all_carriers_and_garbage() -> None:
    loc = encode_message(Location(lat=52.0, lon=4.0, alt_geo_m=100.0))
    pack = encode_pack([BasicId(1, 2, b"SER1"), Location(lat=52.0, lon=4.0)])
    body = "0d05" + pack.hex()
    text = (
        "boot banner\r\n"
        f"ODID,bt4,AA:BB:CC:DD:EE:01,-70,0d07{loc.hex()}\r\n"
        f"ODID,bt5,aa:bb:cc:dd:ee:02,-71.5,{body}\n"
        f"ODID,wifi-beacon,aa:bb:cc:dd:ee:03,,{body}\n"
        f"ODID,wifi-nan,,-60,{body}\n"
        "ODID,zigbee,aa:bb:cc:dd:ee:04,-60,0d00\n"  # unknown carrier
        "ODID,bt4,aa:bb:cc:dd:ee:05,-60,0e07" + loc.hex() + "\n"  # not app code 0D
        "ODID,bt4,aa:bb:cc:dd:ee:06,-60,0d07" + loc.hex()[:-2] + "\n"  # truncated message
        "ODID,bt4,aa:bb:cc:dd:ee:07,-60,0d0\n"  # odd hex
        "ODID,wifi-beacon,aa:bb:cc:dd:ee:08,-60,0d01f21900\n"  # empty pack
         + "ODID," + "0" * 2000 + "\n"  # overlong
    )
    parser = OdidLineParser()
    frames = [f for i in range(0, len(text), 7) for f in parser.feed(text[i : i + 7].encode())]
    assert [(f.carrier, f.mac, f.rssi_dbm, f.counter, len(f.messages)) for f in frames] == [
        ("bt4", "aa:bb:cc:dd:ee:01", -70.0, 7, 1),
        ("bt5", "aa:bb:cc:dd:ee:02", -71.5, 5, 2),
        ("wifi-beacon", "aa:bb:cc:dd:ee:03", None, 5, 2),
        ("wifi-nan", None, -60.0, 5, 2),
    ]
    c = parser.counters
    assert (c["ignored_lines"], c["malformed"], c["truncated_message"], c["empty_pack"], c["overlong"]) == (
        1, 3, 1, 1, 1
    )  # fmt: skip


@given(st.binary(max_size=400))
def test_line_parsers_never_raise(data: bytes) -> None:
    OdidLineParser().feed(b"ODID,bt4," + data + b"\n" + data)
    MeshMapperLineParser().feed(b'{"mac":' + data + b"\n" + data)


MESH_LINES = b"""{"heartbeat":"Device is active and running."}
{"mac":"60:60:1f:aa:bb:cc","rssi":-67,"drone_lat":51.501234,"drone_long":-0.141234,"drone_altitude":143,"pilot_lat":51.5,"pilot_long":-0.14,"basic_id":"1581F5FHC23A00001"}
{"mac":"60:60:1f:aa:bb:cc","rssi":-70,"drone_lat":0.000000,"drone_long":0.000000,"drone_altitude":-1000,"pilot_lat":0.000000,"pilot_long":0.000000,"basic_id":""}
{"mac":"60:60:1f:aa:bb:dd","rssi":-80,"drone_lat":51.6,
"""


def test_mesh_mapper_json_lines() -> None:
    parser = MeshMapperLineParser()
    frames = parser.feed(MESH_LINES) + parser.flush()
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.mac, frame.rssi_dbm, frame.source) == ("60:60:1f:aa:bb:cc", -67.0, "drone-mesh-mapper")
    basic, loc, system = frame.messages
    assert isinstance(basic, BasicId) and basic.id == "1581F5FHC23A00001" and basic.id_type is None
    assert isinstance(loc, Location) and (loc.lat, loc.lon, loc.alt_geo_m) == (51.501234, -0.141234, 143.0)
    assert isinstance(system, System) and (system.operator_lat, system.operator_lon) == (51.5, -0.14)
    c = parser.counters
    assert (c["ignored_lines"], c["empty_detections"], c["malformed"]) == (1, 1, 1)
    out = list(decode_remoteid(MESH_LINES))
    assert [d["msg_type"] for d in out] == ["basic_id", "location", "system"]
    assert out[0] == {"msg_type": "basic_id", "source": "drone-mesh-mapper", "mac": "60:60:1f:aa:bb:cc",
                      "rssi_dbm": -67.0, "ua_type": "none", "id": "1581F5FHC23A00001"}  # fmt: skip


def test_decode_sniffs_each_format() -> None:
    pack = encode_pack([OperatorId(0, "OP-1")])
    line = f"ODID,wifi-nan,aa:bb:cc:dd:ee:ff,-50,0d09{pack.hex()}\n".encode()
    out = list(decode_remoteid(line))
    assert out == [
        {"msg_type": "operator_id", "version": 2, "carrier": "wifi-nan", "mac": "aa:bb:cc:dd:ee:ff",
         "rssi_dbm": -50.0, "counter": 9, "operator_id_type": "operator_id", "operator_id": "OP-1"}
    ]  # fmt: skip
    json.dumps(list(decode_remoteid(_capture("odid_bt5_lr_sample.pcapng"))))  # all JSON-serialisable


def _pcap(linktype: int, frames: list[bytes]) -> bytes:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    return head + b"".join(
        struct.pack("<IIII", 1700000000, i, len(f), len(f)) + f for i, f in enumerate(frames)
    )


def test_synthetic_80211_pcap_beacon_and_nan() -> None:
    pack = encode_pack([BasicId(1, 2, b"SYNTH")])
    hdr = (
        bytes.fromhex("0000")
        + bytes(2)
        + bytes.fromhex("ffffffffffff")
        + bytes.fromhex("020000000001") * 2
        + bytes(2)
    )
    beacon = b"\x80" + hdr[1:] + bytes(12) + b"\x00\x04test" + beacon_vendor_ie(3, pack)
    nan = b"\xd0" + hdr[1:] + nan_action_body(4, pack)
    data = _pcap(105, [beacon, nan, beacon[:30], b"\x00"])
    counts: dict[str, int] = {}
    frames = list(decode_frames(data, counts))
    assert [(f.carrier, f.counter, f.mac) for f in frames] == [
        ("wifi-beacon", 3, "02:00:00:00:00:01"), ("wifi-nan", 4, "02:00:00:00:00:01")
    ]  # fmt: skip
    assert counts["non_odid_packets"] == 2
    counts = {}
    assert list(decode_frames(data[:-3], counts)) and counts["truncated"] == 1


@given(st.binary(max_size=200))
def test_garbage_captures_never_raise(tail: bytes) -> None:
    for head in (_pcap(127, [tail]), _pcap(272, [tail]), _pcap(251, [tail]), b"\x0a\x0d\x0d\x0a" + tail):
        list(decode_frames(head))
        list(decode_frames(head + tail))


# --- driver and simulator --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


def test_assembler_joins_by_mac_then_by_serial_across_carriers() -> None:
    sim = SimRemoteIdBroadcaster("SIM-SERIAL-1", 52.0, 4.0, operator_id="NLD-OP-1", self_id="survey", seed=3)
    t0 = 1_700_000_000.0
    data = b"".join(
        sim.step(t0 + 0.1 * k, 52.001, 4.001 + 1e-6 * k, 60.0 + 0.1 * k, (3.0, 4.0, 1.0)) for k in range(60)
    )
    driver = RemoteIdDriver("rid0", ChunkTransport([data]), FakeClock(t0 + 6.0))  # type: ignore[arg-type]
    reports = driver.read()
    assert all(isinstance(r, RemoteIdReport) for r in reports)
    # 6 s at 1 Hz, on two carriers: 12 Location messages, each a report.
    assert len(reports) == 12 and len(driver.assembler) == 1
    r = reports[-1]
    assert isinstance(r, RemoteIdReport)
    assert (r.uas_id, r.id_type, r.serial_number, r.operator_id, r.self_id) == (
        "SIM-SERIAL-1", "serial_number", "SIM-SERIAL-1", "NLD-OP-1", "survey"
    )  # fmt: skip
    assert (r.operator_lat, r.operator_lon, r.ua_type, r.rssi_dbm) == (
        52.0,
        4.0,
        "helicopter_or_multirotor",
        -60.0,
    )
    assert r.heading_deg == pytest.approx(37.0) and r.speed_h_mps == 5.0 and r.speed_v_mps == 1.0
    assert r.vel_enu_mps == pytest.approx((3.0, 4.0, 1.0), abs=0.2)
    assert r.lat == pytest.approx(52.001) and r.alt_geo_m == 65.0 and r.height_m == 5.0
    assert r.h_accuracy_m == 10.0 and r.status == "airborne"
    # t_capture is the drone's own time (within the hour, near the receive time).
    assert r.time_utc is not None and r.t_capture == r.time_utc and abs(r.t_capture - (t0 + 5.0)) < 0.2
    assert {rep.carrier for rep in reports} == {"bt4", "wifi-beacon"}  # type: ignore[union-attr]
    health = driver.health()
    assert health.counters["reports"] == 12 and health.counters["malformed"] == 0


def test_sim_rates() -> None:
    sim = SimRemoteIdBroadcaster("S", 1.0, 2.0, operator_id="O", carriers=("bt4",))
    kinds: Counter[int] = Counter()
    parser = OdidLineParser()
    for k in range(100):  # 10 s at 10 Hz
        for frame in parser.feed(sim.step(1000.0 + 0.1 * k, 1.0, 2.0, 10.0, (0.0, 0.0, 0.0))):
            kinds.update(m.__class__.__name__ for m in frame.messages)
    assert kinds == {"Location": 10, "BasicId": 4, "System": 4, "OperatorId": 4}


def test_mesh_mapper_driver_and_anonymous_locations() -> None:
    driver = RemoteIdDriver("rid1", ChunkTransport([MESH_LINES]), FakeClock(5.0), format="drone-mesh-mapper")  # type: ignore[arg-type]
    (report,) = driver.read()
    assert isinstance(report, RemoteIdReport)
    assert (report.uas_id, report.id_type, report.source, report.alt_geo_m) == (
        "1581F5FHC23A00001", "unknown", "drone-mesh-mapper", 143.0
    )  # fmt: skip
    assembler = RemoteIdAssembler(max_drones=2)
    from cuas_node.drivers.remoteid.carriers import OdidFrame

    loc = Location(lat=1.0, lon=1.0)
    assert assembler.update(OdidFrame(None, None, None, None, (loc,)), "s", 0.0, 0.0) == []
    assert assembler.counts["anonymous_locations"] == 1
    for i in range(5):
        assembler.update(OdidFrame("bt4", f"02:00:00:00:00:0{i}", None, 0, (loc,)), "s", 0.0, 0.0)
    assert len(assembler) == 2 and assembler.counts["drones_forgotten"] == 3
    with pytest.raises(ValueError, match="format"):
        RemoteIdDriver("x", ChunkTransport([]), FakeClock(0.0), format="nmea")  # type: ignore[arg-type]
