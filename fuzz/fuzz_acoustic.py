"""atheris harness for the acoustic array's framed-PCM parser (drivers/acoustic/protocol.py).

Checks: only ParseError may escape (none is expected), the buffer stays within BUFFER_CAP, and
split feeding gives the same frames and counters as whole feeding.
"""

from __future__ import annotations

import sys
import wave
from collections.abc import Iterator

from _common import capture_files, instrumented, main, split

with instrumented(__name__):
    import numpy as np

    from cuas_node.drivers.acoustic.protocol import BUFFER_CAP, PcmFrameParser, encode_frame
    from cuas_node.drivers.parsing import ParseError


def _parse(chunks: list[bytes]) -> tuple[list[tuple[object, ...]], dict[str, int]]:
    parser = PcmFrameParser()
    out: list[tuple[object, ...]] = []
    for chunk in chunks:
        for f in parser.feed(chunk):
            out.append(
                (f.sequence, f.timestamp_us, f.sample_rate, f.flags, f.gap, f.restart, f.samples.tobytes())
            )
        assert parser.buffered <= BUFFER_CAP
    return out, parser.counters


def TestOneInput(data: bytes) -> None:
    try:
        chunks = split(data)
        assert _parse(chunks) == _parse([b"".join(chunks)])
    except ParseError:
        pass


def seeds() -> Iterator[bytes]:
    """Frames carrying real drone recordings (two channels: the clip and the clip one sample later)."""
    for path in capture_files("acoustic/drone/*.wav")[:3]:
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            mono = np.frombuffer(w.readframes(2048), dtype="<i2")
        chans = np.stack([mono, np.roll(mono, 1)], axis=1)
        frames = [encode_frame(chans[i : i + 256], rate, i // 256, i * 62) for i in range(0, 1024, 256)]
        yield b"\x02" + b"".join(frames)


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
