"""TI mmWave data-UART parser, encoder and driver, checked against two real xWR1642 captures."""

from __future__ import annotations

import contextlib
import csv
import json
import random
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cuas_node.drivers.parsing import ParseError
from cuas_node.drivers.radar.cluster import ClusterOptions, DopplerBandFilter, PointClusterer
from cuas_node.drivers.radar.ti_decode import decode_ti, frame_to_json
from cuas_node.drivers.radar.ti_driver import TiMmwaveDriver
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.radar.ti_frames import BUFFER_CAP, HEADER, MAGIC, MAX_FRAME_LEN, TiFrame, TiFrameParser
from cuas_node.kernel.measurement import EmptyRadarScan, RadarDetection, SensorState
from tests.fakes import ChunkTransport

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RADAR = SHARED / "captures" / "radar"
needs_shared = pytest.mark.skipif(
    not RADAR.is_dir(), reason=f"reference captures not found at {RADAR} (../shared is absent)"
)


def capture(name: str) -> bytes:
    return (RADAR / f"ti-xwr16xx-sdk3.4-{name}.dat").read_bytes()


def split_frames(data: bytes) -> list[bytes]:
    """Cut an intact capture at its declared lengths (independently of the parser under test)."""
    out = []
    off = 0
    while off < len(data):
        assert data[off : off + 8] == MAGIC
        length = struct.unpack_from("<I", data, off + 12)[0]
        out.append(data[off : off + length])
        off += length
    return out


def feed_all(parser: TiFrameParser, chunks: Iterable[bytes]) -> list[TiFrame]:
    return [frame for chunk in chunks for frame in parser.feed(chunk)]


def as_json(frames: list[TiFrame]) -> list[dict[str, Any]]:
    return [frame_to_json(f) for f in frames]


# --- real captures -------------------------------------------------------------------------------


@needs_shared
def test_capture_a_every_frame_decoded() -> None:
    parser = TiFrameParser()
    frames = parser.feed(capture("a"))
    assert [f.frame_number for f in frames] == list(range(370, 471))
    assert all(f.n_points == 4 for f in frames)
    assert parser.counters == {
        "frames": 101,
        "resyncs": 0,
        "dropped_bytes": 0,
        "dropped_frames": 0,
        "frame_gaps": 0,
        "points": 404,
        "unsupported_version": 0,
    }
    assert parser.buffered < 32  # at most the last frame's padding, skipped once more bytes come
    first = frames[0]
    assert (first.version, first.platform, first.subframe) == (0x03040003, 0xA1642, 0)
    # Values from protocols.md 1.1.8, decoded there by an independent script.
    np.testing.assert_allclose(
        first.points,
        [[0.009544, 0.305252, 0, 0], [0.017724, 0.566896, 0, 0], [0, 0.828945, 0, 0], [0, 1.090717, 0, 0]],
        atol=1e-6,
    )
    assert first.snr_db is not None and first.noise_db is not None
    np.testing.assert_allclose(first.snr_db, [24.7, 30.3, 28.1, 21.2])
    np.testing.assert_allclose(first.noise_db, [89.8, 72.1, 58.9, 50.4])
    assert first.stats is not None
    assert tuple(first.stats.values()) == (4171, 8342, 80140, 471, 4, 5)
    assert first.temperature is not None
    assert first.temperature["report_valid"] == 0 and first.temperature["time_ms"] == 98376
    temps = [v for k, v in first.temperature.items() if k not in ("report_valid", "time_ms")]
    assert temps == [46, 45, 46, 46, 48, 48, 49, 49, 46, 45]
    assert first.range_profile is not None and first.range_profile.shape == (256,)
    assert first.noise_profile is None


def read_expected_points() -> dict[int, list[list[str]]]:
    """The golden CSV: header `Frame Seq, Obj_index, x, y, z, velocity, snr, noise`, `#` comments."""
    by_frame: dict[int, list[list[str]]] = {}
    with (RADAR / "ti-xwr16xx-sdk3.4-b.expected-points.csv").open() as fh:
        rows = [row for row in csv.reader(fh) if row and not row[0].startswith("#")]
    header = [h.strip() for h in rows[0]]
    assert header == ["Frame Seq", "Obj_index", "x", "y", "z", "velocity", "snr", "noise"]
    for row in rows[1:]:
        by_frame.setdefault(int(row[0]), []).append([c.strip() for c in row[1:]])
    return by_frame


