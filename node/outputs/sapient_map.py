"""SAPIENT (BSI Flex 335 v2.0) mapping tables, as data (documented in docs/outputs.md).

The standard leaves the classification taxonomy to each ASM, which declares it in its registration
(`DetectionClassDefinition`) and then reports only classes it declared. This node's taxonomy is a
two-level tree in SAPIENT's style: a top-level class with confidence, and sub-classes (level 1)
that refine it. The node types of the registration come from the kinds of its real sensors.
"""

from __future__ import annotations

from typing import Final

ICD_VERSION: Final = "BSI Flex 335 v2.0"

CLASS_TAXONOMY: Final[dict[str, tuple[str, str | None]]] = {
    # node class label: (SAPIENT class, level-1 sub-class or None)
    "multirotor": ("UAV", "Rotary Wing"),
    "fixed_wing": ("UAV", "Fixed Wing"),
    "unknown": ("Air Object", None),
    "aircraft": ("Manned Aircraft", None),
    "bird": ("Animal", "Bird"),
}
"""Every class label the fusion emits (cuas_node.kernel / docs/track.md) has a row; a label without
one is reported as `unknown` (tests/test_sapient.py checks this against the fusion's labels)."""

NODE_TYPES: Final[dict[str, tuple[str, str]]] = {
    # sensor kind: (Registration.NodeType name, node_sub_type text)
    "ti-mmwave": ("NODE_TYPE_RADAR", "FMCW mmWave radar"),
    "radar": ("NODE_TYPE_RADAR", "radar"),
    "remoteid": ("NODE_TYPE_PASSIVE_RF", "Remote ID receiver (ASTM F3411)"),
    "fpv-rx5808": ("NODE_TYPE_PASSIVE_RF", "5.8 GHz FPV video receiver"),
    "acoustic-array": ("NODE_TYPE_ACOUSTIC", "microphone array"),
}
"""Detecting sensor kinds; the GNSS receiver (`nmea`) places the node and detects nothing."""

BEHAVIOURS: Final = ("Moving", "Hovering", "Approaching", "Receding")
"""Behaviours a detection report may carry, derived from the track's velocity relative to the node
(`sapient.behaviours`); declared in the registration."""

HOVER_SPEED_MPS: Final = 1.0
"""Below this ground speed a track is `Hovering`, else `Moving`."""

RADIAL_SPEED_MPS: Final = 1.0
"""A radial speed above this (towards or away from the node) adds `Approaching` / `Receding`."""

MODE: Final = "default"
"""The node's one mode: it always detects with all its enabled sensors."""

SUPPORTED_REQUESTS: Final = ("Status",)
"""Task `request` values the node accepts (`Status`: send a status report now)."""


def classification(label: str) -> tuple[str, str | None]:
    """`multirotor` → (`UAV`, `Rotary Wing`); a label with no row maps as `unknown`."""
    return CLASS_TAXONOMY.get(label, CLASS_TAXONOMY["unknown"])


def taxonomy() -> dict[str, list[str]]:
    """The declared tree: each SAPIENT class with its sub-classes, in table order."""
    tree: dict[str, list[str]] = {}
    for top, sub in CLASS_TAXONOMY.values():
        subs = tree.setdefault(top, [])
        if sub is not None and sub not in subs:
            subs.append(sub)
    return tree
