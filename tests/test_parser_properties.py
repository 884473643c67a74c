"""The same three properties for every parser (GitHub issue 8), so that no parser is the weak one:

1. random bytes never raise anything but the module's own error type (`cuas_node.drivers.parsing.ParseError`;
   in practice none raises at all) and the parser's buffer stays bounded;
2. feeding byte by byte gives exactly what feeding the whole input gives (records and counters);
3. corrupted copies of the real captures (bit flips, deletions, insertions, truncations) never
   raise and still decode every record whose bytes, and their neighbours', were left untouched.

Stream parsers (NMEA, TI data UART, TI CLI replies, Remote ID lines, acoustic frames) are checked
through one generic harness: the capture is cut into units (lines or frames), each record's span of
units is learnt by feeding the clean capture unit by unit, and only records whose span (widened by
one unit each side) is clean are required after corruption. A file reader (pcap) and a payload
decoder (ODID messages) have no stream to split: for them property 2 becomes "a truncated file
yields a prefix of the whole file's records" and "a message's decode does not depend on its
neighbours in a pack".

Captures come from ../shared (skipped with a reason when it is absent). There are no real captures
of the TI CLI or of drone-mesh-mapper JSON, so those streams are built from the shipped radar
profile and from the real Remote ID pcaps' messages. Hypothesis runs are kept short for CI; the
atheris harnesses in fuzz/ are for long campaigns.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import struct
import wave
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cuas_node.drivers.acoustic import protocol as acoustic
from cuas_node.drivers.nmea.parser import MAX_SENTENCE_BYTES, NmeaFix, NmeaParser
from cuas_node.drivers.parsing import ParseError
from cuas_node.drivers.radar.ti_cli import (
    MAX_LINE_CHARS,
    PROMPT,
    CfgLine,
    CliConversation,
    load_profile,
    parse_cfg,
)
from cuas_node.drivers.radar.ti_decode import frame_to_json
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.radar.ti_frames import BUFFER_CAP as TI_BUFFER_CAP
from cuas_node.drivers.radar.ti_frames import HEADER as TI_HEADER
from cuas_node.drivers.radar.ti_frames import MAGIC as TI_MAGIC
from cuas_node.drivers.radar.ti_frames import STATS_KEYS, TEMPERATURE_SENSORS, TiFrame, TiFrameParser
from cuas_node.drivers.remoteid.carriers import FrameDecoder, OdidFrame
from cuas_node.drivers.remoteid.lines import MAX_LINE_BYTES, MeshMapperLineParser, OdidLineParser
from cuas_node.drivers.remoteid.messages import MESSAGE_SIZE, BasicId, Location, decode_payload
from cuas_node.drivers.remoteid.pcap import RawOdid, read_capture

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "captures"
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared captures are laid beside the project in CI)")
    return path


# --- the parsers behind one interface ---------------------------------------------------------------


class StreamParser(Protocol):
    def feed(self, data: bytes) -> Sequence[Any]: ...


@dataclass(frozen=True)
class Family:
    """One stream parser: how to make it, finish it, bound it, and compare its records."""

    name: str
    make: Callable[[], Any]
    key: Callable[[Any], Hashable]
    buffered: Callable[[Any], int]
    bound: int
    units: Callable[[], list[bytes]]
    flush: Callable[[Any], Sequence[Any]] = lambda p: ()
    counters: Callable[[Any], dict[str, int]] = lambda p: dict(p.counters)


def _nmea_key(fix: NmeaFix) -> Hashable:
    # `t` is left out: a GGA-only epoch takes its date from an earlier RMC, which a corruption elsewhere
    # may have destroyed. Everything the epoch's own sentences carry must survive.
    return (fix.time_of_day_s, fix.lat, fix.lon, fix.alt_msl_m, fix.quality, fix.num_sats, fix.sentences)


def _ti_key(frame: TiFrame) -> Hashable:
    return json.dumps(frame_to_json(frame), sort_keys=True)


def _pcm_key(frame: acoustic.PcmFrame) -> Hashable:
    # `gap` and `restart` describe the neighbours, which a corruption may have removed.
    return (frame.sequence, frame.timestamp_us, frame.sample_rate, frame.channels, frame.samples.tobytes())


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


@cache
def nmea_units() -> list[bytes]:
    out: list[bytes] = []
    for log in sorted(_need(SHARED / "gps").glob("*.log")):
        out += [line for line in _lines(log.read_bytes()) if not line.startswith(b"#")]
    return out


@cache
def ti_units() -> list[bytes]:
    """Frames of the real captures, cut at each magic word."""
    out: list[bytes] = []
    for name in ("ti-xwr16xx-sdk3.4-a.dat", "ti-xwr16xx-sdk3.4-b.dat"):
        data = _need(SHARED / "radar" / name).read_bytes()
        starts = [i for i in range(len(data)) if data.startswith(TI_MAGIC, i)]
        bounds = [0, *starts[1:], len(data)] if starts and starts[0] == 0 else [0, *starts, len(data)]
        out += [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    return out


@cache
def pcap_files() -> list[bytes]:
    folder = _need(SHARED / "remoteid")
    return [p.read_bytes() for p in sorted(folder.glob("*.pcap*"))]


@cache
def raw_odids() -> list[RawOdid]:
    return [r for data in pcap_files() for r in read_capture(data, {})]


@cache
def odid_units() -> list[bytes]:
    """The real pcaps' Remote ID payloads as the node's serial line protocol."""
    out = []
    for r in raw_odids():
        rssi = "" if r.rssi_dbm is None else f"{r.rssi_dbm:g}"
        hex_payload = bytes((0x0D, r.counter)).hex() + r.payload.hex()
        out.append(f"ODID,{r.carrier},{r.mac or ''},{rssi},{hex_payload}\r\n".encode())
    return out


@cache
def mesh_units() -> list[bytes]:
    """drone-mesh-mapper JSON lines carrying the real pcaps' IDs and positions (no real capture exists)."""
    out = [b'{"heartbeat":"Device is active and running."}\n']
    decoder = FrameDecoder({})
    for r in raw_odids():
        frame = decoder.frame(r.carrier, r.mac, r.rssi_dbm, r.counter, r.payload)
        if frame is None or r.mac is None:
            continue
        obj: dict[str, Any] = {"mac": r.mac, "rssi": r.rssi_dbm or -80}
        for m in frame.messages:
            if isinstance(m, BasicId) and m.id.isascii():
                obj["basic_id"] = m.id
            elif isinstance(m, Location) and m.lat is not None and m.lon is not None:
                obj.update(drone_lat=round(m.lat, 6), drone_long=round(m.lon, 6), drone_altitude=m.alt_geo_m)
        out.append(json.dumps(obj).encode() + b"\n")
    return out


