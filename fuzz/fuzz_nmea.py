"""atheris harness for the NMEA 0183 parser (drivers/nmea/parser.py).

Checks per input: nothing but ParseError escapes, the sentence buffer stays within
MAX_SENTENCE_BYTES, and split feeding gives the same epochs and counters as whole feeding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from _common import instrumented, main, read_seeds, split

with instrumented(__name__):
    from cuas_node.drivers.nmea.parser import MAX_SENTENCE_BYTES, NmeaParser
    from cuas_node.drivers.parsing import ParseError


def _parse(chunks: list[bytes]) -> tuple[list[object], dict[str, int]]:
    parser = NmeaParser()
    out: list[object] = []
    for chunk in chunks:
        out += parser.feed(chunk)
        assert parser.buffered_bytes <= MAX_SENTENCE_BYTES
    out += parser.flush()
    return out, parser.counters


def TestOneInput(data: bytes) -> None:
    try:
        chunks = split(data)
        assert _parse(chunks) == _parse([b"".join(chunks)])
    except ParseError:
        pass


def seeds() -> Iterator[bytes]:
    yield from read_seeds("gps/*.log")


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
