"""Record and replay: the pcapng writer and reader, the taps, rotation, the FPV bus, the commands.

The golden regression tests (replaying checked-in recordings) are in test_golden.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cuas_node.cli import main
from cuas_node.config import TiMmwaveSensor, build_config
from cuas_node.driver_factory import build_driver
from cuas_node.drivers.nmea.encode import encode_gga, encode_rmc
from cuas_node.drivers.record import (
    FPV_PINS,
    FPV_SPI,
    KIND_LINKTYPES,
    Channel,
    Recorder,
    RecordingTransport,
    pack_bits,
    read_recording,
    rotated_path,
    tap_driver,
    unpack_bits,
)
from cuas_node.drivers.sim.fpv import FpvTransmitter, RfEnvironment, SimFpvBench, SteppedClock
from cuas_node.kernel.measurement import RfPresence
from cuas_node.recording_config import recording_header, replay_config
from cuas_node.replay import GOLDEN_DIR, Replay, ReplayClock, replay_to_string
from tests.conftest import free_port
from tests.fakes import ChunkTransport

NODE = {"id": "test-node", "position": {"lat": 52.0, "lon": 4.0, "alt_m": 10.0}}


def test_pcapng_round_trip_with_direction_header_and_interfaces(tmp_path: Path) -> None:
    clock = SteppedClock(epoch=1_700_000_000.0)
    big = {"config": {"note": "x" * 150_000}}  # longer than one 16-bit option: split over comments
    rec = Recorder(tmp_path / "r.pcapng", clock, big)
    a = rec.add_channel(Channel("radar-1", "ti-mmwave", "data", "/dev/ttyACM1"))
    b = rec.add_channel(Channel("radar-1", "ti-mmwave", "cli", "/dev/ttyACM0"))
    rec.write(a, b"\x02\x01\x04\x03frame")
    clock.sleep(0.25)
    rec.write(b, b"sensorStart\n", outbound=True)
    rec.write(b, b"Done\n")
    rec.close()
    got = read_recording(tmp_path / "r.pcapng")
    assert got.header == big
    assert [lt for lt, _, _ in got.interfaces] == [
        KIND_LINKTYPES["ti-mmwave"],
        KIND_LINKTYPES["ti-mmwave-cli"],
    ]
    assert got.channel(1) == Channel("radar-1", "ti-mmwave", "cli", "/dev/ttyACM0")
    assert [(p.interface, p.data, p.outbound) for p in got.packets] == [
        (0, b"\x02\x01\x04\x03frame", False),
        (1, b"sensorStart\n", True),
        (1, b"Done\n", False),
    ]
    assert got.packets[1].ts_us - got.packets[0].ts_us == 250_000
    assert got.packets[0].ts_us == 1_700_000_000_000_000


def test_recording_transport_records_reads_inbound_and_writes_outbound(tmp_path: Path) -> None:
    clock = SteppedClock()
    rec = Recorder(tmp_path / "t.pcapng", clock)
    inner = ChunkTransport([b"abc", b"", b"def"])
    tap = RecordingTransport(inner, rec, rec.add_channel(Channel("gps", "nmea")))
    tap.open()
    assert tap.is_open and tap.port == "/dev/ttyFAKE"
    assert [tap.read(), tap.read(), tap.read()] == [b"abc", b"", b"def"]
    tap.write(b"cmd")
    assert inner.written == [b"cmd"]
    rec.close()
    packets = read_recording(tmp_path / "t.pcapng").packets
    assert [(p.data, p.outbound) for p in packets] == [(b"abc", False), (b"def", False), (b"cmd", True)]


def test_rotation_by_size_every_file_replays_on_its_own(tmp_path: Path) -> None:
    clock = SteppedClock()
    rec = Recorder(tmp_path / "node.pcapng", clock, {"config": {"k": 1}}, rotate_bytes=2000, keep_files=3)
    iface = rec.add_channel(Channel("gps", "nmea"))
    for _ in range(100):
        rec.write(iface, b"x" * 100)
        clock.sleep(0.1)
    rec.close()
    files = sorted(tmp_path.glob("node-*.pcapng"))
    assert len(files) == 3 and files == sorted(rec.files)  # the oldest ones were deleted
    last = int(files[-1].stem.rsplit("-", 1)[1])
    assert last >= 5 and files[0] == rotated_path(tmp_path / "node.pcapng", last - 2)
    assert not (tmp_path / "node.pcapng").exists()
    for f in files:
        assert f.stat().st_size <= 2000
        got = read_recording(f)
        assert got.header == {"config": {"k": 1}} and got.channel(0) == Channel("gps", "nmea")
        assert got.packets
    assert rec.packets == 100


def test_bits_pack_round_trip() -> None:
    bits = tuple(bool(i % 3 == 0) for i in range(25))
    assert unpack_bits(pack_bits(bits)) == bits
    assert unpack_bits(pack_bits(())) == ()


def _fpv_config() -> Any:
    return build_config({"node": NODE, "sensors": [{"kind": "fpv-rx5808", "id": "fpv-1"}]}, "test")


def test_fpv_scanner_recorded_on_its_bus_replays_to_the_same_detections(tmp_path: Path) -> None:
    """The FPV scanner has no byte stream: its SPI transactions are recorded and replay answers the
    same driver's ADC reads from them, so it detects the same transmitter with the same RSSI."""
    config = _fpv_config()
    clock = SteppedClock(epoch=1_700_000_000.0)
    vtx = FpvTransmitter("vtx", 5658, eirp_dbm=20.0, position=(30.0, 200.0, 30.0), t_on=1.0)
    sensor = config.sensors[0]
    from cuas_node.driver_factory import fpv_receivers

    bench = SimFpvBench(RfEnvironment([vtx], seed=3), clock, fpv_receivers(sensor))
    live = build_driver(sensor, clock, {"fpv-1": (bench.pins, bench.adc)})
    rec = Recorder(tmp_path / "fpv.pcapng", clock, recording_header(config))
    tap_driver(live, rec)
    live.open()
    measured: list[RfPresence] = []
    while clock.t < 6.0:
        measured += [m for m in live.read() if isinstance(m, RfPresence)]
    rec.close()
    assert measured, "the simulated transmitter must be detected live"

    recording = read_recording(tmp_path / "fpv.pcapng")
    kinds = {p.data[0] for p in recording.packets}
    assert kinds == {FPV_SPI, FPV_PINS}
    assert len(bench.modules[0].frames) == sum(p.data[0] == FPV_PINS for p in recording.packets)

    lines: list[str] = []

    class Out:
        def write(self, s: str) -> None:
            lines.append(s)

        def flush(self) -> None:
            pass

    replay_cfg = replay_config(recording, None, tmp_path, "test")
    stats = Replay(recording, replay_cfg, Out()).run()  # type: ignore[arg-type]
    assert stats.fpv_mismatches == 0
    replayed = [json.loads(line) for line in "".join(lines).splitlines()]
    rf = [r for r in replayed if r.get("kind") == "RfPresence"]
    assert [(r["band"], r["channel"], r["rssi_dbm"], r["snr_db"]) for r in rf] == [
        (m.band, m.channel, m.rssi_dbm, m.snr_db) for m in measured
    ]
    for r, m in zip(rf, measured, strict=True):
        assert r["t_capture"] == pytest.approx(m.t_capture, abs=2e-6)


