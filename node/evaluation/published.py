"""Scores of what the node published (its `tracks` messages), beside the per-step scores of
`metrics.py`: whether a bound Remote ID identity stays on its track from message to message, and
whether any live track was ever published below the ground.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cuas_node.fusion.ground import Ground
from cuas_node.kernel.reports import TrackReport

BELOW_GROUND_TOLERANCE_M = 0.05
"""Rounding and the ground-curvature approximation: a state this close is on the ground."""


@dataclass
class PublishedScore:
    bound_messages: int = 0  # live-track messages after the track's first binding
    bound_with_identity: int = 0  # ... of which carried the identity
    below_ground: int = 0  # live track states published below the ground
    min_height_m: float = float("inf")  # lowest published live state above the ground


def score_published(messages: Sequence[Sequence[TrackReport]], ground: Ground | None) -> PublishedScore:
    """`messages`: the track reports of each published `tracks` message, in order."""
    score = PublishedScore()
    bound: set[int] = set()
    for reports in messages:
        live = [r for r in reports if r.live]
        for r in live:
            if r.remote_id is not None:
                bound.add(r.number)
            if r.number in bound:
                score.bound_messages += 1
                score.bound_with_identity += r.remote_id is not None
        if ground is not None and live:
            height = ground.height(np.array([r.enu_m for r in live], dtype=np.float64))
            score.below_ground += int(np.count_nonzero(height < -BELOW_GROUND_TOLERANCE_M))
            score.min_height_m = min(score.min_height_m, float(height.min()))
    return score


def aggregate_published(scores: Sequence[PublishedScore]) -> dict[str, object]:
    bound = sum(s.bound_messages for s in scores)
    lowest = min((s.min_height_m for s in scores), default=float("inf"))
    return {
        "remote_id_binding_held": (
            round(sum(s.bound_with_identity for s in scores) / bound, 4) if bound else None
        ),
        "confirmed_below_ground": sum(s.below_ground for s in scores),
        "lowest_confirmed_height_m": round(lowest, 2) if lowest != float("inf") else None,
    }
