"""NMEA driver: gpsd's regression logs as golden answers, framing edge cases, fuzzing, encoder."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuas_node.drivers.nmea.decode import decode_nmea, fix_to_dict
from cuas_node.drivers.nmea.driver import NmeaDriver
from cuas_node.drivers.nmea.encode import encode_gga, encode_rmc, frame
from cuas_node.drivers.nmea.fields import KNOT_MPS, checksum
from cuas_node.drivers.nmea.parser import MAX_SENTENCE_BYTES, NmeaFix, NmeaParser
from cuas_node.drivers.transport import SerialTransport
from cuas_node.kernel.measurement import GpsFix
from tests.fakes import ChunkTransport

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GPS_DIR = SHARED / "captures" / "gps"
LOGS = [
    "mt3339",
    "hab-gpspi",
    "neo-m8n",
    "quectel-L70",
    "ublox-neo-m9n-nmea",
    "nmea-fuzzy-cases",
    "tcp-torture",
]

# Sentence types whose time of day gpsd's echo lets us read, and where the time field is.
_TIME_FIELD = {"GGA": 1, "RMC": 1, "ZDA": 1, "GST": 1, "GRS": 1, "GBS": 1, "GNS": 1, "GLL": 5}


def _log_path(name: str) -> Path:
    path = GPS_DIR / f"{name}.log"
    if not path.exists():
        pytest.skip(f"reference captures not found at {GPS_DIR} (../shared is absent)")
    return path


def _log_bytes(name: str) -> bytes:
    """The raw receiver bytes: `#` comment lines out, and gpsfake's `|` write-delay cookies out."""
    data = _log_path(name).read_bytes()
    if name == "tcp-torture":
        data = data.replace(b"|", b"")
    return b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"#"))


def _tod_ms_from_field(text: str) -> int:
    return round(((int(text[0:2]) * 60 + int(text[2:4])) * 60 + float(text[4:])) * 1000)


def _tod_ms_from_iso(text: str) -> int:
    clock = text.split("T")[1].rstrip("Z")
    hh, mm, ss = clock.split(":")
    return round(((int(hh) * 60 + int(mm)) * 60 + float(ss)) * 1000)


@dataclass
class _GpsdEpoch:
    kinds: set[str] = field(default_factory=set)
    rmc_date: date | None = None
    tpv: dict[str, Any] | None = None


def _gpsd_epochs(name: str) -> dict[int, _GpsdEpoch]:
    """gpsd's answer per time of day (ms): the last TPV it printed for it, and the sentences seen.

    The .chk file echoes every sentence gpsd accepted, followed by the JSON it emitted. A TPV with a
    `time` belongs to that time of day (gpsd's date may be wrong, its time of day is not); before
    gpsd knows a date its TPVs carry no time and belong to the last time-stamped sentence echoed.
    """
    chk = _log_path(name).with_suffix(".log.chk")
    epochs: dict[int, _GpsdEpoch] = {}
    current: int | None = None
    for line in chk.read_text().splitlines():
        if line.startswith("$"):
            parts = line.split("*")[0].split(",")
            kind = parts[0][3:]
            index = _TIME_FIELD.get(kind)
            if index is None or len(parts) <= index or not parts[index]:
                continue
            current = _tod_ms_from_field(parts[index])
            epoch = epochs.setdefault(current, _GpsdEpoch())
            epoch.kinds.add(kind)
            if kind == "RMC" and parts[9]:
                ddmmyy = parts[9]
                epoch.rmc_date = date(2000 + int(ddmmyy[4:6]), int(ddmmyy[2:4]), int(ddmmyy[0:2]))
        elif line.startswith("{"):
            obj = json.loads(line)
            if obj.get("class") != "TPV":
                continue
            tod = _tod_ms_from_iso(obj["time"]) if "time" in obj else current
            assert tod is not None, "a TPV before any time-stamped sentence"
            epochs.setdefault(tod, _GpsdEpoch()).tpv = obj
    return epochs


def _parse_all(data: bytes, parser: NmeaParser | None = None) -> tuple[list[NmeaFix], dict[str, int]]:
    parser = parser or NmeaParser()
    fixes = parser.feed(data)
    fixes += parser.flush()
    return fixes, parser.counters


def _parse_chunks(chunks: list[bytes]) -> tuple[list[NmeaFix], dict[str, int]]:
    parser = NmeaParser()
    fixes: list[NmeaFix] = []
    for chunk in chunks:
        fixes += parser.feed(chunk)
        assert parser.buffered_bytes <= MAX_SENTENCE_BYTES
    fixes += parser.flush()
    return fixes, parser.counters