@cache
def pcm_units() -> list[bytes]:
    """Acoustic frames carrying real recordings (mono clips; channel k is the clip delayed k samples)."""
    out: list[bytes] = []
    seq = 0
    for wav in sorted(_need(SHARED / "acoustic" / "drone").glob("*.wav"))[:2]:
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            mono = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        chans = np.stack([np.roll(mono, k) for k in range(4)], axis=1)
        for start in range(0, 4000, 400):
            out.append(acoustic.encode_frame(chans[start : start + 400], rate, seq, seq * 25_000))
            seq += 1
    return out


@cache
def cli_units() -> list[bytes]:
    """What the board prints while it accepts the shipped profile: echo, info lines, Done, prompt."""
    commands = parse_cfg(load_profile(None, "iwr6843")[0])
    out = [b"\r\n******************************************\r\nMMW Demo 03.05\r\n" + PROMPT.encode()]
    for c in commands:
        info = b"Ignored: Sensor is already stopped\r\n" if c.name == "sensorStop" else b""
        out.append(c.text.encode() + b"\r\n" + info + b"Done\r\n" + PROMPT.encode())
    return out


class CliDriver:
    """The configurator's loop as a stream parser: feed the board's bytes, get one reply per command.

    A reply arrives, the next command goes out (`send()`), and so on; a corrupted stream may leave a
    command unanswered, which the real configurator reports as `CliNoAnswer` after its timeout.
    """

    def __init__(self) -> None:
        self.commands = parse_cfg(load_profile(None, "iwr6843")[0])
        self.talk = CliConversation(self.commands)
        self.talk.send()

    def feed(self, data: bytes) -> list[tuple[int, str, tuple[str, ...]]]:
        out = []
        reply = self.talk.feed(data)
        while reply is not None:
            out.append((reply.command.number, reply.outcome.value, reply.lines))
            if self.talk.finished:
                break
            self.talk.send()
            reply = self.talk.feed(b"")
        return out

    @property
    def counters(self) -> dict[str, int]:
        return {"replies": len(self.talk.replies)}


