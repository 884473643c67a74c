"""TI mmWave SDK 2.0/2.1 data-UART frames beside SDK 3.x ones, and frames of versions the node does
not decode: parser, encoder, `decode ti-mmwave`, the driver's health.

The SDK 2.x layout is built here by hand from TI's headers (`mmw_output.h`, `detected_obj.h`), so the
encoder is checked against the format, not against itself."""

from __future__ import annotations

import json
import logging
import random
import struct
import subprocess
import sys
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuas_node.drivers.parsing import BaudWatch
from cuas_node.drivers.radar.ti_decode import UnsupportedFirmware, decode_ti, frame_to_json
from cuas_node.drivers.radar.ti_driver import TiMmwaveDriver, doppler_bin_mps, needs_profile_message
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.radar.ti_frames import MAGIC, TiFrame, TiFrameParser, TiFrameSdk2
from cuas_node.drivers.radar.ti_frames_sdk2 import OBJECT, unsupported_version_message
from cuas_node.kernel.measurement import RadarDetection, SensorState
from tests.fakes import ChunkTransport

SDK21 = 0x02010004
SDK20 = 0x02000004
SDK12 = 0x01020005  # SDK 1.2.0.5: not decoded
XWR16 = 0xA1642
XWR14 = 0xA1443
STATS = {
    "interframe_processing_time_us": 4170,
    "transmit_output_time_us": 2100,
    "interframe_processing_margin_us": 80143,
    "interchirp_processing_margin_us": 12,
    "active_frame_cpu_load_pct": 4,
    "interframe_cpu_load_pct": 5,
}
# rangeIdx, dopplerIdx, peakVal, x, y, z (Q9: 512 = 1 m)
OBJECTS = [(57, -3, 1234, 512, 10240, -256), (90, 7, 987, -1664, 20736, 0)]
PAD = bytes(range(0xE0, 0x100))


