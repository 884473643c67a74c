"""RX5808 / MCP3008 FPV scanner: the datasheet frame, the band plan, the ADC protocol, detection
with hysteresis, the RSSI-ratio bearing, and the driver end to end on the register-level simulator.

Nothing here imports Blinka's `board`: the hardware classes are exercised with stand-in modules.
"""

from __future__ import annotations

import math
import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest

from cuas_node.drivers.fpv.hardware import (
    BlinkaMcp3008Spi,
    BlinkaPins,
    HardwareUnavailable,
    mcp3008_command,
    mcp3008_result,
)
from cuas_node.drivers.fpv.rx5808 import (
    BANDS,
    SYNTH_B,
    channel_table,
    clock_out,
    decode_frame,
    frame_bits,
    frame_word,
    synth_b_register,
    tuned_frequency_mhz,
    tuning_bits,
)
from cuas_node.drivers.fpv.scanner import (
    AntennaPattern,
    Receiver,
    RssiCurve,
    Rx5808Driver,
    ScanSettings,
    SweepDetector,
    rssi_ratio_bearing,
)
from cuas_node.drivers.sim.fpv import (
    FpvTransmitter,
    RfEnvironment,
    SimFpvBench,
    SimMcp3008,
    SimRx5808,
    SteppedClock,
)
from cuas_node.kernel.measurement import AnyMeasurement, RfPresence, SensorState

# -- the frame -----------------------------------------------------------------------------------