# --- gpsd golden answers -------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOGS)
def test_matches_gpsd(name: str) -> None:
    fixes, counters = _parse_all(_log_bytes(name))
    ours = {round(f.time_of_day_s * 1000): f for f in fixes}
    assert len(ours) == len(fixes), "two epochs with one time of day in a log that never repeats one"
    gpsd = _gpsd_epochs(name)

    compared = 0
    decodable = [tod for tod, e in gpsd.items() if e.kinds & {"GGA", "RMC"}]  # not a lone GLL
    for tod in decodable:
        expected = gpsd[tod]
        tpv = expected.tpv
        if tpv is None:
            # gpsd reports an epoch when it sees the receiver's cycle end; a log may stop before.
            assert tod == decodable[-1], f"{name}: gpsd silent about {tod / 1000} s of day"
            if tod in ours and ours[tod].valid:
                compared += 1
            continue
        if tpv.get("mode", 0) < 2 or "lat" not in tpv:
            assert tod not in ours or not ours[tod].valid, f"{name} {tod}: fix where gpsd has none"
            continue
        fix = ours.get(tod)
        assert fix is not None and fix.valid, f"{name}: no fix at {tod / 1000} s of day"
        assert fix.lat is not None and fix.lon is not None
        assert fix.lat == pytest.approx(tpv["lat"], abs=1e-6)
        assert fix.lon == pytest.approx(tpv["lon"], abs=1e-6)
        if "GGA" in expected.kinds:
            assert fix.alt_msl_m == pytest.approx(tpv.get("altMSL", tpv.get("alt")), abs=1e-3)
            if "geoidSep" in tpv:
                assert fix.geoid_sep_m == pytest.approx(tpv["geoidSep"], abs=1e-3)
        if "speed" in tpv and "RMC" in expected.kinds:
            assert fix.speed_mps == pytest.approx(tpv["speed"], abs=1e-3)
        if expected.rmc_date is not None:
            assert fix.t is not None
            when = datetime.fromtimestamp(fix.t, UTC)
            assert when.date() == expected.rmc_date  # the RMC's own date, not gpsd's rollover guess
            assert round((fix.t % 86400) * 1000) == tod
        compared += 1

    valid = [f for f in fixes if f.valid]
    assert compared == len(valid) > 0, "every fix of ours must be one of gpsd's, and the other way round"
    assert counters["checksum_errors"] == 0 and counters["malformed"] == 0 and counters["overlong"] == 0
    assert counters["fixes"] == len(valid) and counters["epochs"] == len(fixes)


def test_gpsd_log_details() -> None:
    # tcp-torture starts mid-sentence (noise, not a sentence), and its ZDA is two seconds after the
    # RMC: an epoch of its own that knows the date but has no position.
    fixes, counters = _parse_all(_log_bytes("tcp-torture"))
    assert counters["dropped_bytes"] == len(b",1.7,-30.40,M,-13.9,M,,*7D")
    assert counters["sentences"] == 7 and counters["ignored"] == 4
    assert [f.sentences for f in fixes] == [("GGA", "RMC"), ("ZDA",)]
    zda = fixes[1]
    assert not zda.valid and zda.lat is None and zda.quality is None
    assert zda.t == datetime(2007, 12, 23, 19, 32, 23, tzinfo=UTC).timestamp()
    # The doc's worked example (protocols.md 4.1) and GGA quality/sats/hdop fields.
    first = _parse_all(_log_bytes("mt3339"))[0][0]
    assert (first.quality, first.num_sats, first.hdop) == (2, 10, 0.98)
    assert first.lat == pytest.approx(44.0688433, abs=1e-7)
    assert first.lon == pytest.approx(-121.3141917, abs=1e-7)
    assert first.course_deg == 225.97
    # Quectel: proprietary $PMTK/$PQ replies are valid sentences we ignore.
    counters = _parse_all(_log_bytes("quectel-L70"))[1]
    assert counters["ignored"] >= 8


@pytest.mark.parametrize("name", LOGS)
def test_byte_by_byte_equals_whole_file(name: str) -> None:
    data = _log_bytes(name)
    whole = _parse_all(data)
    assert _parse_chunks([data[i : i + 1] for i in range(len(data))]) == whole


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=40), name=st.sampled_from(LOGS))
def test_random_splits(cuts: list[int], name: str) -> None:
    data = _log_bytes(name)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert _parse_chunks(chunks) == _parse_all(data)