def by_hand(number: int, platform: int, version: int = SDK21, q: int = 9) -> bytes:
    """An SDK 2.x frame laid out from TI's structs: header (no subFrameNumber on xWR14xx), TLV 1
    (descriptor and 12-byte records), TLV 2 (range profile), TLV 6 (stats), padding to 32."""
    records = b"".join(struct.pack("<HhHhhh", *o) for o in OBJECTS)
    tlv1 = struct.pack("<II", 1, 4 + len(records)) + struct.pack("<HH", len(OBJECTS), q) + records
    profile = struct.pack("<8H", *range(100, 108))
    tlv2 = struct.pack("<II", 2, len(profile)) + profile
    tlv6 = struct.pack("<II", 6, 24) + struct.pack("<6I", *STATS.values())
    body = tlv1 + tlv2 + tlv6
    header_len = 36 if platform == XWR14 else 40
    total = -(-(header_len + len(body)) // 32) * 32
    fields = struct.pack("<7I", version, total, platform, number, 777, len(OBJECTS), 3)
    header = MAGIC + fields + (b"" if platform == XWR14 else struct.pack("<I", 0))
    return header + body + PAD[: total - header_len - len(body)]


def encoded(number: int, platform: int, version: int = SDK21) -> bytes:
    points = [[o[3] / 512, o[4] / 512, o[5] / 512, 0.0] for o in OBJECTS]
    return encode_frame(
        number,
        points,
        version=version,
        platform=platform,
        time_cpu_cycles=777,
        xyz_q_format=9,
        sdk2_objects=np.array(OBJECTS, dtype=OBJECT),
        range_profile=np.arange(100, 108),
        stats=STATS,
        padding_byte_source=lambda n: PAD[:n],
    )


def feed_all(parser: TiFrameParser, chunks: Iterable[bytes]) -> list[TiFrame]:
    return [frame for chunk in chunks for frame in parser.feed(chunk)]


# --- the format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("platform", "length"), [(XWR16, 160), (XWR14, 128)])
@pytest.mark.parametrize("version", [SDK20, SDK21])
def test_encoder_writes_the_sdk2_layout_byte_exactly(platform: int, length: int, version: int) -> None:
    raw = encoded(5, platform, version)
    assert raw == by_hand(5, platform, version)
    assert len(raw) == length and struct.unpack_from("<I", raw, 12)[0] == length


@pytest.mark.parametrize("platform", [XWR16, XWR14])
def test_sdk2_frame_decodes_to_the_same_frame_shape(platform: int) -> None:
    parser = TiFrameParser(doppler_bin_mps=0.25)
    (frame,) = parser.feed(by_hand(5, platform))
    assert isinstance(frame, TiFrameSdk2)
    assert (frame.frame_number, frame.version, frame.platform) == (5, SDK21, platform)
    assert frame.time_cpu_cycles == 777 and frame.subframe == 0 and frame.xyz_q_format == 9
    np.testing.assert_array_equal(frame.points, [[1.0, 20.0, -0.5, -0.75], [-3.25, 40.5, 0.0, 1.75]])
    assert frame.snr_db is None and frame.noise_db is None and frame.temperature is None
    assert frame.stats == STATS
    assert frame.range_profile is not None and frame.range_profile.tolist() == list(range(100, 108))
    assert frame.sdk2_objects is not None and frame.sdk2_objects.tolist() == OBJECTS
    assert not frame.points.flags.writeable
    assert parser.counters["frames"] == 1 and parser.counters["points"] == 2
    assert parser.counters["dropped_bytes"] == parser.counters["dropped_frames"] == 0


def test_without_the_doppler_bin_width_doppler_is_unknown_and_left_out_of_the_json() -> None:
    (frame,) = TiFrameParser().feed(by_hand(5, XWR16))
    assert np.isnan(frame.points[:, 3]).all()
    obj = json.loads(json.dumps(frame_to_json(frame)))
    assert obj["points"][0] == {"x": 1.0, "y": 20.0, "z": -0.5, "doppler_bin": -3, "peak_val": 1234}
    assert obj["stats"] == STATS and "temperature_c" not in obj
    (known,) = TiFrameParser(doppler_bin_mps=0.25).feed(by_hand(5, XWR16))
    assert frame_to_json(known)["points"][1]["doppler"] == 1.75


def test_a_decoded_sdk2_frame_re_encodes_to_itself() -> None:
    raw = by_hand(9, XWR14)
    (frame,) = TiFrameParser().feed(raw)
    again = encode_frame(
        frame.frame_number,
        frame.points,
        version=frame.version,
        platform=frame.platform,
        time_cpu_cycles=frame.time_cpu_cycles,
        xyz_q_format=frame.xyz_q_format,
        sdk2_objects=frame.sdk2_objects,
        range_profile=frame.range_profile,
        stats=frame.stats,
        padding_byte_source=lambda n: PAD[:n],
    )
    assert again == raw


def test_encoder_refuses_what_sdk2_frames_cannot_carry() -> None:
    with pytest.raises(ValueError, match="SNR"):
        encode_frame(1, [[0.0, 1.0, 0.0, 0.0]], [20.0], version=SDK21)
    with pytest.raises(ValueError, match="doppler_bin_mps"):
        encode_frame(1, [[0.0, 1.0, 0.0, 2.0]], version=SDK21)
    with pytest.raises(ValueError, match="Q15"):
        encode_frame(1, [[0.0, 1.5, 0.0, 0.0]], version=SDK21, xyz_q_format=15)


coordinate = st.floats(-60.0, 60.0, allow_nan=False, width=32)


@settings(max_examples=120, deadline=None)
@given(
    xyz=st.lists(st.tuples(coordinate, coordinate, coordinate), min_size=0, max_size=30),
    bins=st.lists(st.integers(-128, 127), min_size=30, max_size=30),
    q=st.none() | st.integers(0, 9),
    bin_mps=st.floats(0.01, 1.0),
    platform=st.sampled_from([XWR16, XWR14]),
    number=st.integers(0, 2**32 - 1),
)
def test_sdk2_values_round_trip_within_one_lsb(
    xyz: list[tuple[float, float, float]],
    bins: list[int],
    q: int | None,
    bin_mps: float,
    platform: int,
    number: int,
) -> None:
    n = len(xyz)
    points = np.column_stack([np.array(xyz, dtype=np.float64).reshape(n, 3), np.array(bins[:n]) * bin_mps])
    raw = encode_frame(
        number, points, version=SDK21, platform=platform, xyz_q_format=q, doppler_bin_mps=bin_mps
    )
    got = TiFrameParser(doppler_bin_mps=bin_mps).feed(raw)
    assert len(got) == 1 and got[0].frame_number == number and got[0].n_points == n
    if not n:
        return
    frame = got[0]
    assert frame.xyz_q_format is not None and frame.sdk2_objects is not None
    lsb = 2.0**-frame.xyz_q_format
    assert np.all(np.abs(frame.points[:, :3] - points[:, :3]) <= lsb)
    assert frame.sdk2_objects["doppler_idx"].tolist() == bins[:n]
    np.testing.assert_allclose(frame.points[:, 3], points[:, 3], rtol=1e-6, atol=1e-6)


def test_sdk2_tlvs_that_disagree_are_dropped_and_the_next_frame_kept() -> None:
    count = bytearray(by_hand(1, XWR16))
    struct.pack_into("<I", count, 28, 3)  # numDetectedObj disagrees with the descriptor
    length = bytearray(by_hand(2, XWR16))
    struct.pack_into("<I", length, 40 + 4, 4 + 12 * 3)  # TLV 1 length disagrees with the descriptor
    parser = TiFrameParser()
    got = parser.feed(bytes(count) + bytes(length) + by_hand(3, XWR14))
    assert [f.frame_number for f in got] == [3]
    assert parser.counters["dropped_frames"] == 2


# --- mixed streams, any split -------------------------------------------------------------------------


def mixed_stream() -> bytes:
    sdk3 = [encode_frame(n, [[0.0, 5.0 + n, 0.0, 1.0]], [20.0], [50.0]) for n in range(4)]
    return (
        b"\x17" * 13
        + sdk3[0]
        + by_hand(10, XWR16)
        + encode_frame(99, [[0.0, 1.0, 0.0, 0.5]], version=SDK12)  # not decoded: skipped, counted
        + by_hand(11, XWR14, SDK20)
        + sdk3[1]
        + by_hand(12, XWR16)[:-40]  # cut short: the next frame starts inside its declared length
        + sdk3[2]
        + by_hand(13, XWR14)
        + sdk3[3]
    )


def state(parser: TiFrameParser, frames: list[TiFrame]) -> tuple[Any, ...]:
    keys = [json.dumps(frame_to_json(f), sort_keys=True) for f in frames]
    return keys, parser.counters, parser.buffered, parser.unsupported_version


def test_mixed_sdk2_sdk3_and_unsupported_frames_however_split() -> None:
    stream = mixed_stream()
    whole = TiFrameParser()
    reference = state(whole, whole.feed(stream))
    numbers = [json.loads(k)["frame"] for k in reference[0]]
    assert numbers == [0, 10, 11, 1, 2, 13, 3]
    counters = reference[1]
    assert counters["unsupported_version"] == 1 and counters["dropped_frames"] == 1
    assert counters["dropped_bytes"] == 13 + len(by_hand(12, XWR16)) - 40
    assert reference[3] == SDK12
    rng = random.Random(5)
    splits = [1, 2, 7, 13, 64] + [0] * 5
    for size in splits:
        parser = TiFrameParser()
        if size:
            chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        else:
            cuts = sorted(rng.sample(range(1, len(stream)), 25))
            chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert state(parser, feed_all(parser, chunks)) == reference, size


def test_unsupported_frame_cut_short_does_not_swallow_the_next() -> None:
    old = encode_frame(1, np.ones((6, 4)), np.ones(6), np.ones(6), version=SDK12)
    new = encode_frame(2, [[0.0, 1.0, 0.0, 0.5]], [20.0], [50.0])
    for chunks in ([old[:-50] + new], [bytes([b]) for b in old[:-50] + new]):
        parser = TiFrameParser()
        assert [f.frame_number for f in feed_all(parser, chunks)] == [2]
        assert parser.counters["unsupported_version"] == 1 and parser.counters["dropped_bytes"] == 0


# --- decode ti-mmwave ---------------------------------------------------------------------------------


def test_decode_ti_yields_every_frame_then_names_the_unsupported_version() -> None:
    out: list[dict[str, Any]] = []
    with pytest.raises(UnsupportedFirmware) as info:
        for obj in decode_ti(mixed_stream()):
            out.append(obj)
    assert [o["frame"] for o in out] == [0, 10, 11, 1, 2, 13, 3]
    message = str(info.value)
    assert message.startswith("1 frame(s) skipped: ")
    assert "mmWave SDK 1.2.0.5 (header version 0x01020005)" in message
    assert "flash the mmWave SDK 3.x out-of-box demo" in message and "supported: 2.0, 2.1, 3.x" in message


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "cuas_node.cli", *args], capture_output=True, timeout=60)