@needs_shared
def test_capture_b_points_equal_expected_csv() -> None:
    parser = TiFrameParser()
    frames = parser.feed(capture("b"))
    expected = read_expected_points()
    assert len(frames) == 101
    assert [f.frame_number for f in frames] == sorted(expected) == list(range(316, 417))
    assert sorted(f.n_points for f in frames).count(3) == 7
    assert parser.counters["points"] == sum(len(v) for v in expected.values()) == 397
    assert parser.counters["dropped_bytes"] == parser.counters["dropped_frames"] == 0
    for frame in frames:
        rows = expected[frame.frame_number]
        assert frame.snr_db is not None and frame.noise_db is not None
        assert len(rows) == frame.n_points
        for k, row in enumerate(rows):
            assert row[0] == f"obj_{k}"
            got = [f"{float(v):.5f}" for v in frame.points[k]]
            assert got == row[1:5], (frame.frame_number, k)
            # The CSV holds the raw 0.1 dB integers.
            assert round(frame.snr_db[k] * 10) == int(row[5])
            assert round(frame.noise_db[k] * 10) == int(row[6])


@needs_shared
@pytest.mark.parametrize("name", ["a", "b"])
def test_capture_byte_by_byte_and_random_splits_give_identical_frames(name: str) -> None:
    data = capture(name)
    reference_parser = TiFrameParser()
    reference = as_json(reference_parser.feed(data))
    one_by_one = TiFrameParser()
    assert as_json(feed_all(one_by_one, (data[i : i + 1] for i in range(len(data))))) == reference
    assert one_by_one.counters == reference_parser.counters
    rng = random.Random(7)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(data)), 60))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        parser = TiFrameParser()
        assert as_json(feed_all(parser, chunks)) == reference
        assert parser.counters == reference_parser.counters


def same_padding(pad: bytes) -> Callable[[int], bytes]:
    def source(n: int) -> bytes:
        return pad[len(pad) - n :]

    return source


@needs_shared
@pytest.mark.parametrize("name", ["a", "b"])
def test_encoder_reproduces_the_real_board_bytes(name: str) -> None:
    """Re-encoding each decoded frame with its own padding gives back the captured bytes exactly."""
    raw_frames = split_frames(capture(name))
    frames = TiFrameParser().feed(capture(name))
    assert len(raw_frames) == len(frames)
    for raw, f in zip(raw_frames, frames, strict=True):
        pad = raw[-12:]
        assert pad != bytes(12)  # the real board's padding is not zero
        encoded = encode_frame(
            f.frame_number,
            f.points,
            f.snr_db,
            f.noise_db,
            version=f.version,
            platform=f.platform,
            time_cpu_cycles=f.time_cpu_cycles,
            subframe=f.subframe,
            range_profile=f.range_profile,
            stats=f.stats,
            temperature=f.temperature,
            padding_byte_source=same_padding(pad),
        )
        assert encoded == raw


@needs_shared
def test_decode_ti_output_is_json_and_documented_shape() -> None:
    objs = list(decode_ti(capture("b")))
    assert len(objs) == 101
    first = json.loads(json.dumps(objs[0]))
    assert first["type"] == "ti_frame" and first["frame"] == 316
    assert first["points"][0] == {
        "x": 0.009544,
        "y": 0.305252,
        "z": 0.0,
        "doppler": 0.0,
        "snr_db": 24.2,
        "noise_db": 89.3,
    }
    assert first["stats"]["transmit_output_time_us"] == 8342
    assert first["temperature_c"]["rx0"] == 58


# --- damaged streams ------------------------------------------------------------------------------


