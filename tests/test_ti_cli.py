"""The radar's configuration CLI: the sans-IO conversation, the shipped profiles, the configurator
against the simulated board on a real pty, and the driver's reconfiguration after a reset."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from importlib import resources

import numpy as np
import pytest

from cuas_node.drivers.radar.static_map import StaticClutterMap
from cuas_node.drivers.radar.ti_cli import (
    CfgLine,
    CliConversation,
    CliEchoMismatch,
    CliNoAnswer,
    CliRejected,
    Outcome,
    Reply,
    TiCliConfigurator,
    load_profile,
    parse_cfg,
    summarise_profile,
)
from cuas_node.drivers.radar.ti_driver import ResetWatch, TiCliSetup, TiMmwaveDriver
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.sim.pty import PtyPort
from cuas_node.drivers.sim.ti_board import KNOWN_COMMANDS, SimTiBoard
from cuas_node.drivers.transport import SerialTransport
from cuas_node.kernel.clock import SystemClock
from cuas_node.kernel.measurement import RadarDetection

MODELS = ("iwr6843", "xwr1642")
TRANSCRIPT = (
    b"mmwDemo:/>sensorStop\nIgnored: Sensor is already stopped\n\nDone\n\n"
    b"mmwDemo:/>flushCfg\nDone\n\n"
    b"mmwDemo:/>sensorStart\nDebug: Init Calibration Status = 0x1ffe\n\nDone\n\nmmwDemo:/>"
)


def test_parse_cfg_drops_comments_and_blank_lines_and_keeps_line_numbers() -> None:
    text = "% header\n\nsensorStop\r\nprofileCfg 0  77 7 % trailing\n   \n%x\nsensorStart\n"
    assert parse_cfg(text) == [
        CfgLine(3, "sensorStop"),
        CfgLine(4, "profileCfg 0 77 7"),
        CfgLine(7, "sensorStart"),
    ]


def converse(commands: list[str], wire: bytes, chunk: int = 1) -> list[Reply]:
    """Send every command, feeding `wire` in `chunk`-byte pieces; return the replies in order."""
    talk = CliConversation([CfgLine(i + 1, c) for i, c in enumerate(commands)])
    pos, replies = 0, list[Reply]()
    while not talk.finished:
        talk.send()
        reply = talk.feed(b"")  # what is already buffered after the previous reply
        while reply is None and pos < len(wire):
            reply = talk.feed(wire[pos : pos + chunk])
            pos += chunk
        assert reply is not None, f"no reply to {talk.pending}"
        replies.append(reply)
    return replies


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_real_transcript_is_three_successes_with_their_info_lines(chunk: int) -> None:
    replies = converse(["sensorStop", "flushCfg", "sensorStart"], TRANSCRIPT, chunk)
    assert [r.outcome for r in replies] == [Outcome.DONE] * 3
    assert replies[0].lines == ("Ignored: Sensor is already stopped", "Done")
    assert replies[2].lines[0].startswith("Debug: Init Calibration")


@pytest.mark.parametrize(
    ("wire", "outcome", "last"),
    [
        (b"frameCfg 0 1 32 0 50 1 0\r\nError -1\r\nmmwDemo:/>", Outcome.ERROR, "Error -1"),
        (
            b"mmwDemo:/>frameCfg 0 1 32 0 50 1 0\n'frameCfg' is not recognized as a CLI command\n",
            Outcome.ERROR,
            "'frameCfg' is not recognized as a CLI command",
        ),
        (b"frameCfg 0 1 32 0 50 1 1\r\nDone\r\n", Outcome.ECHO_MISMATCH, "frameCfg 0 1 32 0 50 1 1"),
        (b"\r\n****\r\nxWR16xx MMW Demo 03.04\r\n", Outcome.ECHO_MISMATCH, "****"),
        (b"Done\n", Outcome.ECHO_MISMATCH, "Done"),
    ],
)
def test_error_unknown_command_and_wrong_echo_are_told_apart(
    wire: bytes, outcome: Outcome, last: str
) -> None:
    (reply,) = converse(["frameCfg 0 1 32 0 50 1 0"], wire)
    assert reply.outcome is outcome
    assert reply.last == last


def test_next_line_waits_for_the_prompt() -> None:
    talk = CliConversation([CfgLine(1, "a"), CfgLine(2, "b")])
    talk.send()
    assert talk.feed(b"a\nDone\n") is not None
    assert not talk.ready
    talk.feed(b"\nmmwDemo:/>")
    assert talk.ready


# --- the shipped profiles -------------------------------------------------------------------------

IF_LIMIT_HZ = {"iwr6843": 10e6, "xwr1642": 5e6}
BAND_GHZ = {"iwr6843": (60.0, 64.0), "xwr1642": (77.0, 81.0)}


@pytest.mark.parametrize("model", MODELS)
def test_shipped_profile_is_a_drone_profile_the_demo_accepts(model: str) -> None:
    text, source = load_profile(None, model)
    assert model in source
    commands = parse_cfg(text)
    names = [c.name for c in commands]
    assert names[:2] == ["sensorStop", "flushCfg"] and names[-1] == "sensorStart"
    for c in commands:
        assert c.name in KNOWN_COMMANDS, c
        expected = KNOWN_COMMANDS[c.name]
        assert expected is None or len(c.args) == expected, c
    assert "guiMonitor -1 1 0 0 0 0 1" in [c.text for c in commands]  # points + side info + stats only
    s = summarise_profile(commands)
    assert s.max_range_m >= 95 and s.range_resolution_m <= 0.5
    assert s.frame_period_s == pytest.approx(0.05)
    assert s.max_velocity_mps >= 7.0
    assert s.loops * s.tx_per_loop * s.chirp_period_us * 1e-6 < 0.2 * s.frame_period_s
    assert s.radar_cube_bytes <= 512 * 1024
    profile = next(c for c in commands if c.name == "profileCfg").args
    slope_hz_per_s = float(profile[7]) * 1e12
    assert 2 * slope_hz_per_s * 100.0 / 299_792_458.0 <= IF_LIMIT_HZ[model]  # beat at 100 m inside the IF
    lo, hi = BAND_GHZ[model]
    assert lo <= s.start_ghz and s.start_ghz + float(profile[7]) * float(profile[4]) / 1e3 <= hi
    doppler_fov = next(c for c in commands if c.name == "cfarFovCfg" and c.args[1] == "1").args
    assert float(doppler_fov[3]) <= s.max_velocity_mps


# --- the configurator against the simulated board on a pty --------------------------------------


@pytest.fixture
def board() -> Iterator[SimTiBoard]:
    cli = PtyPort()
    sim = SimTiBoard(cli)
    sim.start()
    yield sim
    sim.stop()
    cli.close()


def configurator(board: SimTiBoard, timeout_s: float = 1.0) -> tuple[TiCliConfigurator, SerialTransport]:
    transport = SerialTransport(board.cli.path, 115200, timeout_s=0.02)
    transport.open()
    return TiCliConfigurator(transport, board.cli.path, reply_timeout_s=timeout_s), transport


@pytest.mark.parametrize("model", MODELS)
def test_profile_is_sent_line_by_line_and_the_board_streams(board: SimTiBoard, model: str) -> None:
    text, source = load_profile(None, model)
    config, transport = configurator(board)
    try:
        replies = config.send_profile(text, source)
        assert [r.command.text for r in replies] == [c.text for c in parse_cfg(text)]
        assert board.commands == [c.text for c in parse_cfg(text)]
        assert board.streaming
        assert config.stop_sensor().outcome is Outcome.DONE
        assert not board.streaming
        assert config.stop_sensor().lines[0] == "Ignored: Sensor is already stopped"
    finally:
        transport.close()


def test_error_reply_names_the_line_the_command_and_the_port(board: SimTiBoard) -> None:
    text, source = load_profile(None, "xwr1642")
    frame_line = next(c for c in parse_cfg(text) if c.name == "frameCfg")
    board.error_on.add("frameCfg")
    config, transport = configurator(board)
    with pytest.raises(CliRejected) as err:
        config.send_profile(text, source)
    transport.close()
    message = str(err.value)
    assert f"line {frame_line.number} `{frame_line.text}`" in message
    assert board.cli.path in message and "Error -1" in message and source in message
    assert err.value.line == frame_line
    assert not board.streaming  # it never got to sensorStart


def test_unknown_command_is_rejected_clearly(board: SimTiBoard) -> None:
    config, transport = configurator(board)
    with pytest.raises(CliRejected, match=r"line 2 `frobnicate 1`.*not recognized"):
        config.send_profile("sensorStop\nfrobnicate 1\nsensorStart\n", "test.cfg")
    transport.close()


def test_silence_fails_after_the_timeout_naming_line_and_port(board: SimTiBoard) -> None:
    board.silent = True
    config, transport = configurator(board, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(CliNoAnswer) as err:
        config.send_profile("% first a comment\nsensorStop\nflushCfg\n", "quiet.cfg")
    transport.close()
    assert time.monotonic() - started < 1.0
    assert "quiet.cfg line 2 `sensorStop`" in str(err.value) and board.cli.path in str(err.value)
    assert "heard nothing" in str(err.value)


def test_wrong_echo_is_an_error(board: SimTiBoard) -> None:
    board.garble_echo = True
    config, transport = configurator(board)
    with pytest.raises(CliEchoMismatch, match="sensorStpo"):
        config.send_profile("sensorStop\n", "x.cfg")
    transport.close()


# --- the driver: configure on open, sensorStop on close, reconfigure after a reset ----------------


class Rig:
    """A simulated board with a data pty: frames with one mover at 20 m, only while streaming."""

    def __init__(self) -> None:
        self.cli, self.data = PtyPort(), PtyPort()
        self.number = 0
        self.board = SimTiBoard(self.cli, on_start=self.restart)
        self.pause = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._emit, daemon=True)

    def restart(self, max_velocity_mps: float | None = None) -> None:
        self.number = 1

    def _emit(self) -> None:
        point = np.array([[0.0, 20.0, 1.0, 5.0]], dtype=np.float32)
        while not self._stop.wait(0.02):
            if self.board.streaming and not self.pause:
                self.data.write(encode_frame(self.number, point, snr_db=[20.0]))
                self.number += 1

    def driver(self, watch: ResetWatch) -> TiMmwaveDriver:
        text, source = load_profile(None, "iwr6843")
        cli = TiCliSetup(
            SerialTransport(self.cli.path, 115200, timeout_s=0.02), self.cli.path, text, source, 1.0
        )
        data = SerialTransport(self.data.path, 921600, timeout_s=0.02)
        return TiMmwaveDriver("radar", data, SystemClock(), cli=cli, reset_watch=watch)

    def __enter__(self) -> Rig:
        self.board.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.board.stop()
        self.cli.close()
        self.data.close()


def run_until(driver: TiMmwaveDriver, condition: object, timeout_s: float = 3.0) -> list[RadarDetection]:
    out: list[RadarDetection] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out.extend(m for m in driver.read() if isinstance(m, RadarDetection))
        if callable(condition) and condition(out):
            return out
    raise AssertionError(f"timed out; {len(out)} detections, {driver.reconfigurations} reconfigurations")


WATCH = ResetWatch(stall_frames=5, min_stall_s=0.3, cli_poll_s=0.05)


def test_driver_configures_on_open_and_stops_the_sensor_on_close() -> None:
    with Rig() as rig:
        driver = rig.driver(WATCH)
        driver.open()
        assert rig.board.streaming
        detections = run_until(driver, lambda d: len(d) >= 5)
        assert detections[0].range_m == pytest.approx(20.0, abs=0.1)
        driver.close()
        assert not rig.board.streaming and rig.board.commands[-1] == "sensorStop"


@pytest.mark.parametrize(
    ("how", "reason"),
    [("reset", "boot banner"), ("stall", "no data frame for"), ("restart", "frame number restarted")],
)
def test_driver_reconfigures_a_board_that_reset(how: str, reason: str) -> None:
    with Rig() as rig:
        driver = rig.driver(WATCH)
        driver.open()
        run_until(driver, lambda d: len(d) >= 3)
        sent = len(rig.board.commands)
        if how == "reset":
            rig.board.reset()  # banner + prompt, data stops
        elif how == "stall":
            rig.pause = True  # data stops without a word on the CLI
            threading.Timer(0.5, lambda: setattr(rig, "pause", False)).start()
        else:
            time.sleep(0.5)  # past the settling window after configuration
            rig.number = 1  # the frame counter starts again
        run_until(driver, lambda d: driver.reconfigurations >= 1)
        assert driver.reconfigurations == 1
        assert reason in driver.last_reset_reason
        assert rig.board.commands[sent:][-1] == "sensorStart"
        assert driver.health().counters["reconfigurations"] == 1
        run_until(driver, lambda d: len(d) >= 3)  # and the data flows again
        driver.close()


def test_open_fails_with_the_cli_error_and_closes_both_ports() -> None:
    with Rig() as rig:
        rig.board.silent = True
        driver = rig.driver(WATCH)
        driver.cli = TiCliSetup(driver.cli.transport, rig.cli.path, "sensorStop\n", "x.cfg", 0.2)  # type: ignore[union-attr]
        with pytest.raises(OSError, match="no `Done`"):
            driver.open()
        assert not driver.transport.is_open and not driver.cli.transport.is_open


def test_from_port_configures_the_board_with_the_model_profile_and_a_static_map() -> None:
    with Rig() as rig:
        driver = TiMmwaveDriver.from_port(
            "radar",
            rig.data.path,
            SystemClock(),
            config_port=rig.cli.path,
            model="xwr1642",
            static_map=StaticClutterMap(learn_frames=5),
            reset_watch=WATCH,
        )
        driver.open()
        try:
            assert rig.board.commands == [c.text for c in parse_cfg(load_profile(None, "xwr1642")[0])]
            run_until(driver, lambda d: len(d) >= 3)  # a mover is never learned as static
        finally:
            driver.close()
        assert not rig.board.streaming


def test_profiles_ship_as_package_data() -> None:
    folder = resources.files("cuas_node.drivers.radar") / "ti_profiles"
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".cfg")) == [
        "iwr6843_drone.cfg",
        "xwr1642_drone.cfg",
    ]
