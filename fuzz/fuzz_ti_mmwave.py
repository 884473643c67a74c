"""atheris harness for the TI mmWave data-UART frame parser (drivers/radar/ti_frames.py).

Checks: only ParseError may escape, the buffer stays within BUFFER_CAP, and split feeding gives
the same frames, counters and number of bytes still undecided (`buffered`) as whole feeding.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from _common import instrumented, main, read_seeds, split

with instrumented(__name__):
    from cuas_node.drivers.parsing import ParseError
    from cuas_node.drivers.radar.ti_decode import frame_to_json
    from cuas_node.drivers.radar.ti_frames import BUFFER_CAP, TiFrameParser


def _parse(chunks: list[bytes]) -> tuple[list[str], dict[str, int], int]:
    parser = TiFrameParser()
    out: list[str] = []
    for chunk in chunks:
        out += [json.dumps(frame_to_json(f), sort_keys=True) for f in parser.feed(chunk)]
        assert parser.buffered <= BUFFER_CAP
    return out, parser.counters, parser.buffered


def TestOneInput(data: bytes) -> None:
    try:
        chunks = split(data)
        assert _parse(chunks) == _parse([b"".join(chunks)])
    except ParseError:
        pass


def seeds() -> Iterator[bytes]:
    yield from read_seeds("radar/*.dat", limit=8192)


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
