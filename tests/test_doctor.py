"""`cuas-node doctor` against fake machines: pty serial ports fed by the NMEA encoder, a real
mosquitto, fake /proc/cmdline and fake chrony/timedatectl/vcgencmd output. Nothing touches the
real system's configuration."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cuas_node import system_health
from cuas_node.doctor import Doctor, Probe, run_doctor
from cuas_node.drivers.nmea.encode import encode_gga
from cuas_node.drivers.sim.pty import PtyPort

CHRONY_SYNCED = """Reference ID    : C0A80001 (ntp.example)
Stratum         : 3
System time     : 0.000012345 seconds slow of NTP time
Leap status     : Normal
"""
CHRONY_UNSYNCED = """Reference ID    : 00000000 ()
Stratum         : 0
System time     : 0.000000000 seconds fast of NTP time
Leap status     : Not synchronised
"""


def fake_runner(outputs: dict[str, str | None]) -> Any:
    def run(argv: Sequence[str]) -> str | None:
        return outputs.get(argv[0])

    return run


def probe(tmp_path: Path, cmdline: str = "console=tty1 root=/dev/mmcblk0p2", **outputs: str | None) -> Probe:
    (tmp_path / "cmdline").write_text(cmdline)
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)
    runner_outputs: dict[str, str | None] = {"chronyc": CHRONY_SYNCED}
    runner_outputs.update(outputs)
    return Probe(run=fake_runner(runner_outputs), cmdline=tmp_path / "cmdline", dev=dev)


def write_config(tmp_path: Path, sensors: str = "", mqtt: str = 'host = "127.0.0.1"\nport = 1') -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[node]\nid = "doc-1"\nstate_dir = "{tmp_path / "state"}"\n'
        f"position = {{ lat = 52.0, lon = 4.3, alt_m = 10.0 }}\n[mqtt]\n{mqtt}\n{sensors}"
    )
    return path


def by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


@pytest.fixture
def gps_pty() -> Iterator[PtyPort]:
    port = PtyPort()
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            port.write(encode_gga(time.time(), 52.0, 4.3, 10.0, quality=1, num_sats=9, hdop=0.8))
            stop.wait(0.05)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(1.0)
    port.close()


def test_invalid_config_fails_with_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[node]\nid = "x"\n[mqtt]\nport = "eighty"\n')
    out = io.StringIO()
    assert run_doctor(path, timeout_s=0.2, probe=probe(tmp_path), out=out) == 1
    text = out.getvalue()
    assert text.startswith("FAIL  config")
    assert "mqtt.port" in text and "fix: edit" in text


def test_gps_on_a_working_port_passes_and_broker_down_fails(tmp_path: Path, gps_pty: PtyPort) -> None:
    sensors = f'[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "{gps_pty.path}"\n'
    checks = by_name(Doctor(write_config(tmp_path, sensors), 3.0, probe(tmp_path)).run())
    assert checks["config"].status == "PASS"
    assert checks["gps port"].status == "PASS"
    assert checks["gps frames"].status == "PASS", checks["gps frames"].message
    assert checks["GPS fix"].status == "PASS"
    assert "9 satellites" in checks["GPS fix"].message
    assert checks["time sync"].status == "PASS" and "chrony" in checks["time sync"].message
    assert checks["broker"].status == "FAIL" and "refused" in checks["broker"].message
    assert checks["broker"].fix


def test_silent_port_fails_quickly(tmp_path: Path) -> None:
    port = PtyPort()
    try:
        sensors = f'[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "{port.path}"\n'
        started = time.monotonic()
        checks = by_name(Doctor(write_config(tmp_path, sensors), 0.3, probe(tmp_path)).run())
        assert time.monotonic() - started < 5.0
    finally:
        port.close()
    assert checks["gps frames"].status == "FAIL"
    assert "no data" in checks["gps frames"].message
    assert checks["GPS fix"].status == "FAIL"


def test_missing_port_and_unreadable_port(tmp_path: Path) -> None:
    locked = tmp_path / "ttyLOCKED"
    locked.write_text("")
    sensors = (
        '[[sensors]]\nkind = "ti-mmwave"\nid = "radar"\nport = "/dev/cuas-radar-data-nonexistent"\n'
        f'[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "{locked}"\n'
    )
    p = probe(tmp_path)
    p.access = lambda path, mode: path != locked.resolve()
    p.groups = lambda: set()
    checks = by_name(Doctor(write_config(tmp_path, sensors), 0.2, p).run())
    assert checks["radar port"].status == "FAIL"
    assert "does not exist" in checks["radar port"].message
    assert "udev" in checks["radar port"].fix
    assert checks["gps port"].status == "FAIL"
    assert "not a member" in checks["gps port"].message
    assert "usermod -aG" in checks["gps port"].fix
    assert "radar frames" not in checks  # no frame check on a port that is not there


def test_serial_console_conflict_is_explained(tmp_path: Path, gps_pty: PtyPort) -> None:
    name = Path(gps_pty.path).name
    p = probe(tmp_path, cmdline=f"console={name},115200 console=tty1")
    sensors = f'[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "{gps_pty.path}"\n'
    checks = by_name(Doctor(write_config(tmp_path, sensors), 0.2, p).run())
    assert checks["gps port"].status == "FAIL"
    assert "kernel console" in checks["gps port"].message
    assert "do_serial_cons 1" in checks["gps port"].fix


def test_broker_reachable_passes(tmp_path: Path, mosquitto: Any) -> None:
    config = write_config(tmp_path, mqtt=f'host = "{mosquitto.host}"\nport = {mosquitto.port}')
    checks = by_name(Doctor(config, 3.0, probe(tmp_path)).run())
    assert checks["broker"].status == "PASS", checks["broker"].message


def test_time_sync_states(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    checks = by_name(Doctor(config, 0.2, probe(tmp_path, chronyc=CHRONY_UNSYNCED)).run())
    assert checks["time sync"].status == "FAIL"
    checks = by_name(
        Doctor(config, 0.2, probe(tmp_path, chronyc=None, timedatectl="NTPSynchronized=yes\n")).run()
    )
    assert checks["time sync"].status == "PASS" and "timedatectl" in checks["time sync"].message
    checks = by_name(Doctor(config, 0.2, probe(tmp_path, chronyc=None)).run())
    assert checks["time sync"].status == "WARN"


def test_spi_required_by_fpv_sensor(tmp_path: Path) -> None:
    sensors = '[[sensors]]\nkind = "fpv-rx5808"\nid = "fpv"\n'
    p = probe(tmp_path)
    checks = by_name(Doctor(write_config(tmp_path, sensors), 0.2, p).run())
    assert checks["SPI spi0"].status == "FAIL" and "do_spi 0" in checks["SPI spi0"].fix
    (p.dev / "spidev0.0").write_text("")
    checks = by_name(Doctor(write_config(tmp_path, sensors), 0.2, p).run())
    assert checks["SPI spi0"].status == "PASS"


def test_cli_doctor_exit_code(tmp_path: Path) -> None:
    from cuas_node.cli import main

    assert main(["doctor", "--config", str(tmp_path / "missing.toml"), "--timeout", "0.1"]) == 1


# -- system_health parsers -----------------------------------------------------------------------


def test_parse_throttled() -> None:
    assert system_health.parse_throttled("throttled=0x50005\n") == {
        "now": ["under_voltage", "throttled"],
        "since_boot": ["under_voltage", "throttled"],
    }
    assert system_health.parse_throttled("throttled=0x0") == {"now": [], "since_boot": []}
    assert system_health.parse_throttled("garbage") is None


def test_parse_clock_sync() -> None:
    synced = system_health.parse_chrony(CHRONY_SYNCED)
    assert synced == {"synced": True, "source": "chrony", "offset_s": -0.000012345, "stratum": 3}
    unsynced = system_health.parse_chrony(CHRONY_UNSYNCED)
    assert unsynced is not None and unsynced["synced"] is False
    assert system_health.parse_timedatectl("Timezone=UTC\nNTPSynchronized=no\n") == {
        "synced": False,
        "source": "timedatectl",
    }


def test_collect_with_fake_machine(tmp_path: Path, schemas: dict[str, dict[str, Any]]) -> None:
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48312\n")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "a.jsonl").write_bytes(b"x" * 100)
    run = fake_runner({"vcgencmd": "throttled=0x20000\n", "chronyc": CHRONY_SYNCED})
    data = system_health.collect(tmp_path, spool, run=run, thermal=tmp_path / "thermal")
    assert data["cpu_temp_c"] == 48.3
    assert data["throttled"] == {"now": [], "since_boot": ["arm_freq_capped"]}
    assert data["clock"]["synced"] is True
    assert data["spool_bytes"] == 100 and data["spool_files"] == 1
    assert data["disk_free_bytes"] > 0 and len(data["load"]) == 3
    import jsonschema

    jsonschema.validate(
        data, schemas["health"]["properties"]["system"] | {"$defs": schemas["health"]["$defs"]}
    )
    # Nothing known → nothing reported (never null or 0).
    bare = system_health.collect(tmp_path / "nowhere", None, run=fake_runner({}), thermal=tmp_path / "none")
    assert "cpu_temp_c" not in bare and "clock" not in bare and "throttled" not in bare


def test_disk_check_reports_free_space(tmp_path: Path) -> None:
    checks = by_name(Doctor(write_config(tmp_path), 0.2, probe(tmp_path)).run())
    assert checks["disk"].status in ("PASS", "WARN", "FAIL")
    assert "GB free" in checks["disk"].message
    assert os.fspath(tmp_path) in checks["disk"].message
