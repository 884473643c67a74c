"""RX5808 (RTC6715) register-level protocol: the band/channel table, the synthesizer formula and the
25-bit serial frame, without any I/O.

Kept sans-IO like the byte parsers so the same functions encode frames for the real GPIO lines,
decode them in the simulator, and are tested against the datasheet's worked values
(docs/protocols.md section 2.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

IF_MHZ = 479
"""Intermediate frequency: the local oscillator runs 479 MHz below the received carrier."""

SYNTH_A = 0x00
SYNTH_B = 0x01
"""The frequency register (N and A counters of the synthesizer)."""
POWER_DOWN = 0x0A

FRAME_BITS = 25
ADDRESS_BITS = 4
DATA_BITS = 20

MIN_FREQ_MHZ = 5000.0
MAX_FREQ_MHZ = 6100.0
"""Outside this range the module cannot lock; refusing early beats tuning to a wrapped register."""

BANDS: dict[str, tuple[int, ...]] = {
    "A": (5865, 5845, 5825, 5805, 5785, 5765, 5745, 5725),
    "B": (5733, 5752, 5771, 5790, 5809, 5828, 5847, 5866),
    "E": (5705, 5685, 5665, 5645, 5885, 5905, 5925, 5945),
    "F": (5740, 5760, 5780, 5800, 5820, 5840, 5860, 5880),
    "R": (5658, 5695, 5732, 5769, 5806, 5843, 5880, 5917),
    "L": (5362, 5399, 5436, 5473, 5510, 5547, 5584, 5621),
}
"""The standard analog FPV channel plan, channel 1..8 per band (note E's irregular order and that
F8 and R7 are both 5880 MHz)."""


@dataclass(frozen=True, slots=True)
class Channel:
    band: str
    number: int
    freq_mhz: int

    @property
    def label(self) -> str:
        """The name pilots use ("F4", "R1"), also the key for excluding channels in config."""
        return f"{self.band}{self.number}"

    @property
    def tuned_mhz(self) -> int:
        """What the module actually tunes to (2 MHz synthesizer steps round odd frequencies down)."""
        return tuned_frequency_mhz(synth_b_register(self.freq_mhz))


def channel_table(bands: Iterable[str] = "ABEFRL") -> list[Channel]:
    """The channels of `bands`, in sweep order (band by band, channel 1..8)."""
    out: list[Channel] = []
    for band in bands:
        key = band.upper()
        if key not in BANDS:
            raise ValueError(f"unknown FPV band {band!r} (known: {', '.join(BANDS)})")
        out.extend(Channel(key, i + 1, f) for i, f in enumerate(BANDS[key]))
    return out


def synth_b_register(freq_mhz: float) -> int:
    """Synthesizer B value for a carrier: F_LO = 2·(32·N + A) MHz with F_osc/R = 1 MHz, and
    F_RF = F_LO + IF. N sits in bits 7..18, A (0..31) in bits 0..6."""
    if not MIN_FREQ_MHZ <= freq_mhz <= MAX_FREQ_MHZ:
        raise ValueError(f"{freq_mhz} MHz is outside the RX5808 range {MIN_FREQ_MHZ}-{MAX_FREQ_MHZ} MHz")
    tf = int(freq_mhz - IF_MHZ) // 2
    n, a = divmod(tf, 32)
    return (n << 7) | a


def tuned_frequency_mhz(register: int) -> int:
    """The inverse of `synth_b_register`: the carrier the module receives for a Synth B value."""
    n = (register >> 7) & 0xFFF
    a = register & 0x7F
    return 2 * (n * 32 + a) + IF_MHZ


def frame_word(address: int, data: int, *, write: bool = True) -> int:
    """The 25-bit frame as an integer: address in bits 0..3, R/W in bit 4, data in bits 5..24."""
    if not 0 <= address < 1 << ADDRESS_BITS:
        raise ValueError(f"register address {address} does not fit in 4 bits")
    if not 0 <= data < 1 << DATA_BITS:
        raise ValueError(f"register data {data:#x} does not fit in 20 bits")
    return address | (int(write) << ADDRESS_BITS) | (data << (ADDRESS_BITS + 1))


def frame_bits(word: int) -> tuple[bool, ...]:
    """The frame in wire order: least significant bit first, 25 clocks."""
    return tuple(bool((word >> i) & 1) for i in range(FRAME_BITS))


def tuning_bits(freq_mhz: float) -> tuple[bool, ...]:
    """The bits that tune the module to `freq_mhz` (a write of Synth B)."""
    return frame_bits(frame_word(SYNTH_B, synth_b_register(freq_mhz)))


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    address: int
    write: bool
    data: int


def decode_frame(bits: Sequence[bool]) -> DecodedFrame:
    """Bits in wire order back to address, R/W and data (the simulator's side of the wire)."""
    if len(bits) != FRAME_BITS:
        raise ValueError(f"an RX5808 frame has {FRAME_BITS} bits, got {len(bits)}")
    word = sum(1 << i for i, bit in enumerate(bits) if bit)
    return DecodedFrame(
        address=word & 0xF, write=bool((word >> ADDRESS_BITS) & 1), data=word >> (ADDRESS_BITS + 1)
    )


class SerialLines(Protocol):
    """The module's three control lines (CH1 = DATA, CH3 = CLOCK, CH2 = LE/SELECT)."""

    def set_data(self, level: bool) -> None: ...

    def set_clock(self, level: bool) -> None: ...

    def set_select(self, level: bool) -> None: ...


def clock_out(lines: SerialLines, bits: Sequence[bool]) -> None:
    """Shift one frame out exactly as rx5808-pro does: SELECT low for the frame; per bit CLK low,
    DATA = bit, CLK high (the chip samples on the rising edge), CLK low; then SELECT high, CLK
    low, DATA low.

    No explicit 1 µs delays: each GPIO write through Blinka/libgpiod already takes several
    microseconds on a Pi, longer than the chip needs.
    """
    lines.set_select(False)
    for bit in bits:
        lines.set_clock(False)
        lines.set_data(bit)
        lines.set_clock(True)
        lines.set_clock(False)
    lines.set_select(True)
    lines.set_clock(False)
    lines.set_data(False)


def write_register(lines: SerialLines, address: int, data: int) -> tuple[bool, ...]:
    """Write one register; returns the bits sent (for logs and tests)."""
    bits = frame_bits(frame_word(address, data))
    clock_out(lines, bits)
    return bits