def test_replay_config_restores_calibration_files_and_drops_the_radar_cli(tmp_path: Path) -> None:
    static_map = tmp_path / "map.json"
    static_map.write_text('{"cells": []}')
    reflectors = tmp_path / "reflectors.json"
    reflectors.write_text('{"format": "cuas-node radar-reflectors 1", "dim": 4, "reflectors": []}')
    config = build_config(
        {
            "node": NODE,
            "sensors": [
                {
                    "kind": "ti-mmwave",
                    "id": "radar-1",
                    "port": "/dev/ttyACM1",
                    "config_port": "/dev/ttyACM0",
                    "static_map_file": str(static_map),
                    "reflectors_file": str(reflectors),
                }
            ],
            "record": {"enabled": True, "path": str(tmp_path / "x.pcapng")},
        },
        "test",
    )
    rec = Recorder(tmp_path / "r.pcapng", SteppedClock(), recording_header(config))
    rec.close()
    static_map.unlink()  # replay must not need the original files
    reflectors.unlink()
    work = tmp_path / "work"
    work.mkdir()
    again = replay_config(read_recording(tmp_path / "r.pcapng"), {"node": {"id": "other"}}, work, "test")
    sensor = again.sensors[0]
    assert isinstance(sensor, TiMmwaveSensor)
    assert sensor.config_port is None
    assert sensor.static_map_file is not None and sensor.static_map_file.read_text() == '{"cells": []}'
    assert sensor.reflectors_file is not None and '"reflectors": []' in sensor.reflectors_file.read_text()
    assert again.node.id == "other" and not again.record.enabled