def test_cli_decodes_sdk2_frames(tmp_path: Path) -> None:
    path = tmp_path / "sdk21.dat"
    path.write_bytes(by_hand(1, XWR16) + by_hand(2, XWR14))
    result = _cli("decode", "ti-mmwave", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert [f["frame"] for f in frames] == [1, 2]
    assert frames[1]["points"][1] == {"x": -3.25, "y": 40.5, "z": 0.0, "doppler_bin": 7, "peak_val": 987}


def test_cli_says_once_which_version_it_cannot_decode_and_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "sdk12.dat"
    old = b"".join(encode_frame(n, [[0.0, 1.0, 0.0, 0.5]], version=SDK12) for n in range(20))
    path.write_bytes(old + by_hand(21, XWR16))
    result = _cli("decode", "ti-mmwave", str(path))
    assert result.returncode == 1
    assert [json.loads(line)["frame"] for line in result.stdout.splitlines()] == [21]
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0] == f"cuas-node decode: 20 frame(s) skipped: {unsupported_version_message(SDK12)}"


# --- the driver ---------------------------------------------------------------------------------------


class FixedClock:
    def now(self) -> float:
        return 1_700_000_000.5

    def monotonic(self) -> float:
        return 42.0

    def sleep(self, seconds: float) -> None:
        pass


