"""Cursor-on-Target mapping tables, as data (documented in docs/outputs.md).

CoT `type` for an "atom" is `a-<affiliation>-<battle dimension>[-<function>]`: the first two
fields are CoT's (the MITRE type tree, `types.txt`), the dimension and function are MIL-STD-2525
codes, upper case, one letter per field (CoT base schema). Air tracks are dimension `A`; in the
2525 air function tree `M` is military, `F` fixed wing, `H` rotary wing, `Q` drone (RPV/UAV),
`C` civil. A drone class whose affiliation the node cannot know takes the output's configured
`affiliation` (default `u`, unknown); aircraft and birds are neutral.
"""

from __future__ import annotations

from typing import Final

AFFILIATIONS: Final = ("p", "u", "a", "f", "n", "s", "h", "j", "k", "o")
"""CoT affiliations (types.txt): pending, unknown, assumed friend, friend, neutral, suspect,
hostile, joker, faker, none specified."""

CONFIGURED = "*"  # in CLASS_TYPES: the output's configured affiliation

CLASS_TYPES: Final[dict[str, tuple[str, str]]] = {
    # node class label: (affiliation, 2525 battle dimension and function)
    "multirotor": (CONFIGURED, "A-M-H-Q"),  # air, rotary wing drone (UAV)
    "fixed_wing": (CONFIGURED, "A-M-F-Q"),  # air, fixed wing drone (UAV)
    "unknown": (CONFIGURED, "A"),  # air, function unknown
    "aircraft": ("n", "A-C"),  # air, civil aircraft
    "bird": ("n", "A"),  # air; 2525 has no bird: neutral air object
}
"""Every class label the fusion emits (cuas_node.kernel / docs/track.md) has a row; a label
without one is sent as `unknown` (checked by tests/test_cot.py against the fusion's labels)."""

OPERATOR_DIMENSION: Final = "G"
"""The Remote ID operator (pilot) is a ground atom of the drone's affiliation: `a-u-G`."""

NODE_TYPE: Final = "a-f-G-E-S"
"""The node itself: a friendly ground equipment sensor (2525 `G-E-S`)."""

UNKNOWN_ERROR_M: Final = 9999999.0
"""CoT's conventional ce/le for "error unknown"."""


def event_type(label: str, affiliation: str) -> str:
    """`multirotor`, `u` → `a-u-A-M-H-Q`; a label with no row maps as `unknown`."""
    row_affiliation, function = CLASS_TYPES.get(label, CLASS_TYPES["unknown"])
    aff = affiliation if row_affiliation == CONFIGURED else row_affiliation
    return f"a-{aff}-{function}"


def operator_type(drone_type: str) -> str:
    """`a-u-A-M-H-Q` → `a-u-G`: the operator shares the drone's affiliation."""
    return f"a-{drone_type.split('-')[1]}-{OPERATOR_DIMENSION}"


def how(sensor_kinds: tuple[str, ...]) -> str:
    """The `how` of a track (types.txt, the how tree): `m-r` relayed when only Remote ID (the
    drone's own GNSS, relayed by its broadcast) supports it, `m-f` fused when two or more sensors
    corroborate it, else `m-a` (an algorithmic tracker's estimate)."""
    if sensor_kinds and all(kind == "remoteid" for kind in sensor_kinds):
        return "m-r"
    if len(sensor_kinds) >= 2:
        return "m-f"
    return "m-a"