FAMILIES = [
    Family(
        "nmea",
        NmeaParser,
        _nmea_key,
        lambda p: p.buffered_bytes,
        MAX_SENTENCE_BYTES,
        nmea_units,
        flush=lambda p: p.flush(),
    ),
    Family("ti-mmwave", TiFrameParser, _ti_key, lambda p: p.buffered, TI_BUFFER_CAP, ti_units),
    Family("ti-cli", CliDriver, lambda r: r, lambda p: p.talk.buffered, MAX_LINE_CHARS, cli_units),
    Family(
        "odid-lines",
        OdidLineParser,
        lambda f: f,
        lambda p: len(p._lines._buf),
        MAX_LINE_BYTES,
        odid_units,
        flush=lambda p: p.flush(),
    ),
    Family(
        "drone-mesh-mapper",
        MeshMapperLineParser,
        lambda f: f,
        lambda p: len(p._lines._buf),
        MAX_LINE_BYTES,
        mesh_units,
        flush=lambda p: p.flush(),
    ),
    Family(
        "acoustic", acoustic.PcmFrameParser, _pcm_key, lambda p: p.buffered, acoustic.BUFFER_CAP, pcm_units
    ),
]
IDS = [f.name for f in FAMILIES]


def _run(
    family: Family, chunks: Sequence[bytes], check_bound: bool = False
) -> tuple[list[Any], dict[str, int]]:
    parser = family.make()
    out: list[Any] = []
    for chunk in chunks:
        out += parser.feed(chunk)
        if check_bound:
            # One feed may bring a whole line or frame more than the bound before it is consumed.
            assert family.buffered(parser) <= family.bound + len(chunk)
    out += family.flush(parser)
    return [family.key(r) for r in out], family.counters(parser)


# --- 1. random bytes -----------------------------------------------------------------------------------


def _interesting(family: Family) -> st.SearchStrategy[list[bytes]]:
    """Random bytes mixed with the format's own markers, so that random input reaches deep states."""
    markers = {
        "nmea": [b"$", b"*", b"\r\n", b"$GPGGA,", b"$GPRMC,"],
        "ti-mmwave": [TI_MAGIC, TI_MAGIC[:3], b"\x00" * 40],
        "ti-cli": [b"\n", PROMPT.encode(), b"Done\n", b"Error -1\n", b"sensorStop\n"],
        "odid-lines": [b"\n", b"ODID,bt4,,,0d00", b"ODID,wifi-beacon,aa:bb:cc:dd:ee:ff,-50,0d01f219"],
        "drone-mesh-mapper": [
            b"\n",
            b'{"mac":"aa:bb:cc:dd:ee:ff",',
            b'"drone_lat":1e999,',
            b"[" * 200,
            b'{"a":' + b"[" * 1000,
        ],
        "acoustic": [acoustic.MAGIC, b"\x00" * 28],
    }[family.name]
    return st.lists(st.binary(max_size=600) | st.sampled_from(markers), max_size=12)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
@FAST
@given(data=st.data())
def test_random_bytes_never_raise_and_stay_bounded(family: Family, data: st.DataObject) -> None:
    chunks = data.draw(_interesting(family))
    with contextlib.suppress(ParseError):
        _run(family, chunks, check_bound=True)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_endless_noise_stays_bounded(family: Family) -> None:
    """A wrong baud rate for minutes: a long stream with no line end or frame marker."""
    parser = family.make()
    rng = np.random.default_rng(8)
    for _ in range(50):
        noise = rng.integers(0x20, 0x7F, 4096, dtype=np.uint8).tobytes().replace(b"$", b"")
        parser.feed(noise)
        assert family.buffered(parser) <= family.bound + 4096