def shipped_profile(model: str) -> str:
    return (resources.files("cuas_node.drivers.radar") / "ti_profiles" / f"{model}_drone.cfg").read_text()


def test_doppler_bin_width_comes_from_the_profile() -> None:
    """32 loops (a power of two): the bin is the profile's velocity resolution (docs/radar.md)."""
    assert doppler_bin_mps(shipped_profile("xwr1642")) == pytest.approx(0.45, abs=0.01)
    assert doppler_bin_mps(shipped_profile("iwr6843")) == pytest.approx(0.63, abs=0.01)
    # 24 loops: the demo's Doppler FFT has 32 bins, so each is 24/32 of the 24-loop resolution.
    profile24 = shipped_profile("xwr1642").replace("frameCfg 0 1 32 ", "frameCfg 0 1 24 ")
    assert doppler_bin_mps(profile24) == pytest.approx(doppler_bin_mps(shipped_profile("xwr1642")))
    assert doppler_bin_mps("sensorStop\n") is None


def test_listen_only_driver_takes_the_bin_width_from_cfg_file(tmp_path: Path) -> None:
    cfg = tmp_path / "board.cfg"
    cfg.write_text(shipped_profile("xwr1642"))
    driver = TiMmwaveDriver.from_port("r", "/dev/ttyACM1", FixedClock(), cfg_file=cfg)
    assert driver.frames.doppler_bin_mps == doppler_bin_mps(shipped_profile("xwr1642"))
    assert TiMmwaveDriver.from_port("r", "/dev/ttyACM1", FixedClock()).frames.doppler_bin_mps is None
    # Without a CLI port the file is only an aid: an unreadable one is logged, not fatal.
    missing = TiMmwaveDriver.from_port("r", "/dev/ttyACM1", FixedClock(), cfg_file=tmp_path / "gone.cfg")
    assert missing.frames.doppler_bin_mps is None