def test_decode_skips_comments_and_omits_unknowns() -> None:
    raw = _log_path("mt3339").read_bytes()
    # A commented-out sentence with a valid checksum must not be decoded.
    commented = b"# " + encode_gga(0.0, 1.0, 2.0, 3.0)
    records = list(decode_nmea(commented + raw))
    assert len(records) == 30
    assert records[0] == {
        "type": "nmea_fix",
        "t": datetime(2015, 4, 13, 20, 26, 40, tzinfo=UTC).timestamp(),
        "time_of_day_s": 73600.0,
        "lat": 44.068843333,
        "lon": -121.314191667,
        "alt_msl_m": 1127.7,
        "geoid_sep_m": -19.6,
        "quality": 2,
        "num_sats": 10,
        "hdop": 0.98,
        "speed_mps": 0.015,
        "course_deg": 225.97,
    }
    for record in records:
        assert None not in record.values()
        json.dumps(record)
    # A GGA-only stream: no date, so no `t`; no fix, so no position keys.
    no_fix = frame("GPGGA,010000.00,,,,,0,03,9.90,,M,47.50,M,,")
    assert list(decode_nmea(no_fix)) == [
        {
            "type": "nmea_fix",
            "time_of_day_s": 3600.0,
            "geoid_sep_m": 47.5,
            "quality": 0,
            "num_sats": 3,
            "hdop": 9.9,
        }
    ]


# --- framing and checksums -----------------------------------------------------------------------

GGA = b"$GPGGA,202640.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,-19.6,M,0000,0000*6C\r\n"


def test_checksum_enforced() -> None:
    fixes, counters = _parse_all(GGA.replace(b"1127.7", b"1127.8"))
    assert fixes == [] and counters["checksum_errors"] == 1 and counters["sentences"] == 0
    fixes, counters = _parse_all(GGA.replace(b"*6C", b""))
    assert fixes == [] and counters["checksum_errors"] == 1
    fixes, counters = _parse_all(GGA.replace(b"*6C", b"*6"))
    assert fixes == [] and counters["checksum_errors"] == 1
    fixes, counters = _parse_all(GGA.replace(b"*6C", b"*6c"))
    assert len(fixes) == 1 and fixes[0].valid and counters["checksum_errors"] == 0
    assert checksum(GGA[1 : GGA.index(b"*")]) == 0x6C


def test_line_endings_and_last_line_without_newline() -> None:
    crlf = _parse_all(GGA)[0]
    assert _parse_all(GGA.replace(b"\r\n", b"\n"))[0] == crlf
    assert _parse_all(GGA.rstrip())[0] == crlf
    assert _parse_all(b"\n\r\n" + GGA + b"\r\n\r\n")[0] == crlf


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "GB", "BD", "GQ"])
def test_any_talker(talker: str) -> None:
    fixes = _parse_all(encode_gga(1e9, 10.0, 20.0, 30.0, talker=talker))[0]
    assert len(fixes) == 1 and fixes[0].valid and fixes[0].lat == pytest.approx(10.0)


def test_ignored_malformed_and_torn() -> None:
    data = (
        frame("PMTK001,314,3")
        + frame("GPGSV,1,1,00")
        + frame("GPGGA,12xx00.00,,,,,0,,,,,,,,")  # valid checksum, bad time
        + frame("GPGGA,,,,,,0,00,99.99,,,,,,")  # a receiver before its first fix: no time
        + b"$GPGGA,1234"  # torn off by the next "$"
        + GGA
    )
    fixes, counters = _parse_all(data)
    assert len(fixes) == 1 and fixes[0].valid
    assert counters["ignored"] == 2
    assert counters["malformed"] == 2
    assert counters["untimed"] == 1
    assert counters["sentences"] == 5


def test_overlong_line_is_dropped_and_bounded() -> None:
    parser = NmeaParser()
    assert parser.feed(b"$GPGGA," + b"9" * 5000) == []
    assert parser.buffered_bytes <= MAX_SENTENCE_BYTES
    assert parser.feed(b"1" * 5000) == []
    assert parser.counters["overlong"] == 1 and parser.buffered_bytes == 0
    fixes = parser.feed(b"\r\n" + GGA) + parser.flush()
    assert len(fixes) == 1 and fixes[0].valid
    assert parser.counters["dropped_bytes"] == 10_007


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([b"$", b"*", b"\r", b"\n", b",", b"$GPGGA,", b"$GNRMC,", b"*00\r\n", GGA]),
        ),
        max_size=60,
    )
)
def test_garbage_never_raises_and_buffer_stays_bounded(chunks: list[bytes]) -> None:
    parser = NmeaParser()
    before = parser.counters
    for chunk in chunks:
        for fix in parser.feed(chunk):
            assert isinstance(fix, NmeaFix)
        assert parser.buffered_bytes <= MAX_SENTENCE_BYTES
        now = parser.counters
        assert all(now[k] >= before[k] for k in before)
        before = now
    parser.flush()
    assert parser.buffered_bytes == 0


