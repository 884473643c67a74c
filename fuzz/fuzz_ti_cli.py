"""atheris harness for the TI mmWave CLI conversation (drivers/radar/ti_cli.py `CliConversation`).

The input is what the board prints; the harness plays the configurator (one command out, its reply
in, the next command out). Checks: nothing raises, the line buffer stays bounded, and split
feeding gives the same replies as whole feeding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from _common import instrumented, main, split

with instrumented(__name__):
    from cuas_node.drivers.radar.ti_cli import (
        MAX_LINE_CHARS,
        PROMPT,
        CliConversation,
        load_profile,
        parse_cfg,
    )

COMMANDS = parse_cfg(load_profile(None, "iwr6843")[0])


def _talk(chunks: list[bytes]) -> list[tuple[int, str, tuple[str, ...]]]:
    talk = CliConversation(COMMANDS)
    talk.send()
    out: list[tuple[int, str, tuple[str, ...]]] = []
    for chunk in chunks:
        reply = talk.feed(chunk)
        while reply is not None:
            out.append((reply.command.number, reply.outcome.value, reply.lines))
            if talk.finished:
                return out
            talk.send()
            reply = talk.feed(b"")
        assert talk.buffered <= MAX_LINE_CHARS + len(chunk)
    return out


def TestOneInput(data: bytes) -> None:
    chunks = split(data)
    assert _talk(chunks) == _talk([b"".join(chunks)])


def transcript() -> bytes:
    """The board accepting the shipped profile: echo, Done, prompt per command."""
    out = [b"MMW Demo 03.05\r\n" + PROMPT.encode()]
    for c in COMMANDS:
        out.append(c.text.encode() + b"\r\nDone\r\n" + PROMPT.encode())
    return b"".join(out)


def seeds() -> Iterator[bytes]:
    text = transcript()
    yield b"\x00" + text
    yield b"\x03" + text.replace(b"Done", b"Error -1", 1)
    yield b"\x06" + text[: len(text) // 2]


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
