"""Track initiation (the initiator): the sequential track score and births that never starve.

Every track carries Blackman's track score, a log-likelihood ratio L of "a target" against "false
alarms": 0 at birth (the first detection says nothing either way), + ln(Pd·g(ν)/λ) per detection it
takes (g the Gaussian likelihood of the innovation, λ the clutter density of that sensor: its false
alarms per scan over its measurement volume, `sensor_stats`), + ln(1 − Pd) per scan of a sensor that
should have seen it (inside coverage, position known to within a few of the sensor's own
resolution cells at its range) but did not. Wald's sequential test on L, with α the configured
`false_track_probability` and β the `miss_probability`:
- confirm when L ≥ ln((1 − β)/α), plus ln of the false alarms a scan a radar is specified
  to make (α per scan, not per hypothesis: `TrackManager._hypotheses_bonus`), and the M-of-N count is met
  (`confirm_m` of the last `confirm_n` looks is the least evidence any track needs, a guard
  against clutter that is not uniform);
- a tentative track is rejected as soon as L ≤ ln(β/(1 − α)).
Births are never refused for want of tentative room: when the tentative pool would exceed
`max_tentative`, or twice the scan's births beyond the sensor's learnt false alarms (or the
table, grown to its limit, has no free slot), the least likely tentative hypotheses (lowest L,
new births at 0 included) are pruned, never a confirmed or coasting track. Only when every slot
holds an established track is a birth refused.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.tracks import Status, TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The SPRT thresholds of the track score and the evidence of absence of an established track."""

    confirm: float
    reject: float
    alpha: float

    @classmethod
    def from_probabilities(cls, alpha: float, beta: float) -> Thresholds:
        return cls(math.log((1.0 - beta) / alpha), math.log(beta / (1.0 - alpha)), alpha)

    def misses_to_delete(self, pd: float) -> int:
        """Consecutive misses, by a sensor that should have seen it, after which an established
        track's target is taken as gone: the fewest k with (1 − Pd)^k ≤ α² (a present target is
        so unlucky with probability at most α², far below the false-track rate: deleting a real
        track costs an identity, and Pd is itself an estimate)."""
        return max(LEAST_MISSES_TO_DELETE, math.ceil(2.0 * math.log(self.alpha) / _log_miss(pd)))

    def absence_to_delete(self, pd: float) -> float:
        """The evidence of absence (nats, `TrackTable.absence`) at which an established track is
        deleted: −2 ln α, which `misses_to_delete` misses in a row reach at a steady Pd (each adds
        −ln(1 − Pd)), and at least that of its 3 misses. Not that count times the miss's weight at
        today's Pd: the learnt Pd creeps up while a dead track's misses wait unproven (the live
        tracks' hits count at once), and a bar of whole misses at the newer Pd then stays a
        fraction of a miss above what the earlier misses added: often one scan more."""
        floor = LEAST_MISSES_TO_DELETE * -_log_miss(pd)
        return max(-2.0 * math.log(self.alpha), floor) * (1.0 - 1e-9)


LEAST_MISSES_TO_DELETE = 3  # never fewer, however high the learnt Pd: it is itself an estimate


def _log_miss(pd: float) -> float:
    """ln(1 − Pd), what a miss adds to the track score (kept finite at Pd 1)."""
    return math.log(max(1.0 - pd, 1e-6))


def hit_score(loglik: FloatArray, pd: float, clutter_density: float | FloatArray) -> FloatArray:
    """The score a detection adds: ln(Pd · g(ν) / λ), λ the density at each detection or one for all."""
    return np.asarray(loglik + math.log(pd) - np.log(np.maximum(clutter_density, 1e-300)), dtype=np.float64)


@dataclass
class BirthCounters:
    refused: int = 0  # births with no slot: every slot held an established track
    pruned: int = 0  # tentative hypotheses (new or old) dropped as the least likely


def make_room(
    table: TrackTable, births: int, max_tentative: int, counters: BirthCounters, false_alarms: float
) -> int:
    """Prune the least likely tentative tracks so that `births` new ones (score 0) fit both the pool
    and the table, growing the table (`TrackTable.reserve`) only for births the pool can keep;
    returns how many of the births may be placed (the rest are pruned as new hypotheses, or
    refused when only established tracks can hold the slots). `false_alarms`: the sensor's learnt
    false alarms per scan, which explain that many of the births."""
    if births <= 0:
        return 0
    tentative = np.flatnonzero(table.status == Status.TENTATIVE)
    established = int(np.count_nonzero(table.status != Status.FREE)) - tentative.size
    refused = max(births - (table.limit - established), 0)  # the table at its limit, all established
    counters.refused += refused
    births -= refused
    # The pool holds `max_tentative`, or twice the births the sensor's false alarms do not explain
    # if more: a swarm coming into view at once gets a hypothesis per detection, while a flood of
    # clutter (which the learnt false-alarm rate soon explains) keeps the pool, and the cost of
    # every scan's gating, at its configured size.
    pool = max(max_tentative, 2 * math.ceil(births - false_alarms))
    table.reserve(min(births, pool))  # at most `pool` of the births outlive the pruning
    free = int(np.count_nonzero(table.status == Status.FREE))
    excess = max(tentative.size + births - pool, births - free, 0)
    if excess == 0:
        return births
    # Rank old tentatives and the new births (score 0) together; drop the `excess` least likely.
    # On ties the old go first: a newcomer has not yet had a look.
    scores = np.concatenate([table.score[tentative], np.zeros(births)])
    order = np.lexsort((np.r_[np.zeros(tentative.size), np.ones(births)], scores))
    drop = order[:excess]
    table.release(tentative[drop[drop < tentative.size]])
    counters.pruned += excess
    return births - int(np.count_nonzero(drop >= tentative.size))


@functools.cache
def _typical_hits(window: int, pd_percent: int) -> int:
    pd = pd_percent / 100.0
    at_least = 0.0
    for m in range(window, -1, -1):
        at_least += math.comb(window, m) * pd**m * (1.0 - pd) ** (window - m)
        if at_least >= 0.5:
            return m
    return 0


def typical_hits(window: int, pd: float) -> int:
    """The most hits a target detected with probability `pd` reaches in half its windows of
    `window` looks (the median of the binomial, rounded down)."""
    return _typical_hits(window, round(min(max(pd, 0.0), 1.0) * 100))