_FIELD_TEXT = st.text(alphabet="0123456789.,-+NSEWAVDMe ", max_size=90)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["GPGGA", "GNRMC", "GPZDA"]), rest=_FIELD_TEXT)
def test_checksum_valid_garbage_fields_never_raise(kind: str, rest: str) -> None:
    fixes, counters = _parse_all(frame(f"{kind},{rest}") + frame(f"{kind},235959.99,{rest}"))
    assert counters["sentences"] == 2
    for fix in fixes:
        assert fix.valid == (fix.lat is not None)
        assert 0 <= fix.time_of_day_s < 86401


# --- epochs and dates ----------------------------------------------------------------------------

DAY = datetime(2024, 2, 29, tzinfo=UTC).timestamp()


def test_epoch_closes_on_next_time_or_flush() -> None:
    parser = NmeaParser()
    assert parser.feed(encode_gga(DAY + 10, 1.0, 2.0, 3.0)) == []
    assert parser.feed(encode_rmc(DAY + 10, 1.0, 2.0, speed_mps=5.0, course_deg=90.0)) == []
    first = parser.feed(encode_gga(DAY + 11, 1.0, 2.0, 3.0))
    assert [f.sentences for f in first] == [("GGA", "RMC")]
    assert first[0].t == DAY + 10 and first[0].speed_mps == pytest.approx(5.0, abs=1e-3)
    last = parser.flush()
    assert [f.time_of_day_s for f in last] == [11.0] and last[0].t == DAY + 11
    assert parser.flush() == []


def test_date_rolls_over_at_midnight_without_rmc() -> None:
    data = encode_rmc(DAY + 86399, 1.0, 2.0)
    data += b"".join(encode_gga(DAY + 86399 + s, 1.0, 2.0, 3.0) for s in (0.5, 1, 2))
    fixes, _ = _parse_all(data)
    assert [f.t for f in fixes] == [DAY + 86399, DAY + 86399.5, DAY + 86400, DAY + 86401]
    assert fixes[2].time_of_day_s == 0.0


def test_no_date_until_rmc_or_zda() -> None:
    data = encode_gga(DAY + 5, 1.0, 2.0, 3.0) + frame("GPZDA,000006.00,29,02,2024,00,00")
    data += encode_gga(DAY + 7, 1.0, 2.0, 3.0)
    fixes, _ = _parse_all(data)
    assert [f.t for f in fixes] == [None, DAY + 6, DAY + 7]


def test_rmc_only_quality_and_invalid_fix() -> None:
    active = frame("GNRMC,120000.00,A,4807.038,N,01131.000,E,0.0,,290224,,,D")
    warning = frame("GNRMC,120001.00,V,4807.038,N,01131.000,E,0.0,,290224,,,N")
    old_style = frame("GPRMC,120002.00,A,4807.038,N,01131.000,E,0.0,,290224,,")
    fixes, _ = _parse_all(active + warning + old_style)
    assert [(f.quality, f.valid) for f in fixes] == [(2, True), (0, False), (1, True)]
    assert fixes[0].lat == pytest.approx(48 + 7.038 / 60) and fixes[0].alt_msl_m is None
    assert fixes[1].lat is None and fixes[1].t == DAY + 43201


# --- driver --------------------------------------------------------------------------------------


class _FixedClock:
    def now(self) -> float:
        return 1.0e9

    def monotonic(self) -> float:
        return 42.0

    def sleep(self, seconds: float) -> None:
        pass


def test_driver_yields_gps_fixes_with_receiver_time() -> None:
    no_date = encode_gga(DAY + 1, 1.5, -2.5, 100.0, geoid_sep_m=-20.0, quality=2, num_sats=7, hdop=1.1)
    no_fix = encode_gga(DAY + 2, 0.0, 0.0, 0.0, quality=0)
    dated = encode_gga(DAY + 3, 1.5, -2.5, 100.0) + encode_rmc(DAY + 3, 1.5, -2.5)
    chunks = [no_date, no_fix, dated, encode_gga(DAY + 4, 0.0, 0.0, 0.0)]
    driver = NmeaDriver("gps0", ChunkTransport(chunks), _FixedClock())
    driver.open()
    out = [m for _ in range(5) for m in driver.read()]
    assert out == [
        GpsFix("gps0", 1.0e9, 42.0, 1.5, -2.5, 100.0, -20.0, 2, 7, 1.1),
        GpsFix("gps0", DAY + 3, 42.0, 1.5, -2.5, 100.0, 0.0, 1, 10, 0.9),
    ]
    assert isinstance(out[0], GpsFix) and out[0].alt_hae_m == pytest.approx(80.0)
    health = driver.health()
    assert health.kind == "nmea" and health.measurements == 2 and health.counters["epochs"] == 3