# --- 2. byte by byte equals whole --------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_byte_by_byte_equals_whole(family: Family) -> None:
    stream = b"".join(family.units()[:60])
    assert _run(family, [stream]) == _run(family, [stream[i : i + 1] for i in range(len(stream))])


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
@FAST
@given(cuts=st.lists(st.integers(0, 1 << 30), max_size=30))
def test_random_splits_equal_whole(family: Family, cuts: list[int]) -> None:
    stream = b"".join(family.units())
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert _run(family, chunks) == _run(family, [stream])


# --- 2b. the TI parser's counters on damaged streams ------------------------------------------------------
#
# Property 2 splits clean captures, where every counter but `frames`/`points` stays 0, and property 3
# damages them but looks at records only. Damage is what moves the counters, so here damaged TI streams
# (frames from `encode_frame`, cut, truncated, flipped, with garbage) are fed whole, byte by byte and
# in random pieces, and after every piece the parser must be in the state that feeding the same bytes
# whole gives: the same frames, the same counters and the same number of undecided bytes (`buffered`).


def _ti_padding(kind: str) -> Callable[[int], bytes] | None:
    """Padding as a board could send it: the default filler, zeros, magic words, a valid header."""
    filler = {
        "zeros": b"\x00",
        "magic": TI_MAGIC,
        "header": TI_HEADER.pack(TI_MAGIC, 0x03040003, 64, 0, 1, 0, 0, 0, 0),
    }
    if kind not in filler:
        return None
    unit = filler[kind]
    return lambda n: (unit * (n // len(unit) + 1))[:n]


TI_FLAVOURS = {  # version, platform: SDK 3.x, SDK 2.x on xWR16xx and on xWR14xx (36-byte header), SDK 1.2
    "sdk3": (0x03040003, 0xA1642),
    "sdk2.1": (0x02010004, 0xA1642),
    "sdk2.0-xwr14xx": (0x02000004, 0xA1443),
    "unsupported": (0x01020005, 0xA1443),
}


@st.composite
def ti_frame(draw: st.DrawFn, number: int) -> bytes:
    """One frame from `encode_frame`: points with or without side info, a range profile whose length
    sets the padding (0 to 30 bytes, so the TLVs often end within the last 7), stats, temperature;
    mostly SDK 3.x, else SDK 2.x (no side info, no temperature) or a version the parser skips."""
    version, platform = TI_FLAVOURS[draw(st.sampled_from(["sdk3", "sdk3", *TI_FLAVOURS]))]
    sdk2 = version >> 24 == 2
    n = draw(st.integers(0, 5))
    points = np.array(draw(st.lists(st.floats(-80, 80, width=32), min_size=4 * n, max_size=4 * n)))
    side = draw(st.booleans())
    profile = draw(st.none() | st.integers(0, 40))
    kwargs: dict[str, Any] = {}
    if profile is not None:
        kwargs["range_profile"] = np.arange(profile) * 37 % 65536
    if draw(st.booleans()):
        kwargs["stats"] = dict.fromkeys(STATS_KEYS, 1000)
    if draw(st.booleans()) and not sdk2:
        kwargs["temperature"] = {"report_valid": 0, "time_ms": 5} | dict.fromkeys(TEMPERATURE_SENSORS, 45)
    pad = _ti_padding(draw(st.sampled_from(["default", "zeros", "magic", "header"])))
    if pad is not None:
        kwargs["padding_byte_source"] = pad
    kwargs.update(version=version, platform=platform)
    if sdk2:
        kwargs["doppler_bin_mps"] = 0.25
    snr = np.full(n, 20.0) if side and not sdk2 else None
    return encode_frame(number, points.reshape(n, 4), snr, snr, **kwargs)


TI_DAMAGE = st.tuples(
    # cut_tail: the last 1-47 bytes lost, so that the next frame's magic word or header straddles
    # the declared end; truncate/delete/flip/insert: anywhere.
    st.sampled_from(["cut_tail", "cut_tail", "truncate", "delete", "flip", "insert"]),
    st.integers(0, 1 << 30),  # which frame
    st.integers(0, 1 << 30),  # where in it / how much
    st.binary(min_size=1, max_size=12) | st.sampled_from([TI_MAGIC, TI_MAGIC[:5], TI_MAGIC + bytes(40)]),
)


@st.composite
def damaged_ti_stream(draw: st.DrawFn) -> bytes:
    first = draw(st.integers(0, 2**32 - 1))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 0, -1]), min_size=2, max_size=7))
    numbers = [(first + sum(steps[:k])) & 0xFFFFFFFF for k in range(len(steps))]
    frames = [bytearray(draw(ti_frame(number))) for number in numbers]
    for kind, which, where, blob in draw(st.lists(TI_DAMAGE, min_size=1, max_size=5)):
        frame = frames[which % len(frames)]
        pos = where % (len(frame) + 1)
        if kind == "cut_tail":
            del frame[max(0, len(frame) - 1 - where % 47) :]
        elif kind == "truncate":
            del frame[pos:]
        elif kind == "delete":
            del frame[pos : pos + 1 + blob[0] % 40]
        elif kind == "flip" and frame:
            frame[pos % len(frame)] ^= 1 << (blob[0] % 8)
        elif kind == "insert":
            frame[pos:pos] = blob
    return draw(st.binary(max_size=20)) + b"".join(frames) + draw(st.binary(max_size=20))


