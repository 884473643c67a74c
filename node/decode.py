"""`cuas-node decode KIND FILE`: raw sensor bytes → one JSON object per record (a public contract,
documented per kind in docs/decode-*.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from cuas_node.drivers.acoustic.decode import decode_acoustic
from cuas_node.drivers.nmea.decode import decode_nmea
from cuas_node.drivers.radar.ti_decode import UnsupportedFirmware, decode_ti
from cuas_node.drivers.remoteid.decode import decode_remoteid

Decoder = Callable[[bytes], Iterator[dict[str, Any]]]

DECODERS: dict[str, Decoder] = {
    "nmea": decode_nmea,
    "ti-mmwave": decode_ti,
    "remoteid": decode_remoteid,
    "acoustic": decode_acoustic,
}

DECODE_FAILURES: tuple[type[Exception], ...] = (UnsupportedFirmware,)
"""What a decoder may raise, after yielding every record it could decode, about input it cannot
decode (e.g. a radar firmware version): the message says what was found and what to do, and
`decode` prints it to stderr and exits 1."""

_NOTHING_DECODED = {  # why a kind's input may hold no record (`acoustic` always prints its summary)
    "nmea": "another kind of sensor, another serial speed, or only damaged sentences (docs/decode-nmea.md)",
    "ti-mmwave": "another kind of sensor, another serial speed, or only damaged frames "
    "(docs/decode-ti-mmwave.md)",
    "remoteid": "nothing broadcasting in a capture, or not a Remote ID receiver's output (docs/remoteid.md)",
}


def run_decode(args: argparse.Namespace) -> int:
    """The `decode` command: 0 (also when nothing was decoded: stderr says why there may be
    nothing), 1 for a file it cannot read or input a decoder refuses, 2 for an unknown kind."""
    decoder = DECODERS.get(args.kind)
    if decoder is None:
        print(
            f"cuas-node decode: unknown kind {args.kind!r} (known: {', '.join(sorted(DECODERS))})",
            file=sys.stderr,
        )
        return 2
    try:
        data = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    except OSError as exc:
        print(f"cuas-node decode: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    out, records = sys.stdout, 0
    try:
        for obj in decoder(data):
            out.write(json.dumps(obj, separators=(",", ":")) + "\n")
            records += 1
    except BrokenPipeError:
        return 0
    except DECODE_FAILURES as exc:
        out.flush()
        print(f"cuas-node decode: {exc}", file=sys.stderr)
        return 1
    why = _NOTHING_DECODED.get(args.kind)
    if data and not records and why:  # (stdout stays the contract: nothing; say why on stderr)
        print(f"cuas-node decode: no {args.kind} records in {len(data)} bytes: {why}", file=sys.stderr)
    return 0
