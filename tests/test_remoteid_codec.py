"""Open Drone ID codec: core-c vectors, encoder→decoder round trips, boundaries, garbage."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cuas_node.drivers.parsing import ParseError
from cuas_node.drivers.remoteid.carriers import ble_legacy_adv_data, ble_odid
from cuas_node.drivers.remoteid.encode import encode_direction, encode_message, encode_pack, encode_speed_h
from cuas_node.drivers.remoteid.messages import (
    Auth,
    BasicId,
    Location,
    OperatorId,
    SelfId,
    System,
    decode_message,
    decode_payload,
)

# Vectors from /work/shared/docs/protocols.md 2.1.10, checked there byte for byte against core-c.
LOCATION_HEX = "12225f31fd8768111fb29e43ffc108fc080c085a5339300100"
BASIC_HEX = "02123135383146345846423231474d30303030310000000000"
SYSTEM_HEX = "4205b056111fd08d43ff01000000000000128e088043290900"
BLE4_HEX = "1e16faff0d0712225f31fd8768111fb29e43ffc108fc080c085a5339300100"

VECTOR_LOCATION = Location(
    status=2, height_type=0, direction_deg=275.0, speed_h_mps=12.3, speed_v_mps=-1.7, lat=52.1234567,
    lon=-1.2345678, alt_baro_m=120.5, alt_geo_m=150.0, height_m=30.0, h_accuracy=10, v_accuracy=5,
    baro_accuracy=5, speed_accuracy=3, timestamp_s=1234.5, timestamp_accuracy_s=0.1, version=2,
)  # fmt: skip


def test_core_c_location_vector_both_ways() -> None:
    assert encode_message(VECTOR_LOCATION).hex() == LOCATION_HEX
    loc = decode_message(bytes.fromhex(LOCATION_HEX))
    assert isinstance(loc, Location)
    assert (loc.status, loc.direction_deg, loc.speed_h_mps, loc.speed_v_mps) == (2, 275.0, 12.25, -1.5)
    assert loc.lat == pytest.approx(52.1234567, abs=1e-9) and loc.lon == pytest.approx(-1.2345678, abs=1e-9)
    assert (loc.alt_baro_m, loc.alt_geo_m, loc.height_m, loc.timestamp_s) == (120.5, 150.0, 30.0, 1234.5)
    assert (loc.h_accuracy, loc.v_accuracy, loc.baro_accuracy, loc.speed_accuracy) == (10, 5, 5, 3)
    assert loc.timestamp_accuracy_s == 0.1 and loc.flags == ()


def test_core_c_basic_id_and_system_vectors() -> None:
    basic = BasicId(1, 2, b"1581F4XFB21GM00001", 2)
    assert encode_message(basic).hex() == BASIC_HEX
    decoded = decode_message(bytes.fromhex(BASIC_HEX))
    assert isinstance(decoded, BasicId) and decoded.id == "1581F4XFB21GM00001"
    system = System(
        operator_location_type=1, classification_type=1, operator_lat=52.123, operator_lon=-1.235,
        area_count=1, area_radius_m=0, category_eu=1, class_eu=2, operator_alt_geo_m=95.0,
        timestamp=1700000000.0,
    )  # fmt: skip
    assert encode_message(system).hex() == SYSTEM_HEX
    assert decode_message(bytes.fromhex(SYSTEM_HEX)) == system


def test_ble4_advert_vector() -> None:
    adv = ble_legacy_adv_data(7, bytes.fromhex(LOCATION_HEX))
    assert adv.hex() == BLE4_HEX
    # Flags before the service data must not hide it.
    assert ble_odid(bytes.fromhex("020106") + adv) == (7, bytes.fromhex(LOCATION_HEX))


@pytest.mark.parametrize(
    ("deg", "ew", "code", "back"),
    [(0.0, 0, 0, 0.0), (179.4, 0, 179, 179.0), (179.5, 1, 0, 180.0), (180.0, 1, 0, 180.0),
     (275.0, 1, 95, 275.0), (359.0, 1, 179, 359.0), (359.6, 0, 0, 0.0), (None, 1, 181, None)],
)  # fmt: skip
def test_direction_east_west_bit(deg: float | None, ew: int, code: int, back: float | None) -> None:
    assert encode_direction(deg) == (ew, code)
    loc = decode_message(encode_message(Location(direction_deg=deg)))
    assert isinstance(loc, Location) and loc.direction_deg == back


@pytest.mark.parametrize(
    ("mps", "mult", "code", "back"),
    [(0.0, 0, 0, 0.0), (63.75, 0, 255, 63.75), (63.8, 1, 0, 63.75), (64.2, 1, 1, 64.5),
     (254.25, 1, 254, 254.25), (300.0, 1, 254, 254.25), (None, 1, 255, None)],
)  # fmt: skip
def test_speed_multiplier_boundary(mps: float | None, mult: int, code: int, back: float | None) -> None:
    assert encode_speed_h(mps) == (mult, code)
    loc = decode_message(encode_message(Location(speed_h_mps=mps)))
    assert isinstance(loc, Location) and loc.speed_h_mps == back


def test_invalid_values_decode_to_none() -> None:
    raw = encode_message(Location())  # everything unknown
    assert raw[13:19] == b"\0" * 6 and raw[21:23] == b"\xff\xff" and raw[4] == 126
    loc = decode_message(raw)
    assert isinstance(loc, Location)
    assert loc == Location(), "all-unknown must decode to all-None"


def test_out_of_range_values_are_flagged_not_raised() -> None:
    raw = bytearray(encode_message(Location(lat=10.0, lon=10.0)))
    raw[5:9] = (95 * 10**7).to_bytes(4, "little", signed=True)  # latitude 95°
    raw[1] |= 0x02  # EW bit: code 0 + 180 ... then code 200 → 380°
    raw[2] = 200
    raw[4] = 0x81  # -127 → -63.5 m/s
    raw[21:23] = (36001).to_bytes(2, "little")
    raw[19] = 0xFD  # v accuracy 15, h accuracy 13: reserved
    loc = decode_message(bytes(raw))
    assert isinstance(loc, Location)
    assert (
        loc.lat is None and loc.direction_deg is None and loc.speed_v_mps is None and loc.timestamp_s is None
    )
    assert set(loc.flags) == {
        "position_out_of_range", "direction_out_of_range", "speed_v_out_of_range", "timestamp_out_of_range",
        "h_accuracy_reserved", "v_accuracy_reserved",
    }  # fmt: skip


def test_auth_pages_and_protocol_versions() -> None:
    page0 = Auth(1, 0, bytes(range(17)), last_page_index=1, length=40, timestamp=1700000000.0, version=1)
    page1 = Auth(1, 1, bytes(range(100, 123)), version=1)
    for message in (page0, page1):
        assert decode_message(encode_message(message)) == message
    bad = decode_message(encode_message(Auth(1, 0, b"", last_page_index=0, length=200)))
    assert bad.flags == ("auth_length_inconsistent",)
    # Any protocol version decodes (version 15 does not exist yet).
    assert decode_message(encode_message(SelfId(0, "hello", version=15))) == SelfId(0, "hello", version=15)


def test_strings_fill_the_field_without_terminator() -> None:
    op = OperatorId(0, "X" * 20)
    assert decode_message(encode_message(op)) == op
    sid = SelfId(0, "Y" * 23)
    assert decode_message(encode_message(sid)) == sid


# --- round trips ---------------------------------------------------------------------------------------

opt = st.none
lat_s = st.floats(-90, 90).filter(lambda v: abs(v) > 1e-6)
lon_s = st.floats(-180, 180).filter(lambda v: abs(v) > 1e-6)
alt_s = st.one_of(opt(), st.floats(-999.5, 31767.5))


@given(
    status=st.integers(0, 4), height_type=st.integers(0, 1),
    direction=st.one_of(opt(), st.floats(0, 360, exclude_max=True)),
    speed=st.one_of(opt(), st.floats(0, 254.25)),
    vspeed=st.one_of(opt(), st.floats(-62, 62)), pos=st.one_of(opt(), st.tuples(lat_s, lon_s)),
    baro=alt_s, geo=alt_s, height=alt_s,
    acc=st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 6), st.integers(0, 4)),
    ts=st.one_of(opt(), st.floats(0, 3600)), ts_acc=st.integers(0, 15),
    version=st.integers(0, 15),
)  # fmt: skip
def test_location_round_trip(
    status: int, height_type: int, direction: float | None, speed: float | None, vspeed: float | None,
    pos: tuple[float, float] | None, baro: float | None, geo: float | None, height: float | None,
    acc: tuple[int, int, int, int], ts: float | None, ts_acc: int, version: int,
) -> None:  # fmt: skip
    lat, lon = pos if pos else (None, None)
    sent = Location(
        status, height_type, direction, speed, vspeed, lat, lon, baro, geo, height, *acc, ts,
        ts_acc / 10 or None, version,
    )  # fmt: skip
    raw = encode_message(sent)
    assert len(raw) == 25
    got = decode_message(raw)
    assert isinstance(got, Location) and got.flags == ()
    assert (got.status, got.height_type, got.version) == (status, height_type, version)
    assert (got.h_accuracy, got.v_accuracy, got.baro_accuracy, got.speed_accuracy) == acc
    assert got.timestamp_accuracy_s == (ts_acc / 10 or None)
    if direction is None:
        assert got.direction_deg is None
    else:
        assert got.direction_deg is not None and abs((got.direction_deg - direction + 180) % 360 - 180) <= 0.5
    if speed is None:
        assert got.speed_h_mps is None
    else:
        assert got.speed_h_mps is not None and abs(got.speed_h_mps - speed) <= (
            0.125 if speed <= 63.75 else 0.375
        )
    if vspeed is None:
        assert got.speed_v_mps is None
    else:  # truncation toward zero
        assert (
            got.speed_v_mps is not None and abs(got.speed_v_mps) <= abs(vspeed) < abs(got.speed_v_mps) + 0.5
        )
    if lat is None or lon is None:
        assert got.lat is None and got.lon is None
    else:
        assert got.lat is not None and got.lon is not None
        assert abs(got.lat - lat) <= 0.51e-7 and abs(got.lon - lon) <= 0.51e-7
    for sent_alt, got_alt in ((baro, got.alt_baro_m), (geo, got.alt_geo_m), (height, got.height_m)):
        if sent_alt is None:
            assert got_alt is None
        else:  # truncation down to the 0.5 m grid
            assert got_alt is not None and got_alt - 1e-6 <= sent_alt < got_alt + 0.5
    if ts is None:
        assert got.timestamp_s is None
    else:
        assert got.timestamp_s is not None and abs(got.timestamp_s - ts) <= 0.05 + 1e-9


text20 = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
text23 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=23).map(str.rstrip)


@given(
    basic=st.builds(BasicId, st.integers(0, 15), st.integers(0, 15), st.binary(min_size=20, max_size=20),
                    st.integers(0, 15)),
    self_id=st.builds(SelfId, st.integers(0, 255), text23, st.integers(0, 15)),
    operator=st.builds(OperatorId, st.integers(0, 255), text20, st.integers(0, 15)),
    auth=st.builds(Auth, st.integers(0, 15), st.integers(1, 15), st.binary(min_size=23, max_size=23),
                   version=st.integers(0, 15)),
    auth0=st.builds(Auth, st.integers(0, 15), st.just(0), st.binary(min_size=17, max_size=17),
                    st.integers(0, 15), st.integers(0, 255),
                    st.one_of(opt(), st.integers(1546300801, 1546300800 + 2**32 - 1).map(float))),
)  # fmt: skip
def test_other_messages_round_trip_exactly(
    basic: BasicId, self_id: SelfId, operator: OperatorId, auth: Auth, auth0: Auth
) -> None:
    for message in (basic, self_id, operator, auth, auth0):
        assert decode_message(encode_message(message)) == message
    # ... and as a pack
    messages = [basic, self_id, operator, auth, auth0]
    result = decode_payload(encode_pack(messages))
    assert result.errors == [] and result.messages == messages


@given(
    op=st.one_of(opt(), st.tuples(lat_s, lon_s)), count=st.integers(0, 65535), radius=st.integers(0, 255),
    ceiling=alt_s, floor=alt_s, cat=st.integers(0, 3), klass=st.integers(0, 7), op_alt=alt_s,
    ts=st.one_of(opt(), st.integers(1546300801, 1546300800 + 2**32 - 1)), kinds=st.tuples(st.integers(0, 3),
    st.integers(0, 7)),
)  # fmt: skip
def test_system_round_trip(
    op: tuple[float, float] | None, count: int, radius: int, ceiling: float | None, floor: float | None,
    cat: int, klass: int, op_alt: float | None, ts: int | None, kinds: tuple[int, int],
) -> None:  # fmt: skip
    lat, lon = op if op else (None, None)
    sent = System(kinds[0], kinds[1], lat, lon, count, radius * 10.0, ceiling, floor, cat, klass, op_alt,
                  None if ts is None else float(ts))  # fmt: skip
    got = decode_message(encode_message(sent))
    assert isinstance(got, System)
    assert (got.operator_location_type, got.classification_type, got.area_count) == (*kinds, count)
    assert (got.area_radius_m, got.category_eu, got.class_eu, got.timestamp) == (
        radius * 10.0,
        cat,
        klass,
        sent.timestamp,
    )
    if lat is None:
        assert got.operator_lat is None
    else:
        assert got.operator_lat is not None and math.isclose(got.operator_lat, lat, abs_tol=0.51e-7)
    for a, b in ((ceiling, got.area_ceiling_m), (floor, got.area_floor_m), (op_alt, got.operator_alt_geo_m)):
        assert (a is None and b is None) or (a is not None and b is not None and b - 1e-6 <= a < b + 0.5)


# --- garbage -------------------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_any_payload_is_counted_never_fatal(data: bytes) -> None:
    result = decode_payload(data)
    assert result.messages or result.errors


@given(st.binary(min_size=25, max_size=25))
def test_any_25_bytes_decode_or_parse_error(data: bytes) -> None:
    try:
        message = decode_message(data)
    except ParseError:
        assert data[0] >> 4 not in range(6)
    else:
        assert message.version == data[0] & 0x0F


def test_pack_errors_are_named() -> None:
    pack = encode_pack([SelfId(0, "a"), OperatorId(0, "b"), BasicId(1, 2, b"S")])
    assert decode_payload(pack[:-1]).errors == ["truncated_pack"]
    assert len(decode_payload(pack[:-1]).messages) == 2
    assert decode_payload(b"\xf2\x19\x00").errors == ["empty_pack"]
    assert decode_payload(b"\xf2\x18\x01" + bytes(24)).errors == ["bad_pack_message_size"]
    assert decode_payload(b"\xf2\x19\x01" + b"\x70" + bytes(24)).errors == ["unknown_message_type"]
    assert decode_payload(b"\xf2\x19\x01" + b"\xf2" + bytes(24)).errors == ["nested_pack"]
    assert decode_payload(bytes(10)).errors == ["truncated_message"]
    assert decode_payload(b"").errors == ["empty_payload"]
    with pytest.raises(ValueError, match=r"1\.\.9"):
        encode_pack([])