def _ti_state(parser: TiFrameParser, frames: Sequence[TiFrame]) -> tuple[list[Hashable], dict[str, int], int]:
    return [_ti_key(f) for f in frames], parser.counters, parser.buffered


def _ti_whole(data: bytes) -> tuple[list[Hashable], dict[str, int], int]:
    parser = TiFrameParser()
    return _ti_state(parser, parser.feed(data))


def _ti_feed_pieces(data: bytes, size: int) -> tuple[list[Hashable], dict[str, int], int]:
    parser = TiFrameParser()
    frames = [f for i in range(0, len(data), size) for f in parser.feed(data[i : i + size])]
    return _ti_state(parser, frames)


def assert_ti_split_independent(stream: bytes, cuts: Sequence[int], byte_by_byte: bool = True) -> None:
    """Byte by byte, and in the pieces that `cuts` make (checked after every piece against the whole
    prefix), the TI parser ends where feeding `stream` whole does."""
    if byte_by_byte:
        assert _ti_feed_pieces(stream, 1) == _ti_whole(stream), "byte by byte"
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    parser = TiFrameParser()
    frames: list[TiFrame] = []
    for a, b in itertools.pairwise(bounds):
        frames += parser.feed(stream[a:b])
        assert _ti_state(parser, frames) == _ti_whole(stream[:b]), f"after the piece ending at byte {b}"


def test_an_xwr14xx_frame_cut_short_after_its_tlvs_is_kept_however_the_reads_split() -> None:
    """Found by the property below: an SDK 2.x xWR14xx frame (36-byte header, no TLVs) whose next
    frame starts 39 bytes in. Fed whole, its 39 bytes were decoded with the 40-byte header and
    dropped; byte by byte it was kept. Only padding was lost: it is kept either way."""

    def sdk3(number: int) -> bytes:
        header = TI_MAGIC + struct.pack("<8I", 0x03040003, 64, 0x0A1642, number, 0, 0, 0, 0)
        return header + bytes(64 - len(header))

    short = TI_MAGIC + struct.pack("<7I", 0x02000004, 64, 0x0A1443, 1, 0, 0, 0) + b"\xa6\xc3\xe0"
    stream = sdk3(0) + short + sdk3(2)
    frames, counts, _ = _ti_whole(stream)
    assert [json.loads(f)["frame"] for f in frames] == [0, 1, 2] and counts["dropped_frames"] == 0
    assert_ti_split_independent(stream, [])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=damaged_ti_stream(), cuts=st.lists(st.integers(0, 1 << 30), max_size=12))
def test_ti_counters_do_not_depend_on_read_splits(stream: bytes, cuts: list[int]) -> None:
    assert_ti_split_independent(stream, cuts)