def test_driver_from_port() -> None:
    driver = NmeaDriver.from_port("gps0", "/dev/serial0", _FixedClock())
    assert isinstance(driver.transport, SerialTransport)
    assert (driver.transport.port, driver.transport.baudrate) == ("/dev/serial0", 9600)
    assert driver.kind == "nmea" and isinstance(driver.parser, NmeaParser)


# --- encoder -------------------------------------------------------------------------------------


def test_encoder_format() -> None:
    t = datetime(2015, 4, 13, 20, 26, 40, tzinfo=UTC).timestamp()
    gga = encode_gga(t, 44.0688433333, -121.3141916667, 1127.7, geoid_sep_m=-19.6, quality=2, hdop=0.98)
    assert gga == frame("GPGGA,202640.00,4404.130600,N,12118.851500,W,2,10,0.98,1127.70,M,-19.60,M,,")
    assert gga.endswith(b"\r\n") and len(gga) <= 82
    rmc = encode_rmc(t, -0.5, 0.25, speed_mps=KNOT_MPS, course_deg=-90.0)
    assert rmc == frame("GPRMC,202640.00,A,0030.000000,S,00015.000000,E,1.000,270.00,130415,,,A")
    with pytest.raises(ValueError):
        encode_gga(t, 91.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        encode_rmc(datetime(2080, 1, 1, tzinfo=UTC).timestamp(), 0.0, 0.0)


_T = st.floats(min_value=315_532_800.0, max_value=3_471_292_799.0)  # 1980-01-01 .. 2079-12-31


@settings(max_examples=200, deadline=None)
@given(
    t=_T,
    lat=st.floats(min_value=-90, max_value=90),
    lon=st.floats(min_value=-180, max_value=180),
    alt=st.floats(min_value=-500, max_value=20_000),
    sep=st.floats(min_value=-120, max_value=120),
    speed=st.floats(min_value=0, max_value=500),
    course=st.floats(min_value=-720, max_value=720),
    quality=st.integers(min_value=1, max_value=8),
    sats=st.integers(min_value=0, max_value=99),
    hdop=st.floats(min_value=0, max_value=99),
)
def test_encoder_parser_round_trip(
    t: float,
    lat: float,
    lon: float,
    alt: float,
    sep: float,
    speed: float,
    course: float,
    quality: int,
    sats: int,
    hdop: float,
) -> None:
    gga = encode_gga(t, lat, lon, alt, geoid_sep_m=sep, quality=quality, num_sats=sats, hdop=hdop)
    rmc = encode_rmc(t, lat, lon, speed_mps=speed, course_deg=course)
    fixes, counters = _parse_all(gga + rmc)
    assert len(fixes) == 1 and counters["sentences"] == 2
    fix = fixes[0]
    assert fix.valid and fix.quality == quality and fix.num_sats == sats
    assert fix.lat is not None and fix.lon is not None and fix.t is not None
    assert fix.t == pytest.approx(t, abs=0.005 + 1e-6)
    assert fix.lat == pytest.approx(lat, abs=1e-8) and fix.lon == pytest.approx(lon, abs=1e-8)
    assert fix.alt_msl_m == pytest.approx(alt, abs=0.005 + 1e-9)
    assert fix.speed_mps == pytest.approx(speed, abs=0.0005 * KNOT_MPS + 1e-9)
    assert fix.course_deg is not None
    assert math.isclose(math.remainder(fix.course_deg - course, 360.0), 0.0, abs_tol=0.005 + 1e-9)
    # Exact to the printed precision: what was parsed prints back to the very same bytes.
    assert fix.alt_msl_m is not None and fix.geoid_sep_m is not None and fix.hdop is not None
    again = encode_gga(fix.t, fix.lat, fix.lon, fix.alt_msl_m, fix.geoid_sep_m, quality, sats, fix.hdop)
    assert again == gga
    assert encode_rmc(fix.t, fix.lat, fix.lon, fix.speed_mps or 0.0, fix.course_deg) == rmc
    assert fix_to_dict(fix)["lat"] == round(fix.lat, 9)
