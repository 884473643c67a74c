"""The small bus interface between the FPV scanner and its hardware, and the real Pi implementations.

The scanner only ever toggles three lines and makes full-duplex SPI transfers, so that is all the
interface has: the simulator implements the same two protocols at register level and the driver
code cannot tell the difference. The Blinka implementations import `board`, `digitalio`, `busio`
and `adafruit_bus_device` only in `open()`: those imports fail (or touch GPIO) on anything but a
Pi, and the package must stay importable in tests and on a developer laptop.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

ADC_BITS = 10
ADC_FULL_SCALE = 1 << ADC_BITS
MCP3008_BAUDRATE = 1_000_000
"""The MCP3008 is rated for 1.35 MHz at 2.7 V and 3.6 MHz at 5 V; 1 MHz is safe at the Pi's 3.3 V."""


class HardwareUnavailable(OSError):
    """GPIO or SPI could not be set up (not a Pi, pin taken, SPI disabled, wrong pin name).

    An `OSError` on purpose: the runtime's driver loop treats it like a vanished serial port,
    logs it once and retries with back-off instead of losing the sensor thread.
    """


class Pins(Protocol):
    """The RX5808's three serial control lines, driven as plain GPIO outputs."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def set_data(self, level: bool) -> None: ...

    def set_clock(self, level: bool) -> None: ...

    def set_select(self, level: bool) -> None: ...


class AdcSpi(Protocol):
    """One SPI device with its chip select: each call is one transaction (CS low for its length)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def transfer(self, out: bytes) -> bytes:
        """Clock `out` out on MOSI and return the bytes read on MISO at the same time."""
        ...


@dataclass(frozen=True, slots=True)
class AdcSample:
    raw: int
    null_bit_ok: bool
    """The MCP3008 drives a 0 before the result; a 1 there means nothing answered (MISO floats high)."""


def mcp3008_command(channel: int, *, single_ended: bool = True) -> bytes:
    """Three bytes that read one conversion, byte-aligned so the 10-bit result ends the transfer:
    start bit at the end of byte 0, SGL/DIFF and D2..D0 at the top of byte 1."""
    if not 0 <= channel <= 7:
        raise ValueError(f"MCP3008 channel {channel} is not in 0..7")
    return bytes([0x01, ((0x08 if single_ended else 0x00) | channel) << 4, 0x00])


def mcp3008_result(reply: bytes) -> AdcSample:
    """The 10-bit conversion from a 3-byte reply; the bits above the null bit are undriven."""
    if len(reply) != 3:
        raise ValueError(f"MCP3008 reply must be 3 bytes, got {len(reply)}")
    return AdcSample(raw=((reply[1] & 0x03) << 8) | reply[2], null_bit_ok=not reply[1] & 0x04)


def read_mcp3008(adc: AdcSpi, channel: int) -> AdcSample:
    return mcp3008_result(adc.transfer(mcp3008_command(channel)))


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # Blinka raises NotImplementedError/RuntimeError off a Pi
        raise HardwareUnavailable(f"cannot import {name}: {exc}") from exc


def _board_pin(board: ModuleType, name: str) -> Any:
    try:
        return getattr(board, name)
    except AttributeError:
        raise HardwareUnavailable(f"board has no pin named {name!r} (use Blinka names like 'D17')") from None


class BlinkaPins:
    """The RX5808 lines on three GPIOs through Blinka `digitalio` (pin names as in `board`: "D17")."""

    def __init__(self, data: str, clock: str, select: str) -> None:
        self.names = {"data": data, "clock": clock, "select": select}
        self._outputs: dict[str, Any] = {}

    def open(self) -> None:
        if self._outputs:
            return
        board = _import("board")
        digitalio = _import("digitalio")
        try:
            for role, name in self.names.items():
                pin = digitalio.DigitalInOut(_board_pin(board, name))
                # Idle levels: SELECT high (no frame), CLOCK and DATA low.
                pin.switch_to_output(value=role == "select")
                self._outputs[role] = pin
        except HardwareUnavailable:
            self.close()
            raise
        except Exception as exc:  # e.g. "GPIO busy" from libgpiod
            self.close()
            raise HardwareUnavailable(f"cannot claim RX5808 GPIO {self.names}: {exc}") from exc

    def close(self) -> None:
        for pin in self._outputs.values():
            pin.deinit()
        self._outputs.clear()

    def _set(self, role: str, level: bool) -> None:
        try:
            self._outputs[role].value = level
        except KeyError:
            raise HardwareUnavailable("RX5808 pins are not open") from None

    def set_data(self, level: bool) -> None:
        self._set("data", level)

    def set_clock(self, level: bool) -> None:
        self._set("clock", level)

    def set_select(self, level: bool) -> None:
        self._set("select", level)


_SPI_BUS_PINS = {"spi0": ("SCK", "MOSI", "MISO"), "spi1": ("SCK_1", "MOSI_1", "MISO_1")}


class BlinkaMcp3008Spi:
    """An MCP3008 on `busio.SPI`, SPI mode 0, through `adafruit_bus_device.spi_device.SPIDevice`.

    `cs_pin=None` means CS is wired to the bus's CE0: Blinka opens /dev/spidevN.0 and the kernel
    drives CE0 for every transfer. A name such as "D5" uses that GPIO as chip select instead (as
    in Adafruit's MCP3008 guide), which frees CE0/CE1 for other devices.
    """

    def __init__(
        self, bus: str = "spi0", cs_pin: str | None = None, baudrate: int = MCP3008_BAUDRATE
    ) -> None:
        if bus not in _SPI_BUS_PINS:
            raise ValueError(f"unknown SPI bus {bus!r} (known: {', '.join(_SPI_BUS_PINS)})")
        self.bus = bus
        self.cs_pin = cs_pin
        self.baudrate = baudrate
        self._spi: Any = None
        self._cs: Any = None
        self._device: Any = None

    def open(self) -> None:
        if self._device is not None:
            return
        board = _import("board")
        busio = _import("busio")
        spi_device = _import("adafruit_bus_device.spi_device")
        sck, mosi, miso = (_board_pin(board, name) for name in _SPI_BUS_PINS[self.bus])
        try:
            self._spi = busio.SPI(sck, MOSI=mosi, MISO=miso)
            if self.cs_pin is not None:
                digitalio = _import("digitalio")
                self._cs = digitalio.DigitalInOut(_board_pin(board, self.cs_pin))
            self._device = spi_device.SPIDevice(
                self._spi, self._cs, baudrate=self.baudrate, polarity=0, phase=0
            )
        except HardwareUnavailable:
            self.close()
            raise
        except Exception as exc:  # no /dev/spidev (SPI not enabled), pin busy, ...
            self.close()
            raise HardwareUnavailable(f"cannot open MCP3008 on {self.bus}: {exc}") from exc

    def close(self) -> None:
        for part in (self._cs, self._spi):
            if part is not None:
                part.deinit()
        self._spi = self._cs = self._device = None

    def transfer(self, out: bytes) -> bytes:
        if self._device is None:
            raise HardwareUnavailable("MCP3008 SPI is not open")
        reply = bytearray(len(out))
        with self._device as spi:
            spi.write_readinto(out, reply)
        return bytes(reply)