# --- 3. corrupted copies of the real captures ---------------------------------------------------------------

MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "delete", "insert", "truncate"]),
        st.integers(0, 1 << 30),  # which unit (modulo the number of units)
        st.integers(0, 1 << 30),  # where in the unit
        st.binary(min_size=1, max_size=8),  # inserted bytes / bit to flip
    ),
    min_size=1,
    max_size=4,
)


def corrupt(units: list[bytes], mutations: list[tuple[str, int, int, bytes]]) -> tuple[list[bytes], set[int]]:
    """Apply the mutations; return the corrupted units and the indices of every unit touched
    (after a truncation, every later unit counts as touched: it is gone)."""
    out = list(units)
    touched: set[int] = set()
    for kind, which, where, blob in mutations:
        u = which % len(out)
        unit = bytearray(out[u])
        pos = where % (len(unit) + 1)
        touched.add(u)
        if kind == "flip" and unit:
            pos %= len(unit)
            unit[pos] ^= 1 << (blob[0] % 8)
        elif kind == "delete" and unit:
            pos %= len(unit)
            del unit[pos : pos + 1 + blob[0] % 16]
        elif kind == "insert":
            unit[pos:pos] = blob
        elif kind == "truncate":
            del unit[pos:]
            touched.update(range(u + 1, len(out)))
            out = out[: u + 1]
        out[u] = bytes(unit)
    return out, touched


@cache
def record_spans(family: Family) -> list[tuple[Hashable, int, int]]:
    """(key, first unit, last unit) of every record of the clean capture, conservatively: from the
    unit where the previous record came out to the unit where this one did."""
    parser = family.make()
    spans: list[tuple[Hashable, int, int]] = []
    last = 0
    units = family.units()
    for i, unit in enumerate(units):
        for record in parser.feed(unit):
            spans.append((family.key(record), last, i))
            last = i
    for record in family.flush(parser):
        spans.append((family.key(record), last, len(units)))
    return spans


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=MUTATIONS, split=st.integers(1, 5000))
def test_corrupted_captures_keep_untouched_records(
    family: Family, mutations: list[tuple[str, int, int, bytes]], split: int
) -> None:
    units = family.units()
    corrupted, touched = corrupt(units, mutations)
    stream = b"".join(corrupted)
    chunks = [stream[i : i + split] for i in range(0, len(stream), split)]
    got, _ = _run(family, chunks)  # never raises
    near = {t + d for t in touched for d in (-1, 0, 1)}
    if family.name == "ti-cli":
        # A conversation: after a reply is lost, the board's later replies answer the wrong command,
        # and the configurator gives up (CliNoAnswer). Every reply before the first damage survives.
        first = min(near)
        expected = Counter(k for k, a, b in record_spans(family) if b < first)
    else:
        expected = Counter(k for k, a, b in record_spans(family) if not near & set(range(a, b + 1)))
    assert not expected - Counter(got), f"lost {sum((expected - Counter(got)).values())} untouched record(s)"


def test_harness_sees_records_in_every_capture() -> None:
    """Guard against a vacuous property: every family decodes many records from its clean capture."""
    for family in FAMILIES:
        assert len(record_spans(family)) >= 20, family.name


# --- the pcap reader (a file, not a stream) -------------------------------------------------------------


def _read(data: bytes) -> list[RawOdid]:
    return list(read_capture(data, {}))


@FAST
@given(
    head=st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x4d\x3c\xb2\xa1", b""]),
    tail=st.binary(),
)
def test_pcap_random_bytes_never_raise(head: bytes, tail: bytes) -> None:
    counts: dict[str, int] = {}
    list(read_capture(head + tail, counts))


