"""Framed PCM: round trip, and corruption/drops/splits anywhere are counted and never fatal."""

from __future__ import annotations

import numpy as np
import pytest

from cuas_node.drivers.acoustic.protocol import HEADER_LEN, MAGIC, PcmFrameParser, encode_frame


def _frames(
    n: int, channels: int = 4, samples: int = 64, seed: int = 0
) -> tuple[list[bytes], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    pcm = [rng.integers(-32768, 32767, (samples, channels), dtype=np.int16) for _ in range(n)]
    return [encode_frame(p, 16000, i, 1_000_000 + i * 4000) for i, p in enumerate(pcm)], pcm


def test_round_trip_fields_and_samples() -> None:
    data, pcm = _frames(3)
    frames = PcmFrameParser().feed(b"".join(data))
    assert [f.sequence for f in frames] == [0, 1, 2]
    assert frames[1].timestamp_us == 1_004_000 and frames[1].sample_rate == 16000 and frames[1].channels == 4
    np.testing.assert_array_equal(frames[2].samples, pcm[2])
    assert all(f.gap == 0 for f in frames)


def test_split_at_every_byte_boundary() -> None:
    data, _ = _frames(3)
    stream = b"".join(data)
    for cut in range(1, len(stream)):
        parser = PcmFrameParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [f.sequence for f in got] == [0, 1, 2]
        assert parser.counters["dropped_bytes"] == 0


def test_byte_at_a_time() -> None:
    data, _ = _frames(2)
    parser = PcmFrameParser()
    got = [f for b in b"".join(data) for f in parser.feed(bytes([b]))]
    assert len(got) == 2


def test_corrupt_payload_is_counted_and_next_frame_recovered() -> None:
    data, _ = _frames(3)
    bad = bytearray(data[1])
    bad[HEADER_LEN + 10] ^= 0x40
    parser = PcmFrameParser()
    got = parser.feed(data[0] + bytes(bad) + data[2])
    assert [f.sequence for f in got] == [0, 2]
    assert parser.counters["crc_errors"] == 1
    assert got[1].gap == 1 and parser.counters["dropped_frames"] == 1


def test_corrupt_length_does_not_stall() -> None:
    """A damaged sample count must not make the parser wait for a huge frame: the header CRC
    rejects it at once and the following frame is decoded in the same feed."""
    data, _ = _frames(2)
    bad = bytearray(data[0])
    bad[24] = 0xFF  # n_samples low byte
    parser = PcmFrameParser()
    got = parser.feed(bytes(bad) + data[1])
    assert [f.sequence for f in got] == [1]
    assert parser.counters["header_crc_errors"] == 1


def test_dropped_frames_counted_from_sequence() -> None:
    data, _ = _frames(6)
    parser = PcmFrameParser()
    got = parser.feed(data[0] + data[1] + data[4] + data[5])
    assert [f.gap for f in got] == [0, 0, 2, 0]
    assert parser.counters["dropped_frames"] == 2


def test_sequence_wraps_and_restarts() -> None:
    pcm = np.zeros((8, 2), dtype=np.int16)
    parser = PcmFrameParser()
    got = parser.feed(
        encode_frame(pcm, 16000, 2**32 - 1, 0)
        + encode_frame(pcm, 16000, 0, 1)
        + encode_frame(pcm, 16000, 0, 2)
    )
    assert [f.gap for f in got] == [0, 0, 0]
    assert got[2].restart and parser.counters["sequence_restarts"] == 1


def test_garbage_and_false_magic_are_skipped() -> None:
    data, _ = _frames(2)
    junk = b"\x00\xff" * 50 + MAGIC + b"\x01" * 40 + MAGIC[:2]
    parser = PcmFrameParser()
    got = parser.feed(junk + data[0] + junk + data[1])
    assert [f.sequence for f in got] == [0, 1]
    assert parser.counters["dropped_bytes"] >= 2 * len(junk) - 8


@pytest.mark.parametrize("seed", range(5))
def test_random_corruption_never_raises(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data, _ = _frames(40, seed=seed)
    stream = bytearray(b"".join(data))
    for pos in rng.integers(0, len(stream), 30):
        stream[pos] = int(rng.integers(0, 256))
    for start, length in zip(rng.integers(0, len(stream), 5), rng.integers(1, 300, 5), strict=True):
        del stream[start : start + length]
    parser = PcmFrameParser()
    got = []
    i = 0
    while i < len(stream):
        step = int(rng.integers(1, 700))
        got += parser.feed(bytes(stream[i : i + step]))
        i += step
    c = parser.counters
    assert 0 < len(got) < 40
    assert all(f.samples.shape == (64, 4) for f in got)
    assert c["frames"] == len(got)
    assert c["crc_errors"] + c["header_crc_errors"] + c["dropped_frames"] > 0
    assert parser.buffered < 2 * len(data[0])
