"""Adapters that let Stone Soup's trackers run on the benchmark's terms: our tentative-track
rule as a Stone Soup deleter (equivalent initiation on both sides), and a detector we push scans
into one at a time. Imported lazily (Stone Soup is the `bench` extra)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import numpy as np


def _score_deleter_class() -> type:
    from stonesoup.base import Property
    from stonesoup.deleter.base import Deleter
    from stonesoup.types.update import Update

    class ScoreDeleter(Deleter):
        """Our tentative-track rule for Stone Soup's holding tracks: the SPRT track score (ln(Pd·g(ν)/λ)
        per update, g the Gaussian density of the innovation, ln(1 − Pd) per missed scan) rejected at
        `reject`, or no update for `timeout`."""

        pd: float = Property()
        density: float = Property()
        reject: float = Property()
        timeout: dt.timedelta = Property()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.scores: dict[str, tuple[int, float, Any]] = {}

        def check_for_deletion(self, track: Any, **kwargs: Any) -> bool:
            n, score, last = self.scores.get(track.id, (1, 0.0, track.states[0].timestamp))
            for state in track.states[n:]:
                hyp = getattr(state, "hypothesis", None)
                if isinstance(state, Update) and hyp:
                    pred = hyp.measurement_prediction
                    nu = np.asarray(
                        hyp.measurement.state_vector - pred.state_vector, dtype=np.float64
                    ).ravel()
                    cov = np.asarray(pred.covar, dtype=np.float64)
                    loglik = -0.5 * (
                        nu @ np.linalg.solve(cov, nu)
                        + np.linalg.slogdet(cov)[1]
                        + nu.size * math.log(2 * math.pi)
                    )
                    score += math.log(self.pd) + loglik - math.log(self.density)
                    last = state.timestamp
                else:
                    score += math.log(1.0 - self.pd)
            self.scores[track.id] = (len(track.states), score, last)
            gone = score <= self.reject or track.timestamp - last > self.timeout
            if gone:
                del self.scores[track.id]
            return bool(gone)

    return ScoreDeleter


def score_deleter(pd: float, density: float, alpha: float, beta: float, timeout_s: float) -> Any:
    reject = math.log(beta / (1.0 - alpha))  # our SPRT rejection threshold (fusion/initiation.py)
    return _score_deleter_class()(pd, density, reject, dt.timedelta(seconds=timeout_s))


class Feed:
    """Stone Soup pulls (time, detections) from its detector; we push one scan at a time."""

    def __init__(self) -> None:
        self.item: tuple[dt.datetime, set[Any]] | None = None

    def __iter__(self) -> Iterator[tuple[dt.datetime, set[Any]]]:
        while True:
            assert self.item is not None
            yield self.item