@pytest.mark.parametrize("index", range(3))
def test_pcap_truncation_yields_a_prefix(index: int) -> None:
    """Property 2 for a file: any prefix of the file decodes to a prefix of the whole file's records."""
    data = pcap_files()[index]
    whole = _read(data)
    assert whole
    for n in range(0, len(data) + 1, max(1, len(data) // 97)):
        part = _read(data[:n])
        assert part == whole[: len(part)]


@pytest.mark.parametrize("index", range(3))
@FAST
@given(mutations=MUTATIONS)
def test_pcap_corrupted_files_never_raise_and_keep_the_prefix(
    index: int, mutations: list[tuple[str, int, int, bytes]]
) -> None:
    """pcap has no resync marker: damage to a record header loses the rest of the file. Records
    before the first damaged byte must all survive, and nothing may raise."""
    data = pcap_files()[index]
    corrupted, _ = corrupt([data], mutations)
    first = next((i for i, (a, b) in enumerate(zip(data, corrupted[0], strict=False)) if a != b), None)
    first = min(first if first is not None else len(data), len(corrupted[0]))
    got = _read(corrupted[0])
    clean_prefix = _read(data[:first])
    assert got[: len(clean_prefix)] == clean_prefix


# --- the ODID message decoder (a payload, not a stream) -------------------------------------------------


@FAST
@given(st.binary(max_size=400))
def test_payload_random_bytes_never_raise(data: bytes) -> None:
    result = decode_payload(data)
    assert result.messages or result.errors


@cache
def real_packs() -> list[bytes]:
    return [
        r.payload
        for r in raw_odids()
        if len(r.payload) >= 3 + MESSAGE_SIZE
        and r.payload[0] >> 4 == 0xF
        and r.payload[1] == MESSAGE_SIZE
        and r.payload[2] >= 1
    ]


@FAST
@given(
    pick=st.integers(0, 1 << 30),
    which=st.integers(0, 1 << 30),
    bit=st.integers(0, 7),
    where=st.integers(0, 24),
)
def test_payload_damage_stays_in_its_message(pick: int, which: int, bit: int, where: int) -> None:
    """A flipped bit inside message k of a real pack changes at most message k (property 2 for a
    payload: a message's decode does not depend on its neighbours)."""
    packs = real_packs()
    assert packs
    pack = packs[pick % len(packs)]
    clean = decode_payload(pack)
    n = min(pack[2], (len(pack) - 3) // MESSAGE_SIZE)
    k = which % n
    damaged = bytearray(pack)
    damaged[3 + k * MESSAGE_SIZE + where] ^= 1 << bit
    result = decode_payload(bytes(damaged))
    assert len(result.messages) + result.errors.count("unknown_message_type") >= len(clean.messages) - 1
    survivors = Counter(map(repr, result.messages))
    untouched = [m for i, m in enumerate(clean.messages) if i != k]
    # Messages are compared by value; a message that failed to decode in the clean pack is absent in both.
    assert not Counter(map(repr, untouched)) - survivors


@FAST
@given(cut=st.integers(0, 1 << 30), pick=st.integers(0, 1 << 30))
def test_payload_truncation_keeps_complete_messages(cut: int, pick: int) -> None:
    packs = real_packs()
    pack = packs[pick % len(packs)]
    n = cut % (len(pack) + 1)
    clean = decode_payload(pack)
    part = decode_payload(pack[:n])
    complete = max(0, (n - 3) // MESSAGE_SIZE)
    assert [repr(m) for m in part.messages] == [repr(m) for m in clean.messages[: len(part.messages)]]
    assert len(part.messages) >= min(complete, len(clean.messages)) - clean.errors.count(
        "unknown_message_type"
    )


def test_odid_frames_compare_by_value() -> None:
    """The harness compares OdidFrames by value; make sure that is meaningful."""
    a = OdidFrame("bt4", None, None, 1, (BasicId(1, 2, b"X".ljust(20, b"\0")),))
    b = OdidFrame("bt4", None, None, 1, (BasicId(1, 2, b"X".ljust(20, b"\0")),))
    assert a == b and hash(a) == hash(b)


def test_cli_noise_with_a_prompt_tail_is_kept() -> None:
    """The CLI's bound keeps the tail, so a prompt split across the cut is still seen."""
    talk = CliConversation([CfgLine(1, "sensorStop")])
    talk.send()
    talk.feed(b"x" * (MAX_LINE_CHARS + 10) + PROMPT.encode()[:4])
    talk.feed(PROMPT.encode()[4:])
    assert talk.buffered <= MAX_LINE_CHARS


def test_deeply_nested_json_line_is_malformed_not_fatal() -> None:
    """Found by this harness: ~1000 nested brackets fit in one line and made json raise RecursionError,
    which is neither a ParseError nor an OSError and would have killed the driver thread."""
    parser = MeshMapperLineParser()
    for depth in (900, 1000, 1015):
        assert parser.feed(b'{"a":' + b"[" * depth + b"\n") == []
    assert parser.counters["malformed"] == 3


# --- the atheris harnesses, without atheris -------------------------------------------------------------

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
HARNESSES = sorted(p.stem for p in FUZZ.glob("fuzz_*.py"))


def _harness(name: str) -> Any:
    import importlib
    import sys

    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    return importlib.import_module(name)


def test_every_parser_has_a_harness() -> None:
    assert HARNESSES == [
        "fuzz_acoustic", "fuzz_nmea", "fuzz_remoteid_lines", "fuzz_remoteid_messages", "fuzz_remoteid_pcap",
        "fuzz_ti_cli", "fuzz_ti_mmwave",
    ]  # fmt: skip


@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz_harness_smoke(name: str) -> None:
    """Each harness's TestOneInput on its seeds and a few fixed inputs: the harnesses stay runnable
    (and their checks true) between long atheris campaigns."""
    harness = _harness(name)
    inputs = [b"", b"\x00", bytes(range(256)), b"\x07" + b"$GPGGA,*\r\n" * 3, *list(harness.seeds())[:6]]
    for data in inputs:
        harness.TestOneInput(data)


REGRESSIONS = sorted((FUZZ / "regressions").glob("*.bin"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_fuzz_regressions(path: Path) -> None:
    """Inputs the harnesses once failed on, replayed through every harness: each harness runs even
    when an earlier one fails, and the failure names all that failed."""
    data = path.read_bytes()
    failed = []
    for name in HARNESSES:
        try:
            _harness(name).TestOneInput(data)
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not failed, "\n".join(failed)


def test_fuzz_regressions_are_there() -> None:
    assert {p.stem for p in REGRESSIONS} >= {
        "acoustic-split-changes-resyncs",
        "ti_mmwave-split-changes-dropped-frames",
    }


def test_ti_regression_input_is_split_independent() -> None:
    """The finding behind regressions/ti_mmwave-split-changes-dropped-frames.bin: a frame cut short
    by 6 bytes, so that the next frame's magic word straddled its declared end. Fed whole, the parser
    saw that start and dropped 730 bytes as a cut-short frame; fed in pieces ending inside the magic
    word, it decided on the declared 736 bytes first and ate the next frame's start (one dropped
    frame less, the same bytes counted as garbage). Now only a whole magic word inside the declared
    length cuts a frame, and a dropped frame is discarded up to a magic word begun in its last bytes."""
    data = (FUZZ / "regressions" / "ti_mmwave-split-changes-dropped-frames.bin").read_bytes()[1:]
    frames, counters, _ = _ti_whole(data)
    assert len(frames) == 5 and counters["dropped_frames"] == 3 and counters["resyncs"] == 2
    assert_ti_split_independent(data, range(0, len(data), 16))
    for size in (64, 511, 4096):  # the read sizes of fuzz/_common.split (1, 16 above)
        assert_ti_split_independent(data, range(0, len(data), size), byte_by_byte=False)
    for size in (2, 3, 7):
        assert _ti_feed_pieces(data, size) == _ti_whole(data), f"{size}-byte reads"


@pytest.mark.fuzz
@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz_long(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Opt-in (`-m fuzz`): a short atheris campaign per harness, seeded from ../shared."""
    import subprocess
    import sys

    if "fuzz" not in (request.config.getoption("-m") or ""):
        pytest.skip("atheris campaigns are opt-in: pytest -m fuzz")
    pytest.importorskip("atheris")
    harness = _harness(name)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(harness.seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    run = subprocess.run(
        [sys.executable, str(FUZZ / f"{name}.py"), str(corpus), "-atheris_runs=20000", "-max_total_time=120"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