@needs_shared
def test_garbage_between_frames_is_counted_and_skipped() -> None:
    frames = split_frames(capture("a"))
    rng = random.Random(3)
    junk = [
        bytes(rng.randrange(256) for _ in range(37)),
        MAGIC + b"\xff" * 40,  # a false sync: magic word then a header that fails validation
        MAGIC[:5],  # a partial magic word
        b"\x00" * 500,
    ]
    stream = b""
    garbage = 0
    for k, raw in enumerate(frames):
        if k % 10 == 5:
            piece = junk[(k // 10) % len(junk)]
            stream += piece
            garbage += len(piece)
        stream += raw
    parser = TiFrameParser()
    got = parser.feed(stream)
    assert [f.frame_number for f in got] == list(range(370, 471))
    c = parser.counters
    assert c["dropped_bytes"] == garbage
    assert c["resyncs"] == 10
    assert c["dropped_frames"] == 0 and c["frame_gaps"] == 0
    one_by_one = TiFrameParser()
    assert len(feed_all(one_by_one, (stream[i : i + 1] for i in range(len(stream))))) == 101
    assert one_by_one.counters == c


@needs_shared
@pytest.mark.parametrize("keep", [8, 20, 39, 40, 41, 100, 400, 720, 723])
def test_truncated_frame_is_dropped_and_next_frame_kept(keep: int) -> None:
    frames = split_frames(capture("a"))
    stream = frames[0] + frames[1][:keep] + frames[2] + frames[3]
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        parser = TiFrameParser()
        got = feed_all(parser, chunks)
        assert [f.frame_number for f in got] == [370, 372, 373]
        c = parser.counters
        assert c["frame_gaps"] == 1
        assert c["dropped_bytes"] == keep
        if keep >= 40:  # a validated header: the cut-short frame itself is counted
            assert c["dropped_frames"] == 1


@needs_shared
@pytest.mark.parametrize("keep", [724, 730, 735])
def test_frame_that_lost_only_padding_is_kept_with_the_next(keep: int) -> None:
    """The capture's TLVs end at byte 724 of 736: losing padding bytes loses no data."""
    frames = split_frames(capture("a"))
    stream = frames[0] + frames[1][:keep] + frames[2] + frames[3]
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        parser = TiFrameParser()
        got = feed_all(parser, chunks)
        assert [f.frame_number for f in got] == [370, 371, 372, 373]
        assert parser.counters["dropped_frames"] == parser.counters["dropped_bytes"] == 0


@needs_shared
def test_bytes_lost_inside_a_frame_do_not_swallow_the_next() -> None:
    frames = split_frames(capture("a"))
    damaged = frames[1][:300] + frames[1][340:]  # 40 bytes lost mid-frame, length field unchanged
    stream = frames[0] + damaged + frames[2]
    parser = TiFrameParser()
    assert [f.frame_number for f in parser.feed(stream)] == [370, 372]
    assert parser.counters["dropped_frames"] == 1


@needs_shared
def test_intact_frame_followed_by_noise_is_kept_at_once() -> None:
    frames = split_frames(capture("a"))
    parser = TiFrameParser()
    got = parser.feed(frames[0] + bytes(range(1, 200)))
    assert [f.frame_number for f in got] == [370]
    assert parser.feed(b"\x55" * 1000) == []
    assert [f.frame_number for f in parser.feed(frames[1])] == [371]
    assert parser.counters["dropped_bytes"] == 199 + 1000


def profile_frame(number: int, values: int) -> bytes:
    """A frame with only a range profile: `values` sets its padding (8 values: none, 5: 6 bytes)."""
    return encode_frame(number, np.zeros((0, 4)), range_profile=np.arange(values))


def reads_of(stream: bytes) -> Iterable[list[bytes]]:
    yield [stream]
    for size in (1, 2, 3, 5, 7, 13, 64):
        yield [stream[i : i + size] for i in range(0, len(stream), size)]


@pytest.mark.parametrize("lost", range(1, 25))
def test_next_start_inside_a_frame_is_judged_the_same_however_read(lost: int) -> None:
    """A frame that lost its last bytes has the next frame start inside its declared length. With
    the whole magic word inside, the frame is cut there and, its TLVs running past the cut, dropped.
    With only the first 1-7 bytes of the magic word inside, nothing tells the frame from an intact
    one when its declared bytes have arrived: it is kept (its last TLV bytes are the next frame's)
    and the next frame is found all the same. Either way frames and counters do not depend on where
    the reads ended (a read ending inside that magic word once changed `dropped_frames`)."""
    cut = profile_frame(2, 8)
    assert len(cut) == 64 and struct.unpack_from("<I", cut, 40 + 4)[0] == 16  # no padding
    stream = profile_frame(1, 8) + cut[:-lost] + profile_frame(3, 8) + profile_frame(4, 8)
    states = set()
    for chunks in reads_of(stream):
        parser = TiFrameParser()
        numbers = tuple(f.frame_number for f in feed_all(parser, chunks))
        states.add((numbers, tuple(parser.counters.items()), parser.buffered))
    assert len(states) == 1
    numbers, items, _ = states.pop()
    counters = dict(items)
    if lost < len(MAGIC):
        assert numbers == (1, 2, 3, 4)
        assert counters["dropped_frames"] == counters["dropped_bytes"] == counters["resyncs"] == 0
    else:
        assert numbers == (1, 3, 4)
        assert counters["dropped_frames"] == 1 and counters["dropped_bytes"] == 64 - lost
        assert counters["resyncs"] == 1 and counters["frame_gaps"] == 1


def test_intact_frame_ending_like_a_magic_word_comes_out_at_once() -> None:
    """Noise values of 51.2-76.7 dB end a frame without padding in 0x02, the magic word's first
    byte: such a frame is not held back until the next frame's bytes show what starts there."""
    profile = [0, 0, 0, 0, 0x0200, 0x0401, 0x0603, 0x0805]  # ends in the magic word's first 7 bytes
    makers: list[Callable[[int], bytes]] = [
        lambda n: encode_frame(n, np.ones((2, 4)), [20.0, 20.0], [60.0, 60.0]),
        lambda n: encode_frame(n, np.zeros((0, 4)), range_profile=profile),
    ]
    for make in makers:
        assert make(1).endswith((MAGIC[:1], MAGIC[:7]))
        parser = TiFrameParser()
        assert [f.frame_number for f in parser.feed(make(1))] == [1]
        assert [f.frame_number for f in parser.feed(make(2))] == [2]
        assert parser.counters["dropped_bytes"] == parser.counters["dropped_frames"] == 0


@pytest.mark.parametrize("lost", range(1, 7))
def test_frame_that_lost_padding_before_a_start_across_its_end_is_kept_however_read(lost: int) -> None:
    cut = profile_frame(2, 5)
    assert len(cut) == 64  # 6 bytes of padding
    stream = profile_frame(1, 8) + cut[:-lost] + profile_frame(3, 8)
    for chunks in reads_of(stream):
        parser = TiFrameParser()
        assert [f.frame_number for f in feed_all(parser, chunks)] == [1, 2, 3]
        assert parser.counters["dropped_bytes"] == parser.counters["dropped_frames"] == 0


def test_tlv_overrunning_the_frame_is_dropped() -> None:
    good = encode_frame(1, [[0.0, 1.0, 0.0, 0.5]], [20.0], [50.0])
    bad = bytearray(encode_frame(2, [[0.0, 1.0, 0.0, 0.5]], [20.0], [50.0]))
    struct.pack_into("<I", bad, 40 + 4, 4000)  # TLV 1 length far past totalPacketLen
    parser = TiFrameParser()
    got = parser.feed(good + bytes(bad) + encode_frame(3, [], None))
    assert [f.frame_number for f in got] == [1, 3]
    assert parser.counters["dropped_frames"] == 1
    assert parser.counters["frame_gaps"] == 1


def test_side_info_count_must_match_points() -> None:
    frame = bytearray(encode_frame(1, [[0.0, 1.0, 0.0, 0.5]] * 2, [20.0, 21.0], [50.0, 51.0]))
    struct.pack_into("<I", frame, 28, 3)  # numDetectedObj disagrees with TLV 1
    parser = TiFrameParser()
    assert parser.feed(bytes(frame)) == []
    assert parser.counters["dropped_frames"] == 1


def test_unsupported_version_is_counted_not_garbage() -> None:
    """A well-formed frame of a version no decoder speaks is skipped whole: neither dropped bytes
    (which would read as a wrong baud rate) nor a dropped frame, and its version is kept."""
    parser = TiFrameParser()
    old = encode_frame(1, [[0.0, 1.0, 0.0, 0.5]], version=0x01020005)
    new = encode_frame(2, [[0.0, 1.0, 0.0, 0.5]], [20.0], [50.0])
    assert parser.feed(old + old) == []
    assert parser.unsupported_version == 0x01020005
    assert [f.frame_number for f in parser.feed(new)] == [2]
    c = parser.counters
    assert c["unsupported_version"] == 2 and c["frames"] == 1
    assert c["dropped_bytes"] == c["dropped_frames"] == c["resyncs"] == 0


def test_header_of_a_known_version_with_an_insane_length_is_a_false_sync() -> None:
    parser = TiFrameParser()
    bad = bytearray(encode_frame(1, [[0.0, 1.0, 0.0, 0.5]], version=0x04000000))
    struct.pack_into("<I", bad, 12, 100)  # totalPacketLen not a multiple of 32
    assert parser.feed(bytes(bad)) == []
    assert parser.counters["unsupported_version"] == 0
    assert parser.counters["dropped_bytes"] + parser.buffered == len(bad)


def test_frame_gaps_counted_and_restart_is_not_a_gap() -> None:
    parser = TiFrameParser()
    numbers = [10, 11, 14, 15, 1, 2, 0xFFFFFFFF, 0, 1]
    feed_all(parser, (encode_frame(n, [[0.0, 2.0, 0.0, 1.0]], [10.0], [40.0]) for n in numbers))
    assert parser.counters["frames"] == len(numbers)
    assert parser.counters["frame_gaps"] == 2  # 12, 13; the restart to 1 and the wrap are not gaps


def test_frame_without_points_or_side_info() -> None:
    frame = TiFrameParser().feed(encode_frame(5, np.zeros((0, 4)), None, stats=None))[0]
    assert frame.points.shape == (0, 4) and frame.snr_db is None
    obj = frame_to_json(TiFrameParser().feed(encode_frame(6, [[1.0, 2.0, 3.0, 4.0]]))[0])
    assert obj["points"] == [{"x": 1.0, "y": 2.0, "z": 3.0, "doppler": 4.0}]


def test_encoder_pads_to_32_with_non_zero_bytes() -> None:
    for n in range(0, 9):
        raw = encode_frame(n, np.ones((n, 4)), np.full(n, 12.3), np.full(n, 45.6))
        assert len(raw) % 32 == 0 and struct.unpack_from("<I", raw, 12)[0] == len(raw)
        unpadded = 40 + (8 + 16 * n + 8 + 4 * n if n else 0)
        assert 0 not in raw[unpadded:]


def test_buffer_stays_under_cap_with_adversarial_lengths() -> None:
    """Headers that claim the maximum length, one after another, never let the buffer grow."""
    fake = HEADER.pack(MAGIC, 0x03040003, MAX_FRAME_LEN, 0xA1642, 1, 0, 0, 1, 0)
    parser = TiFrameParser()
    blob = (fake + b"\x01" * (MAX_FRAME_LEN // 3)) * 8
    parser.feed(blob)
    for i in range(0, len(blob), 4093):
        parser.feed(blob[i : i + 4093])
    assert parser.buffer_high_water <= BUFFER_CAP
    assert parser.counters["frames"] == 0


# --- property tests -------------------------------------------------------------------------------

finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
db_values = st.integers(-32768, 32767).map(lambda raw: raw / 10)


@st.composite
def random_frame(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]:
    n = draw(st.integers(0, 40))
    points = np.array(draw(st.lists(finite_f32, min_size=4 * n, max_size=4 * n)), dtype=np.float32)
    with_side = draw(st.booleans())
    snr = np.array(draw(st.lists(db_values, min_size=n, max_size=n))) if with_side else None
    noise = np.array(draw(st.lists(db_values, min_size=n, max_size=n))) if with_side else None
    return draw(st.integers(0, 2**32 - 1)), points.reshape(n, 4), snr, noise


@settings(max_examples=150, deadline=None)
@given(st.lists(random_frame(), min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_encode_decode_round_trip(frames: list[Any], rnd: random.Random) -> None:
    stream = b"".join(encode_frame(n, p, s, z, time_cpu_cycles=n * 7) for n, p, s, z in frames)
    cuts = sorted(rnd.sample(range(len(stream) + 1), min(5, len(stream))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    parser = TiFrameParser()
    got = feed_all(parser, chunks)
    assert len(got) == len(frames)
    assert parser.counters["dropped_bytes"] == 0
    for frame, (number, points, snr, noise) in zip(got, frames, strict=True):
        assert frame.frame_number == number and frame.time_cpu_cycles == (number * 7) & 0xFFFFFFFF
        np.testing.assert_array_equal(frame.points, points)
        if snr is None or len(points) == 0:
            assert frame.snr_db is None and frame.noise_db is None
        else:
            assert frame.snr_db is not None and frame.noise_db is not None
            np.testing.assert_allclose(frame.snr_db, snr, atol=1e-9)
            np.testing.assert_allclose(frame.noise_db, noise, atol=1e-9)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=3000) | st.sampled_from([MAGIC, MAGIC[:3], b"\x00" * 40]), max_size=12))
def test_random_bytes_never_raise_and_never_overflow(chunks: list[bytes]) -> None:
    parser = TiFrameParser()
    with contextlib.suppress(ParseError):
        feed_all(parser, chunks)
    assert parser.buffered <= BUFFER_CAP and parser.buffer_high_water <= BUFFER_CAP
    assert parser.counters["dropped_bytes"] + parser.buffered <= sum(map(len, chunks))


@settings(max_examples=60, deadline=None)
@given(random_frame(), st.binary(min_size=1, max_size=200), st.integers(0, 2000))
def test_corrupted_frame_never_breaks_the_next(frame: Any, junk: bytes, cut: int) -> None:
    number, points, snr, noise = frame
    first = encode_frame(number, points, snr, noise)
    nxt = encode_frame(number + 1, [[1.0, 2.0, 0.0, 0.5]], [10.0], [40.0])
    stream = first[: min(cut, len(first))] + junk + nxt
    got = TiFrameParser().feed(stream)
    assert got and got[-1].frame_number == (number + 1) & 0xFFFFFFFF


# --- driver ---------------------------------------------------------------------------------------


class FixedClock:
    def now(self) -> float:
        return 1_700_000_000.5

    def monotonic(self) -> float:
        return 42.0

    def sleep(self, seconds: float) -> None:
        pass


def test_driver_turns_frames_into_detections() -> None:
    drone = [[3.0, 40.0, 1.0, -4.0], [3.2, 40.1, 1.0, -4.1]]
    wall = [[x, 20.0, 0.0, 0.0] for x in np.linspace(-5, 5, 30)]
    raw = encode_frame(9, drone + wall, [25.0, 18.0] + [30.0] * 30, [50.0] * 32)
    transport = ChunkTransport([raw[:100], raw[100:]])
    driver = TiMmwaveDriver("radar-1", transport, FixedClock())
    driver.open()
    assert driver.read() == []
    dets = driver.read()
    assert len(dets) == 1
    det = dets[0]
    assert isinstance(det, RadarDetection)
    assert det.sensor_id == "radar-1" and det.t_capture == 1_700_000_000.5 and det.t_receive == 42.0
    assert det.n_points == 2 and det.radial_mps < 0
    assert det.range_m == pytest.approx(np.linalg.norm([3.0, 40.0, 1.0]), abs=0.2)
    health = driver.health()
    assert health.kind == "ti-mmwave" and health.state == SensorState.OK
    assert health.counters["frames"] == 1 and health.counters["points"] == 32


def test_a_frame_without_detections_is_an_empty_scan_at_the_frames_time() -> None:
    """An empty frame, or one whose points are all static clutter, is a look that saw nothing:
    one `EmptyRadarScan`, stamped as a detection of that frame would be (fusion charges misses),
    and not counted as a measurement in the sensor's health."""
    wall = [[x, 20.0, 0.0, 0.0] for x in np.linspace(-5, 5, 30)]
    frames = encode_frame(9, np.zeros((0, 4)), None) + encode_frame(10, wall, [30.0] * 30, [50.0] * 30)
    driver = TiMmwaveDriver("radar-1", ChunkTransport([frames]), FixedClock())
    driver.open()
    looks = driver.read()
    assert looks == [EmptyRadarScan("radar-1", 1_700_000_000.5, 42.0)] * 2
    assert driver.health().measurements == 0  # health's detections_per_s counts things seen


@needs_shared
def test_driver_on_static_capture_reports_nothing_unless_band_disabled() -> None:
    data = capture("a")
    still = TiMmwaveDriver("r", ChunkTransport([data]), FixedClock())
    still.open()
    looks = still.read()  # every frame a look that found nothing moving: its misses count
    assert len(looks) == 101 and all(isinstance(m, EmptyRadarScan) for m in looks)
    everything = PointClusterer(clutter_filter=DopplerBandFilter(0.0))
    driver = TiMmwaveDriver("r", ChunkTransport([data]), FixedClock(), clusterer=everything)
    driver.open()
    dets = driver.read()
    assert len(dets) == 101  # the four points 26 cm apart are one object per frame
    assert all(isinstance(d, RadarDetection) and d.n_points == 4 for d in dets)


def test_from_port_uses_data_port_defaults_and_config_options() -> None:
    options = ClusterOptions(doppler_clutter_band_mps=0.7)
    driver = TiMmwaveDriver.from_port("r", "/dev/ttyACM1", FixedClock(), options=options)
    assert driver.clusterer.clutter_filter == DopplerBandFilter(0.7)
    # Its Doppler wraps where the shipped IWR6843 profile's does (tests/test_radar_cluster.py).
    assert driver.clusterer.doppler_span_mps == pytest.approx(10.114, abs=1e-3)
    xwr = TiMmwaveDriver.from_port("r", "/dev/ttyACM1", FixedClock(), model="xwr1642")
    assert xwr.clusterer.doppler_span_mps == pytest.approx(7.245, abs=1e-3)
    transport = driver.transport
    assert getattr(transport, "port", None) == "/dev/ttyACM1"
    assert getattr(transport, "baudrate", None) == 921600
    assert not transport.is_open
