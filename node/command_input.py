"""Untrusted command input: the bounds checked before anything else reads a command (issue 14).

Anyone who can publish to the node's `cmd/` topic reaches the command parser before any
authorisation, so these checks must hold for arbitrary bytes: never raise anything but
`ValueError` from parsing, never recurse without bound, never echo unbounded input. Sans-IO (the
command channel and `cuas_node.commands` use them; the tests and the fuzzers call them directly).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

MAX_PAYLOAD = 64 * 1024
MAX_DEPTH = 32  # JSON nesting: a zone-update needs 5 levels
MAX_ID_CHARS = 128  # a request id, echoed in the response
MAX_NAME_CHARS = 64  # a command name, echoed in the response and its default topic
MAX_RESPONSE_TOPIC_BYTES = 256

# A JSON string, possessive (no backtracking); an unterminated one (invalid JSON) runs to the end.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
# Each byte as its change of nesting depth (int8): [ { +1, ] } -1, anything else 0.
_DEPTH_STEP = bytes(1 if b in b"[{" else 255 if b in b"]}" else 0 for b in range(256))


def json_depth_ok(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text `data` nests arrays/objects at most `limit` deep.

    Why: `json.loads` recurses once per level, so 30,000 `[` raise RecursionError in whatever
    thread parses them. This check never recurses and is linear: one regex pass cuts out the
    strings (a bracket or an escaped quote inside a string does not nest; the pattern cannot
    backtrack, and an unterminated string runs to the end), then the running depth is a cumulative
    sum over the brackets left. Invalid text is left for `json.loads`, which refuses it no deeper
    than the brackets counted here."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    steps = np.frombuffer(_JSON_STRING.sub(b"", data).translate(_DEPTH_STEP), dtype=np.int8)
    return steps.size == 0 or int(np.cumsum(steps, dtype=np.int64).max()) <= limit


class TooDeep(ValueError):
    """JSON nested deeper than `MAX_DEPTH`."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes) -> Any:
    """Strict JSON with the depth bound: `NaN`/`Infinity` refused (they are not JSON, and a `ts` of
    NaN would pass every freshness comparison). Raises ValueError (`TooDeep` for nesting)."""
    if not json_depth_ok(data):
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    return json.loads(data, parse_constant=_no_constant)


def response_topic_problem(topic: str, base: str) -> str | None:
    """Why the node must not publish a response on `topic`, or None if it may.

    `base` is the node's own response subtree, `<root>/<node>/response`. Only topics strictly
    below it are obeyed: anything else would let any client make the node publish on another
    node's (or its own data) topics, which the broker ACL may even allow. A wildcard makes paho
    raise and a control character makes the broker drop the connection, so both are refused
    here, as are empty levels and topics over `MAX_RESPONSE_TOPIC_BYTES`."""
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "response topic is not valid UTF-8"
    if size > MAX_RESPONSE_TOPIC_BYTES:
        return f"response topic longer than {MAX_RESPONSE_TOPIC_BYTES} bytes"
    if "#" in topic or "+" in topic or not topic.isprintable():
        return "response topic must not contain wildcards or control characters"
    if not topic.startswith(base + "/"):
        return f"response topic must be under {base}/"
    if "" in topic[len(base) + 1 :].split("/"):
        return "response topic must not have empty levels"
    return None


def command_name_ok(name: str) -> bool:
    """A name the node may echo (in the response and its default topic `response/<name>`)."""
    return 0 < len(name) <= MAX_NAME_CHARS and name.isprintable() and "/" not in name


def unknown_keys(extra: set[str]) -> str:
    """The refusal's detail, bounded: the keys are the sender's text, echoed in the response."""
    text = f"unknown keys: {sorted(extra)}"
    return text if len(text) <= 200 else text[:197] + "..."


def request_id_of(body: dict[str, Any]) -> tuple[str | None, str]:
    """The request id to echo, and why it is refused ("" if it is not): an id is echoed in full in
    the response, so one that is not a string of at most `MAX_ID_CHARS` is never echoed."""
    value = body.get("id")
    if value is None:
        return None, ""
    if not isinstance(value, str) or len(value) > MAX_ID_CHARS:
        return None, f"id must be a string of at most {MAX_ID_CHARS} characters"
    return value, ""