def sdk2_drone_frame(number: int, bin_mps: float) -> bytes:
    drone = [[3.0, 40.0, 0.0, -4 * bin_mps], [3.2, 40.1, 0.0, -4 * bin_mps]]
    return encode_frame(number, drone, version=SDK21, xyz_q_format=9, doppler_bin_mps=bin_mps)


def test_driver_turns_sdk2_frames_into_detections_with_the_bin_width() -> None:
    raw = sdk2_drone_frame(3, 0.45)
    driver = TiMmwaveDriver(
        "r", ChunkTransport([raw]), FixedClock(), parser=TiFrameParser(doppler_bin_mps=0.45)
    )
    driver.open()
    (det,) = driver.read()
    assert isinstance(det, RadarDetection) and det.n_points == 2
    assert det.radial_mps == pytest.approx(-1.8, abs=1e-5)
    assert det.range_m == pytest.approx(np.hypot(3.1, 40.05), abs=0.01)
    assert driver.health().state == SensorState.OK


def test_driver_without_the_bin_width_is_degraded_not_silent(caplog: pytest.LogCaptureFixture) -> None:
    reads = [sdk2_drone_frame(n, 0.45) for n in range(5)]
    driver = TiMmwaveDriver("r", ChunkTransport(reads), FixedClock())
    driver.open()
    with caplog.at_level(logging.WARNING):
        assert [driver.read() for _ in reads] == [[]] * 5
    health = driver.health()
    assert health.state == SensorState.DEGRADED
    assert health.detail == needs_profile_message(SDK21) and "cfg_file" in health.detail
    assert len([r for r in caplog.records if "2.1.0.4 frames" in r.getMessage()]) == 1


def test_driver_degrades_once_on_an_unsupported_version_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Well-formed frames of SDK 1.2 for longer than the baud window: the sensor says which firmware
    it found and what to do, once, and never that the baud rate is wrong; SDK 3.x frames cure it."""
    frames = [encode_frame(n, [[0.0, 1.0, 0.0, 0.5]], version=SDK12) for n in range(12)]
    old = b"".join(frames[:6]) + b"\x55" * 20 + b"".join(frames[6:])  # line noise mid-stream
    reads = [old[i : i + 100] for i in range(37, len(old), 100)]  # starts mid-frame: more garbage
    sdk3 = encode_frame(50, [[3.0, 40.0, 1.0, -4.0]], [25.0], [50.0])
    driver = TiMmwaveDriver("r", ChunkTransport([*reads, sdk3]), FixedClock())
    driver.baud_watch = BaudWatch(window_s=0.0, min_bytes=1)  # judge at once
    driver.open()
    with caplog.at_level(logging.INFO):
        for _ in reads:
            assert driver.read() == []
        health = driver.health()
        assert health.state == SensorState.DEGRADED
        assert health.detail == unsupported_version_message(SDK12)
        assert health.counters["unsupported_version"] >= 10 and health.counters["dropped_bytes"] > 0
        assert not driver.baud_watch.flagged
        assert len(driver.read()) == 1
    assert driver.health().state == SensorState.OK and driver.health().detail == ""
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "mmWave SDK 1.2.0.5" in warned[0].getMessage()
    assert any("arrive again" in r.getMessage() for r in caplog.records)
