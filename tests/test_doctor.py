"""`cuas-node doctor` against fake machines: pty serial ports fed by the NMEA encoder, a real
mosquitto, fake /proc/cmdline and fake chrony/timedatectl/vcgencmd output. Nothing touches the
real system's configuration."""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cuas_node import system_health
from cuas_node.doctor import Doctor, Probe, run_doctor
from cuas_node.drivers.nmea.encode import encode_gga
from cuas_node.drivers.sim.pty import PtyPort
from cuas_node.drivers.sim.remoteid import SimRemoteIdBroadcaster

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
    return Probe(
        run=fake_runner(runner_outputs),
        cmdline=tmp_path / "cmdline",
        dev=dev,
        cgroup_controllers=tmp_path / "cgroup.controllers",
    )


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


class Feeder:
    """A pty written every `period_s` with what `chunk(t)` returns (a sensor on a serial port)."""

    def __init__(self, chunk: Callable[[float], bytes], period_s: float = 0.05) -> None:
        self.port = PtyPort()
        self._chunk = chunk
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self._chunk(time.time())
            if data:
                self.port.write(data, max_wait_s=0.05)
            self._stop.wait(self._period_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.port.close()


def remote_id_lines() -> Callable[[float], bytes]:
    """The simulator's ESP32 receiver hearing one drone: ODID lines, at the configured rate."""
    drone = SimRemoteIdBroadcaster("DOCTOR-UAS-1", 52.0, 4.3, operator_id="OP-1", location_period_s=0.2)
    return lambda t: drone.step(t, 52.001, 4.301, 60.0, (3.0, 0.0, 0.0))


def at_wrong_baud(chunk: Callable[[float], bytes], seed: int = 8) -> Callable[[float], bytes]:
    """The same receiver read at the wrong baud rate: each byte sampled at the wrong speed comes out
    as a run of high bits, only the line breaks survive now and then (noise lines, no frame)."""
    rng = random.Random(seed)
    samples = bytes([0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE, 0xFF, 0x00, 0x9F])

    def garbled(t: float) -> bytes:
        lines = chunk(t).split(b"\n")
        return b"\n".join(bytes(rng.choice(samples) for _ in range(len(line) // 4)) for line in lines)

    return garbled


def remoteid_config(tmp_path: Path, port: str) -> Path:
    return write_config(tmp_path, f'[[sensors]]\nkind = "remoteid"\nid = "rid"\nport = "{port}"\n')


def test_invalid_config_fails_with_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[node]\nid = "x"\n[mqtt]\nport = "eighty"\n')
    out = io.StringIO()
    assert run_doctor(path, timeout_s=0.2, probe=probe(tmp_path), out=out) == 1
    text = out.getvalue()
    assert text.startswith("FAIL  config")
    assert "mqtt.port" in text and "fix: edit" in text
    absent = tmp_path / "none.toml"  # a file to create, not to edit
    out = io.StringIO()
    assert run_doctor(absent, timeout_s=0.2, probe=probe(tmp_path), out=out) == 1
    assert f"fix: create {absent} (the README's minimal config is a start)" in out.getvalue()


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
    assert checks["GPS fix"].message == "gps: no NMEA data (see the gps port line above)"


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


# -- start-up checks, credentials and secret files ------------------------------------------------

KEY = "0123456789abcdef-doctor-key"


def secret(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_startup_fails_where_run_would_refuse_to_start(tmp_path: Path) -> None:
    """The same checks and words as `run` and `config check` (cuas_node.preflight)."""
    key = secret(tmp_path / "short.key", "short", 0o640)
    commands = f'\n[mqtt.commands]\nenabled = true\nhmac_key_file = "{key}"'
    config = write_config(tmp_path, mqtt=f'host = "127.0.0.1"\nport = 1{commands}')
    checks = by_name(Doctor(config, 0.2, probe(tmp_path)).run())
    startup = checks["start-up"]
    assert startup.status == "FAIL"
    assert f"mqtt.commands.hmac_key_file (env CUAS_MQTT__COMMANDS__HMAC_KEY_FILE): {key}: " in startup.message
    assert "at least 16 bytes" in startup.message and "config check" in startup.fix

    key.write_text(KEY)
    checks = by_name(Doctor(config, 0.2, probe(tmp_path)).run())
    assert checks["start-up"].status == "PASS"


def test_password_over_plaintext_to_another_machine_fails(tmp_path: Path) -> None:
    password = secret(tmp_path / "mqtt-password", "pw", 0o640)
    auth = f'username = "doc-1"\npassword_file = "{password}"'
    # 192.0.2.1: TEST-NET-1, never routed, so the broker line fails fast on its own.
    remote = write_config(tmp_path, mqtt=f'host = "192.0.2.1"\nport = 1883\n{auth}')
    line = by_name(Doctor(remote, 0.2, probe(tmp_path)).run())["credentials"]
    assert line.status == "FAIL"
    assert "unencrypted" in line.message and "192.0.2.1:1883" in line.message
    assert "mqtt.tls = true" in line.fix and "localhost" in line.fix

    over_tls = write_config(tmp_path, mqtt=f'host = "192.0.2.1"\nport = 8883\ntls = true\n{auth}')
    assert by_name(Doctor(over_tls, 0.2, probe(tmp_path)).run())["credentials"].status == "PASS"
    local = write_config(tmp_path, mqtt=f'host = "127.0.0.1"\nport = 1\n{auth}')
    line = by_name(Doctor(local, 0.2, probe(tmp_path)).run())["credentials"]
    assert line.status == "PASS" and "stays on this machine" in line.message
    anonymous = write_config(tmp_path, mqtt='host = "192.0.2.1"\nport = 1883')
    assert "credentials" not in by_name(Doctor(anonymous, 0.2, probe(tmp_path)).run())


@pytest.mark.parametrize(
    ("mode", "status"), [(0o644, "WARN"), (0o604, "WARN"), (0o600, "PASS"), (0o640, "PASS")]
)
def test_secret_file_modes(tmp_path: Path, mode: int, status: str) -> None:
    password = secret(tmp_path / "mqtt-password", "pw", mode)
    key = secret(tmp_path / "command-hmac.key", KEY, mode)
    config = write_config(
        tmp_path,
        mqtt=f'host = "127.0.0.1"\nport = 1\nusername = "doc-1"\npassword_file = "{password}"\n'
        f'[mqtt.commands]\nenabled = true\nhmac_key_file = "{key}"',
    )
    checks = by_name(Doctor(config, 0.2, probe(tmp_path)).run())
    for name, path in (("mqtt.password_file", password), ("mqtt.commands.hmac_key_file", key)):
        line = checks[name]
        assert line.status == status, line.message
        assert f"{path} is " in line.message and f"{mode:04o}" in line.message
        if status == "WARN":
            assert "every user can read it" in line.message
            assert (
                line.fix == f"make it root:cuas 0640: sudo chown root:cuas {path} && sudo chmod 0640 {path}"
            )
    assert KEY not in str(checks)


def test_secret_file_of_a_foreign_owner_warns(tmp_path: Path) -> None:
    """Root and the service user may own a secret (the probe says who the service is); anyone else
    could rewrite the key the node trusts."""
    from cuas_node.preflight import Identity

    key = secret(tmp_path / "command-hmac.key", KEY, 0o600)
    config = write_config(
        tmp_path,
        mqtt=f'host = "127.0.0.1"\nport = 1\n[mqtt.commands]\nenabled = true\nhmac_key_file = "{key}"',
    )
    p = probe(tmp_path)
    if os.geteuid() == 0:
        os.chown(key, 4321, -1)  # a stranger's file (the default identity: root, this user, cuas)
    else:
        p.identity = lambda: Identity(frozenset({0}), frozenset({0}))  # this user is not the service
    line = by_name(Doctor(config, 0.2, p).run())["mqtt.commands.hmac_key_file"]
    assert line.status == "WARN" and "not root or the service user" in line.message
    assert "owned by root" not in line.message


def test_memory_limit_needs_the_memory_cgroup(tmp_path: Path) -> None:
    """Raspberry Pi kernels ship with the memory cgroup off: the unit's MemoryMax= would be a lie."""
    config = write_config(tmp_path)
    p = probe(tmp_path)
    assert "memory limit" not in by_name(Doctor(config, 0.2, p).run())  # cgroup v1 / unknown: silent
    p.cgroup_controllers.write_text("cpuset cpu io pids\n")
    line = by_name(Doctor(config, 0.2, p).run())["memory limit"]
    assert line.status == "WARN" and "cgroup_enable=memory" in line.fix
    p.cgroup_controllers.write_text("cpuset cpu io memory pids\n")
    assert by_name(Doctor(config, 0.2, p).run())["memory limit"].status == "PASS"


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


# -- Remote ID receivers: the node's definition of a valid record, and BaudWatch's verdict ----------


def test_remote_id_receiver_at_the_wrong_baud_rate_fails_with_the_hint(tmp_path: Path) -> None:
    """Noise splits into lines too: lines are no proof of a working link, only decoded frames are."""
    feeder = Feeder(at_wrong_baud(remote_id_lines()))
    try:
        checks = by_name(Doctor(remoteid_config(tmp_path, feeder.port.path), 1.0, probe(tmp_path)).run())
    finally:
        feeder.close()
    frames = checks["rid frames"]
    assert frames.status == "FAIL", frames.message
    assert f"bytes arrive on {feeder.port.path} but no valid frame" in frames.message
    assert "noise_lines=" in frames.message
    # The driver's own BaudWatch verdict, reached within doctor's timeout.
    assert "receiving bytes but no valid frames: check the baud rate (configured 115200)" in frames.message
    assert "wrong baud rate (115200 configured)" in frames.fix


def test_remote_id_receiver_at_the_right_rate_passes_early(tmp_path: Path) -> None:
    feeder = Feeder(remote_id_lines())
    try:
        started = time.monotonic()
        checks = by_name(Doctor(remoteid_config(tmp_path, feeder.port.path), 5.0, probe(tmp_path)).run())
        elapsed = time.monotonic() - started
    finally:
        feeder.close()
    frames = checks["rid frames"]
    assert frames.status == "PASS", frames.message
    assert "valid record(s)" in frames.message and "0 measurement(s)" not in frames.message
    assert elapsed < 4.0  # stopped as soon as the receiver had proven itself, not at the timeout


def test_a_driver_bug_fails_the_frame_check_with_its_text(
    tmp_path: Path, gps_pty: PtyPort, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A parser that raises is supervised as in the node: counted, reported, never a hung check."""
    import cuas_node.driver_factory
    from cuas_node.drivers.nmea.driver import NmeaDriver

    real = cuas_node.driver_factory.build_driver

    def build_driver(sensor: Any, clock: Any, hardware: Any = None) -> Any:
        driver = real(sensor, clock)
        assert isinstance(driver, NmeaDriver)

        def broken(*args: Any) -> list[Any]:
            raise KeyError("talker GP")

        monkeypatch.setattr(driver, "to_measurements", broken)
        return driver

    monkeypatch.setattr(cuas_node.driver_factory, "build_driver", build_driver)
    sensors = f'[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "{gps_pty.path}"\n'
    checks = by_name(Doctor(write_config(tmp_path, sensors), 1.0, probe(tmp_path)).run())
    frames = checks["gps frames"]
    assert frames.status == "FAIL"
    assert "internal error in read: KeyError: 'talker GP'" in frames.message
    assert "bug" in frames.fix
    logged = [r for r in caplog.records if "sensor gps unavailable" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # once, with the traceback


def test_radar_streaming_an_unsupported_firmware_fails_with_its_version_not_the_baud_rate(
    tmp_path: Path,
) -> None:
    """Well-formed frames of SDK 1.2 over a pty: FAIL with the driver's own message (the version found
    and what to flash), not the wrong-baud verdict that bytes without valid frames would give."""
    from cuas_node.drivers.radar.ti_encode import encode_frame
    from cuas_node.drivers.radar.ti_frames_sdk2 import unsupported_version_message

    numbers = iter(range(1_000_000))
    feeder = Feeder(lambda t: encode_frame(next(numbers), [[0.0, 5.0, 0.0, 1.0]], version=0x01020005))
    try:
        sensors = f'[[sensors]]\nkind = "ti-mmwave"\nid = "radar"\nport = "{feeder.port.path}"\n'
        checks = by_name(Doctor(write_config(tmp_path, sensors), 1.0, probe(tmp_path)).run())
    finally:
        feeder.close()
    frames = checks["radar frames"]
    assert frames.status == "FAIL", frames.message
    assert frames.message == f"{feeder.port.path}: {unsupported_version_message(0x01020005)}"
    assert "baud" not in frames.message and "reflash" in frames.fix