def _formula_register(freq_mhz: int) -> int:
    """protocols.md 2.2.3, written out independently of the driver."""
    tf = (freq_mhz - 479) // 2
    return ((tf // 32) << 7) | (tf % 32)


@pytest.mark.parametrize(
    ("freq", "register"),
    [(5865, 0x2A05), (5800, 0x2984), (5658, 0x281D), (5917, 0x2A1F), (5705, 0x2895), (5945, 0x2A8D)],
)
def test_synth_b_register_matches_datasheet_values(freq: int, register: int) -> None:
    assert synth_b_register(freq) == register == _formula_register(freq)


@pytest.mark.parametrize("freq", [5865, 5800])
def test_tuning_frame_bits_equal_datasheet_formula(freq: int) -> None:
    bits = tuning_bits(freq)
    assert len(bits) == 25
    # bits 0..3 address (LSB first), bit 4 = write, bits 5..24 the 20-bit register, LSB first
    assert bits[:4] == (True, False, False, False)
    assert bits[4] is True
    data = sum(1 << i for i, b in enumerate(bits[5:]) if b)
    assert data == _formula_register(freq)


def test_full_word_for_5800_and_the_2mhz_step() -> None:
    assert frame_word(SYNTH_B, synth_b_register(5800)) == 0x53091
    assert tuned_frequency_mhz(0x2984) == 5799  # 5800 rounds down to the 2 MHz grid
    assert tuned_frequency_mhz(synth_b_register(5865)) == 5865
    for ch in channel_table():
        assert abs(ch.tuned_mhz - ch.freq_mhz) <= 1


def test_frame_encoding_rejects_what_the_chip_cannot_take() -> None:
    with pytest.raises(ValueError):
        synth_b_register(2400)
    with pytest.raises(ValueError):
        frame_word(16, 0)
    with pytest.raises(ValueError):
        frame_word(1, 1 << 20)
    with pytest.raises(ValueError):
        decode_frame(frame_bits(0x53091)[:24])


def test_bits_on_the_wire_decode_to_the_register_in_the_simulated_module() -> None:
    clock = SteppedClock()
    module = SimRx5808(lambda f, t: -90.0, clock)
    clock_out(module, tuning_bits(5800))
    frame = module.frames[-1]
    assert frame.bits == frame_bits(0x53091)
    assert frame.decoded is not None
    assert (frame.decoded.address, frame.decoded.write, frame.decoded.data) == (1, True, 0x2984)
    assert module.tuned_mhz == 5799
    # A short frame (a glitch on SELECT) is recorded but does not retune the module.
    module.set_select(False)
    module.set_clock(True)
    module.set_clock(False)
    module.set_select(True)
    assert module.frames[-1].decoded is None and module.tuned_mhz == 5799


def test_band_table() -> None:
    table = channel_table()
    assert len(table) == 48 and set(BANDS) == set("ABEFRL")
    labels = {c.label: c.freq_mhz for c in table}
    assert labels["F8"] == labels["R7"] == 5880
    assert labels["E5"] == 5885 and labels["E4"] == 5645  # E's irregular order
    assert [c.label for c in channel_table("r")][:2] == ["R1", "R2"]
    with pytest.raises(ValueError):
        channel_table("X")


# -- the ADC -------------------------------------------------------------------------------------


def test_mcp3008_command_and_reply() -> None:
    assert mcp3008_command(0) == bytes([0x01, 0x80, 0x00])
    assert mcp3008_command(5) == bytes([0x01, 0xD0, 0x00])
    assert mcp3008_command(2, single_ended=False) == bytes([0x01, 0x20, 0x00])
    with pytest.raises(ValueError):
        mcp3008_command(8)
    # undriven bits above the null bit are ignored; a 1 in the null bit means nobody answered
    sample = mcp3008_result(bytes([0xFF, 0xFB, 0x2A]))
    assert sample.raw == 0x32A and sample.null_bit_ok
    assert not mcp3008_result(b"\xff\xff\xff").null_bit_ok


def test_simulated_mcp3008_answers_at_bit_level() -> None:
    clock = SteppedClock()
    adc = SimMcp3008({3: lambda: 1.0, 4: lambda: 2.0, 5: lambda: 0.5}, clock, noise_lsb=0.0)
    sample = mcp3008_result(adc.transfer(mcp3008_command(3)))
    assert sample.null_bit_ok and sample.raw == round(1.0 / 3.3 * 1024)
    assert mcp3008_result(adc.transfer(mcp3008_command(0))).raw == 0  # unconnected input
    # differential CH4+ / CH5-
    assert mcp3008_result(adc.transfer(mcp3008_command(4, single_ended=False))).raw == round(1.5 / 3.3 * 1024)
    # A master that keeps clocking gets B1..B9 again LSB first (datasheet figure 6-1).
    reply = adc.transfer(bytes([0x01, 0xB0, 0x00, 0x00, 0x00]))
    bits = [(reply[i // 8] >> (7 - i % 8)) & 1 for i in range(40)]
    value = sum(b << (9 - k) for k, b in enumerate(bits[14:24]))
    assert value == round(1.0 / 3.3 * 1024)
    assert bits[24:33] == [(value >> k) & 1 for k in range(1, 10)]
    assert len(adc.transactions) == 4 and adc.transactions[0].out == mcp3008_command(3)


# -- detection -----------------------------------------------------------------------------------


def _detector(n: int = 10, **kw: Any) -> SweepDetector:
    return SweepDetector(np.arange(n, dtype=np.float64) * 40.0 + 5600.0, ScanSettings(**kw))


def test_hysteresis_enter_after_n_sweeps_leave_below_exit() -> None:
    det = _detector(confirm_sweeps=2, enter_db=10.0, exit_db=6.0)
    quiet = np.full((1, 10), -90.0)
    det.update(quiet)
    on = quiet.copy()
    on[0, 4] = -75.0
    assert det.update(on).reported == []  # first sweep above: not yet confirmed
    assert det.update(on).reported == [4]
    weaker = quiet.copy()
    weaker[0, 4] = -82.0  # 8 dB: below enter but above exit, stays detected
    assert det.update(weaker).reported == [4]
    weaker[0, 4] = -85.5  # 4.5 dB: below exit, released
    assert det.update(weaker).reported == []
    # a one-sweep spike never confirms
    assert det.update(on).reported == []
    assert det.update(quiet).reported == []
    assert det.update(on).reported == []


def test_floor_does_not_learn_a_present_transmitter_but_follows_drift() -> None:
    det = _detector(confirm_sweeps=1)
    rng = np.random.default_rng(0)
    for k in range(300):
        rssi = -90.0 + 0.005 * k + rng.normal(0, 0.5, (1, 10))  # slow +1.5 dB drift
        rssi[0, 2] = -72.0  # a transmitter there all along, from power-up
        result = det.update(rssi)
        assert result.reported == [2]
    assert det.floor is not None
    assert det.floor[0, 2] < -88.0
    empty = np.delete(det.floor[0], 2)
    assert np.all(np.abs(empty - (-88.5 - 0.6)) < 1.5)  # tracks the drift, sits under the noise


def test_strongest_channel_wins_within_merge_window() -> None:
    det = SweepDetector(np.array([5740.0, 5760.0, 5780.0, 5800.0, 5843.0]), ScanSettings(confirm_sweeps=1))
    det.update(np.full((1, 5), -90.0))
    result = det.update(np.array([[-90.0, -78.0, -72.0, -79.0, -70.0]]))
    assert result.reported == [2, 4]  # 5760/5800 are 5780's skirts; 5843 is a second transmitter


# -- bearing -------------------------------------------------------------------------------------

_PAIR = [
    AntennaPattern(math.radians(-30), math.radians(60), gain_dbi=8.0),
    AntennaPattern(math.radians(30), math.radians(60), gain_dbi=8.0),
]


@pytest.mark.parametrize("true_deg", [-42.0, -20.0, 0.0, 7.0, 33.0, 40.0])
def test_rssi_ratio_bearing_recovers_the_direction(true_deg: float) -> None:
    phi = math.radians(true_deg)
    rssi = [-60.0 + float(a.gain_db(phi)) for a in _PAIR]
    result = rssi_ratio_bearing(rssi, _PAIR)
    assert result is not None
    bearing, sigma = result
    assert math.degrees(bearing) == pytest.approx(true_deg, abs=0.3)
    assert 0 < sigma < math.radians(10)


def test_rssi_ratio_bearing_with_three_antennas_and_noise() -> None:
    ants = [AntennaPattern(math.radians(b), math.radians(70)) for b in (-60, 0, 60, 180)]
    rng = np.random.default_rng(3)
    phi = math.radians(-25)
    errors = []
    for _ in range(50):
        rssi = [-70.0 + float(a.gain_db(phi)) + rng.normal(0, 1.0) for a in ants]
        result = rssi_ratio_bearing(rssi, ants, sigma_rssi_db=1.0)
        assert result is not None
        errors.append(result[0] - phi)
        sigma = result[1]
    rms = math.sqrt(float(np.mean(np.square(errors))))
    assert rms < 2.5 * sigma and rms < math.radians(5)


def test_no_bearing_without_two_directional_antennas() -> None:
    assert rssi_ratio_bearing([-60.0, -62.0], [AntennaPattern(), AntennaPattern()]) is None
    assert rssi_ratio_bearing([-60.0], [_PAIR[0]]) is None
    with pytest.raises(ValueError):
        rssi_ratio_bearing([-60.0], _PAIR)


# -- the driver on the simulator -----------------------------------------------------------------


def _bench(
    txs: list[FpvTransmitter],
    receivers: tuple[Receiver, ...] = (Receiver(),),
    **settings: Any,
) -> tuple[Rx5808Driver, SimFpvBench, SteppedClock]:
    clock = SteppedClock()
    bench = SimFpvBench(RfEnvironment(txs, seed=7), clock, receivers)
    driver = Rx5808Driver(
        "fpv-1", bench.pins, bench.adc, clock, receivers=receivers, settings=ScanSettings(**settings)
    )
    driver.open()
    return driver, bench, clock


@pytest.mark.parametrize("label", ["F4", "R1", "E6", "A8", "L3"])
def test_simulated_rx5808_sees_the_transmitter_within_one_sweep(label: str) -> None:
    ch = next(c for c in channel_table() if c.label == label)
    vtx = FpvTransmitter("vtx", ch.freq_mhz, eirp_dbm=14.0, position=(40.0, 150.0, 40.0))
    driver, bench, clock = _bench([vtx], confirm_sweeps=1)
    found = driver.sweep()
    assert clock.t == pytest.approx(driver.sweep_duration_s)
    assert len(found) == 1
    m = found[0]
    assert isinstance(m, RfPresence)
    assert (m.band, m.channel, m.freq_mhz) == (ch.band, ch.number, float(ch.freq_mhz))
    expected = bench.env.transmitter_dbm(vtx, ch.tuned_mhz, 0.0, AntennaPattern())
    assert m.rssi_dbm == pytest.approx(expected, abs=2.0)
    assert m.snr_db > 10.0 and m.bearing_rad is None
    assert driver.health().state == SensorState.OK


def test_default_settings_confirm_on_the_second_sweep_and_release_when_it_stops() -> None:
    vtx = FpvTransmitter("vtx", 5645, eirp_dbm=23.0, position=(0.0, 500.0, 50.0), t_off=4.0)
    driver, _, clock = _bench([vtx])
    assert driver.sweep() == []
    second = driver.sweep()
    assert [(m.band, m.channel) for m in second] == [("E", 4)]
    while clock.t < 4.0:
        driver.sweep()
    driver.sweep()
    assert driver.sweep() == []
    assert driver.health().counters["active_channels"] == 0


def test_without_settling_the_reading_belongs_to_the_previous_channel() -> None:
    """The simulated module only follows a new register after 25 ms: a driver that does not wait
    reports the channel after the transmitter. Guards the settle logic and keeps the test honest."""
    vtx = FpvTransmitter("vtx", 5658, eirp_dbm=14.0, position=(0.0, 200.0, 30.0))
    driver, _, _ = _bench([vtx], confirm_sweeps=1, settle_s=0.0, bands="R")
    driver.sweep()
    found = driver.sweep()
    assert [(m.band, m.channel) for m in found] == [("R", 2)]


def test_read_blocks_at_most_the_budget_and_records_the_bus() -> None:
    vtx = FpvTransmitter("vtx", 5740, position=(0.0, 150.0, 20.0))
    driver, bench, clock = _bench([vtx], confirm_sweeps=1, exclude=frozenset({"F8"}))
    out: list[AnyMeasurement] = []
    reads = 0
    while not out:
        before = clock.t
        out = driver.read()
        reads += 1
        assert clock.t - before <= 0.1 + 1e-9
    n = len(driver.slots)
    labels = {s.channel.label for s in driver.slots}
    assert "F8" not in labels and "R7" in labels and n == 45  # R7 now sweeps 5880 on its own
    assert reads == math.ceil(n / 3)
    assert all(isinstance(m, RfPresence) for m in out)
    assert [(m.band, m.channel) for m in out if isinstance(m, RfPresence)] == [("F", 1)]
    # Alive as of the sweep's last channel, detection or not (a quiet band is not a fault).
    health = driver.health()
    assert health.measurements == 1 and health.last_seen is not None and health.last_seen >= out[0].t_capture
    frames = bench.modules[0].frames
    assert len(frames) == n and all(f.decoded is not None and f.decoded.address == SYNTH_B for f in frames)
    assert len(bench.adc.transactions) == n * 3  # one discarded + two averaged reads per channel


@pytest.mark.parametrize("true_deg", [-25.0, 20.0, 35.0])
def test_two_directional_receivers_give_a_bearing(true_deg: float) -> None:
    """Also guards the floor subtraction: without it the weaker antenna's noise pulls bearings
    near the edge of the pair's sector 3-5° towards the middle."""
    az = math.radians(true_deg)
    vtx = FpvTransmitter("vtx", 5645, eirp_dbm=14.0, position=(250 * math.sin(az), 250 * math.cos(az), 30.0))
    receivers = (Receiver(0, _PAIR[0]), Receiver(1, _PAIR[1]))
    driver, _, _ = _bench([vtx], receivers, confirm_sweeps=1)
    found = driver.sweep()
    assert [(m.band, m.channel) for m in found] == [("E", 4)]
    m = found[0]
    assert m.bearing_rad is not None and m.sigma_bearing_rad is not None
    assert abs(m.bearing_rad - az) < math.radians(2.0)
    assert math.radians(0.5) < m.sigma_bearing_rad < math.radians(10)


def test_health_reports_a_dead_adc_and_an_unpowered_module() -> None:
    clock = SteppedClock()

    class FloatingMiso:
        def open(self) -> None: ...
        def close(self) -> None: ...
        def transfer(self, out: bytes) -> bytes:
            return b"\xff" * len(out)

    module = SimRx5808(lambda f, t: -90.0, clock)
    driver = Rx5808Driver("fpv", module, FloatingMiso(), clock, settings=ScanSettings(bands="A"))
    with pytest.raises(OSError):
        driver.read()
    driver.open()
    driver.sweep()
    assert driver.health().state == SensorState.DEGRADED and "MCP3008" in driver.health().detail

    unpowered = SimMcp3008({}, clock)
    driver = Rx5808Driver("fpv", module, unpowered, clock, settings=ScanSettings(bands="A"))
    driver.open()
    driver.sweep()
    assert driver.health().state == SensorState.DEGRADED and "0 V" in driver.health().detail
    driver.close()
    assert driver.health().state == SensorState.DOWN


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        ScanSettings(enter_db=5.0, exit_db=6.0)
    with pytest.raises(ValueError):
        RssiCurve(v_low=1.0, v_high=0.5)
    curve = RssiCurve()
    assert curve.to_dbm(curve.to_volts(-63.0)) == pytest.approx(-63.0)


# -- the real-hardware classes, with stand-ins for Blinka ------------------------------------------


def test_importing_the_fpv_package_does_not_import_blinka() -> None:
    code = (
        "import sys, cuas_node.drivers.fpv.scanner, cuas_node.drivers.fpv.hardware;"
        "import cuas_node.drivers.sim.fpv;"
        "from cuas_node.drivers.fpv.scanner import Rx5808Driver;"
        "from cuas_node.kernel.clock import SystemClock;"
        "Rx5808Driver.from_pi('x', SystemClock(), data_pin='D17', clock_pin='D27', select_pin='D22');"
        "print(sorted({'board','digitalio','busio','adafruit_bus_device'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _FakeIO:
    def __init__(self, pin: str, busy: bool = False) -> None:
        if busy:
            raise RuntimeError("GPIO busy")
        self.pin = pin
        self.value: bool | None = None
        self.deinited = False

    def switch_to_output(self, value: bool = False) -> None:
        self.value = value

    def deinit(self) -> None:
        self.deinited = True


def _fake_blinka(monkeypatch: pytest.MonkeyPatch, busy: set[str] | None = None) -> list[_FakeIO]:
    created: list[_FakeIO] = []
    board = types.ModuleType("board")
    for name in ("D5", "D17", "D22", "D27", "SCK", "MOSI", "MISO"):
        setattr(board, name, name)

    def digital(pin: str) -> _FakeIO:
        io = _FakeIO(pin, busy=pin in (busy or set()))
        created.append(io)
        return io

    digitalio = types.ModuleType("digitalio")
    digitalio.DigitalInOut = digital  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "board", board)
    monkeypatch.setitem(sys.modules, "digitalio", digitalio)
    return created


def test_blinka_pins_with_stand_in_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    created = _fake_blinka(monkeypatch)
    pins = BlinkaPins("D17", "D27", "D22")
    pins.open()
    levels = {io.pin: io.value for io in created}
    assert levels == {"D17": False, "D27": False, "D22": True}  # idle: SELECT high
    module = SimRx5808(lambda f, t: -90.0, SteppedClock())
    clock_out(module, tuning_bits(5865))  # the same sequence must leave the real lines idle too
    clock_out(pins, tuning_bits(5865))
    assert {io.pin: io.value for io in created} == {"D17": False, "D27": False, "D22": True}
    pins.close()
    assert all(io.deinited for io in created)
    with pytest.raises(HardwareUnavailable):
        pins.set_data(True)
    with pytest.raises(HardwareUnavailable, match="D99"):
        BlinkaPins("D99", "D27", "D22").open()
    created.clear()
    _fake_blinka(monkeypatch, busy={"D22"})
    with pytest.raises(OSError, match="busy"):
        BlinkaPins("D17", "D27", "D22").open()


def test_blinka_mcp3008_with_stand_in_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    created = _fake_blinka(monkeypatch)
    calls: list[tuple[str, Any]] = []

    class FakeSpi:
        def __init__(self, sck: str, MOSI: str, MISO: str) -> None:
            calls.append(("spi", (sck, MOSI, MISO)))

        def write_readinto(self, out: bytes, into: bytearray) -> None:
            into[:] = bytes([0xFF, 0xF9, 0x10])

        def deinit(self) -> None:
            calls.append(("deinit", None))

    class FakeDevice:
        def __init__(self, spi: FakeSpi, cs: Any, **kw: Any) -> None:
            calls.append(("device", (cs.pin if cs else None, kw)))
            self.spi = spi

        def __enter__(self) -> FakeSpi:
            return self.spi

        def __exit__(self, *exc: object) -> None:
            pass

    busio = types.ModuleType("busio")
    busio.SPI = FakeSpi  # type: ignore[attr-defined]
    bus_device = types.ModuleType("adafruit_bus_device")
    spi_device = types.ModuleType("adafruit_bus_device.spi_device")
    spi_device.SPIDevice = FakeDevice  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "busio", busio)
    monkeypatch.setitem(sys.modules, "adafruit_bus_device", bus_device)
    monkeypatch.setitem(sys.modules, "adafruit_bus_device.spi_device", spi_device)

    adc = BlinkaMcp3008Spi("spi0", cs_pin="D5")
    adc.open()
    assert calls[0] == ("spi", ("SCK", "MOSI", "MISO"))
    assert calls[1] == ("device", ("D5", {"baudrate": 1_000_000, "polarity": 0, "phase": 0}))
    assert mcp3008_result(adc.transfer(mcp3008_command(0))).raw == 0x110
    adc.close()
    assert created[0].deinited and ("deinit", None) in calls
    with pytest.raises(ValueError):
        BlinkaMcp3008Spi("spi7")


def test_channels_the_module_cannot_tell_apart_are_reported_as_aliases() -> None:
    # B3 (5771) and R4 (5769) are one 2 MHz synthesizer step apart; F8 and R7 are both 5880.
    vtx_b3 = FpvTransmitter("a", 5771, position=(0.0, 120.0, 20.0))
    vtx_f8 = FpvTransmitter("b", 5880, position=(0.0, 120.0, 20.0))
    driver, _, _ = _bench([vtx_b3, vtx_f8], confirm_sweeps=1)
    found = {(m.band, m.channel): m.aliases for m in driver.sweep()}
    assert len(found) == 2
    assert found.get(("F", 8)) == ("R7",)
    near = next(k for k in found if k != ("F", 8))
    assert near in {("B", 3), ("R", 4)}
    assert found[near] == (("R4",) if near == ("B", 3) else ("B3",))