def test_cli_record_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cuas-node record` on a serial GPS (a pty), then `cuas-node replay` prints its fixes."""
    from cuas_node.drivers.sim.pty import PtyPort

    port = PtyPort()
    config_file = tmp_path / "node.toml"
    config_file.write_text(
        f'[node]\nid = "rec-node"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nport = {free_port()}\n[logging]\nlevel = "WARNING"\n'
        f'[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "{port.path}"\n'
    )
    stop = threading.Event()

    def feed() -> None:
        t = 1_700_000_000.0
        while not stop.is_set():
            port.write(encode_gga(t, 52.0, 4.0, 10.0) + encode_rmc(t, 52.0, 4.0))
            t += 1.0
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out = tmp_path / "gps.pcapng"
    try:
        assert main(["record", str(out), "--config", str(config_file), "--duration", "1.5"]) == 0
    finally:
        stop.set()
        feeder.join()
        port.close()
    recording = read_recording(out)
    assert recording.header is not None and recording.header["config"]["node"]["id"] == "rec-node"
    assert recording.packets and recording.channel(0) == Channel("gps", "nmea", "data", port.path)
    capsys.readouterr()
    assert main(["replay", str(out)]) == 0
    first = capsys.readouterr().out
    fixes = [json.loads(line) for line in first.splitlines()]
    assert fixes and all(f["kind"] == "GpsFix" for f in fixes)
    assert fixes[0]["lat"] == pytest.approx(52.0)
    assert main(["replay", str(out), "--speed", "max"]) == 0
    assert capsys.readouterr().out == first


def test_cli_replay_rejects_a_bad_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option value is a usage error (README: exit 2), with the usage line."""
    for bad in ("fast", "0", "-1", "inf"):
        with pytest.raises(SystemExit) as stopped:
            main(["replay", str(GOLDEN_DIR / "gps-mt3339.pcapng"), "--speed", bad])
        assert stopped.value.code == 2
        assert "argument --speed" in capsys.readouterr().err


def test_replay_clock_only_moves_when_set() -> None:
    clock = ReplayClock(100.0)
    clock.sleep(5.0)
    assert (clock.now(), clock.monotonic()) == (100.0, 0.0)
    clock.set(102.5)
    assert (clock.now(), clock.monotonic()) == (102.5, 2.5)


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) not installed")
def test_wireshark_tools_read_and_cut_a_recording(tmp_path: Path) -> None:
    """capinfos sees one interface per sensor port; a cut made by editcap still replays, because
    the config travels in the section header's comment, which editcap keeps."""
    src = GOLDEN_DIR / "sim-demo.pcapng"
    info = subprocess.run(["capinfos", str(src)], capture_output=True, text=True, check=True).stdout
    assert "radar-1/data" in info and "gps/data" in info and "cuas-node-recording/1" in info
    cut = tmp_path / "cut.pcapng"
    subprocess.run(["editcap", "-r", str(src), str(cut), "100-200"], check=True, capture_output=True)
    recording = read_recording(cut)
    assert len(recording.packets) == 101 and recording.header is not None
    lines = replay_to_string(cut).splitlines()
    assert any('"RadarDetection"' in line for line in lines)
