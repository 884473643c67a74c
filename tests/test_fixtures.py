"""Fixtures learnt while the node runs (node/fusion/fixtures.py): a place a radar's plots keep
coming from in most epochs for `fusion.learn_fixtures_after_s` becomes site clutter, priced as the
survey's reflectors are. What must hold: a reflector that stays is learnt after the span and not
before, and a real one where it is; uniform clutter, moving targets and a drone hovering for less
than the span are never learnt; a fixture that leaves is forgotten; and through the whole node
(`track`) the reflectors stop raising false tracks once learnt while a drone still confirms."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from cuas_node.cli import main
from cuas_node.fusion.fixtures import LEARN_EPOCHS, PRESENT_SHARE, FixtureLearner
from tests.reflector_site import (
    COVERAGE,
    RATE_HZ,
    REFLECTORS,
    SIGMA,
    T0,
    TOML,
    at,
    measurement_lines,
    site_scans,
    write,
)

SPAN_S = 300.0  # a short span (10 s epochs, 100 scans each), so that a test runs minutes of scans
NODE_SPAN_S = 150.0  # through the whole node: shorter still (5 s epochs learn the faint ones less well)
VOLUME = (COVERAGE[1] - COVERAGE[0]) * 4.0 * COVERAGE[2] * COVERAGE[3]


def _learner() -> FixtureLearner:
    return FixtureLearner((float(SIGMA[0]), float(SIGMA[1])), 3, VOLUME, SPAN_S)


def _feed(learner: FixtureLearner, scans: list[np.ndarray], t0: float = 0.0) -> None:
    for k, z in enumerate(scans):
        learner.observe(t0 + k / RATE_HZ, z, 5.0, 1.0 / RATE_HZ)


def _uniform_lambda() -> float:
    return 5.0 / VOLUME


def test_a_reflector_that_stays_is_learnt_after_the_span_and_not_before() -> None:
    learner = _learner()
    scans = site_scans(3.0 * SPAN_S, seed=1)
    _feed(learner, scans[: round(0.9 * SPAN_S * RATE_HZ)])
    assert learner.spots is None  # 90 % of the span: a drone could still be hovering there
    _feed(learner, scans[round(0.9 * SPAN_S * RATE_HZ) :], t0=0.9 * SPAN_S)
    spots = learner.spots
    assert spots is not None and len(spots) == len(REFLECTORS)  # the faint tree (10 %) too
    for r, az, el, rate in REFLECTORS:
        off = np.abs(spots.mean - [r, az, el]) / SIGMA
        k = int(off.max(axis=1).argmin())
        assert off[k].max() < 0.5
        assert spots.rate[k] == pytest.approx(rate, rel=0.25)  # the tails outside its cells counted back
        scatter = np.sqrt(np.diagonal(spots.cov[k])) / SIGMA
        assert np.all((scatter >= 1.0) & (scatter < 1.3))
        # On it, the learnt density is the reflector's (its rate over the Gaussian's peak volume).
        peak = rate / math.sqrt(np.linalg.det(2.0 * math.pi * np.diag(SIGMA**2)))
        assert spots.density(np.array([[r, az, el]]))[0] == pytest.approx(peak, rel=0.5)
        assert peak > 1e3 * _uniform_lambda()


def test_uniform_clutter_and_moving_targets_are_never_learnt_and_little_is_kept() -> None:
    """Dense clutter (60 a scan) and two targets flying at 12 m/s for three spans: nothing is
    learnt, and the cells kept are the few busy ones, not the coverage."""

    def crossing(k: int, rng: np.random.Generator) -> np.ndarray:
        x = -900.0 + 12.0 * k / RATE_HZ
        plots = [at((x, 1000.0, 60.0)), at((300.0, 600.0 + 12.0 * k / RATE_HZ, 30.0))]
        return np.concatenate(plots) + rng.normal(0.0, 1.0, (2, 3)) * SIGMA

    learner = _learner()
    for k, z in enumerate(
        site_scans(3.0 * SPAN_S, seed=2, reflectors=False, drones=crossing, false_alarms=60.0)
    ):
        learner.observe(k / RATE_HZ, z, 60.0, 1.0 / RATE_HZ)
    assert learner.spots is None
    assert learner.epoch >= 3 * LEARN_EPOCHS - 1
    assert learner.keys.size < 1000 < 0.01 * learner.cells_in_view  # not the 100 000+ cells of the view


def test_a_drone_hovering_shorter_than_the_span_is_not_learnt() -> None:
    """A drone hovering in one place for 80 % of the span, then gone: never site."""
    hover = at((300.0, 1500.0, 40.0))[0]
    stay = round(0.8 * SPAN_S * RATE_HZ)

    def drone(k: int, rng: np.random.Generator) -> np.ndarray:
        seen = k < stay and rng.random() < 0.9
        return (hover + rng.normal(0.0, 1.0, 3) * SIGMA)[None] if seen else np.zeros((0, 3))

    learner = _learner()
    _feed(learner, site_scans(2.0 * SPAN_S, seed=3, reflectors=False, drones=drone))
    assert learner.spots is None


def test_a_fixture_that_leaves_is_forgotten() -> None:
    """A truck parked for two spans, then driven away: learnt, and forgotten once it has been
    missing from more than a fifth of the last span's epochs (within a third of a span)."""
    learner = _learner()
    scans = site_scans(2.0 * SPAN_S, seed=4)
    _feed(learner, scans)
    assert learner.spots is not None and len(learner.spots) == len(REFLECTORS)
    quiet = site_scans(SPAN_S, seed=5, reflectors=False)
    # Busy in more than a fifth fewer: the epoch it left in straddles, an epoch is closed by the
    # first scan after it, and a cell a false alarm falls in is busy that epoch: a third of a span.
    epochs_missed = math.floor((1.0 - PRESENT_SHARE) * LEARN_EPOCHS) + 4
    _feed(learner, quiet[: round(epochs_missed * SPAN_S / LEARN_EPOCHS * RATE_HZ)], t0=2.0 * SPAN_S)
    assert learner.spots is None


def test_a_radar_that_falls_silent_keeps_what_it_learnt() -> None:
    """Epochs without scans (the radar unplugged for half a span) are no evidence of absence."""
    learner = _learner()
    _feed(learner, site_scans(2.0 * SPAN_S, seed=7))
    learnt = learner.spots
    assert learnt is not None and len(learnt) == len(REFLECTORS)
    epoch = learner.epoch
    _feed(learner, site_scans(0.2 * SPAN_S, seed=8), t0=2.5 * SPAN_S)
    assert learner.spots is not None and len(learner.spots) == len(REFLECTORS)
    assert learner.epoch - epoch <= 0.2 * LEARN_EPOCHS + 2  # the silence was not counted as epochs


# -- through the node ------------------------------------------------------------------------
def _first_confirmed(out: str) -> dict[str, tuple[float, np.ndarray]]:
    first: dict[str, tuple[float, np.ndarray]] = {}
    for line in out.splitlines():
        doc = json.loads(line)
        for tr in doc.get("tracks", []) if doc["type"] == "tracks" else []:
            if tr["status"] == "confirmed":
                first.setdefault(tr["id"], (doc["t"], np.array(tr["enu_m"])))
    return first


@pytest.mark.parametrize("learn", [True, False])
def test_through_the_node_learnt_reflectors_stop_raising_tracks_and_a_drone_still_confirms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], learn: bool
) -> None:
    """The four flickering reflectors of tests/reflector_site.py, no survey: in the first span
    they raise confirmed tracks; once learnt, none (without learning: still many). A drone that
    arrives after the span and hovers away from them confirms within a second either way."""
    hover = at((300.0, 1500.0, 40.0))[0]
    arrive = round(1.5 * NODE_SPAN_S * RATE_HZ)

    def drone(k: int, rng: np.random.Generator) -> np.ndarray:
        seen = k >= arrive and rng.random() < 0.8
        return (hover + rng.normal(0.0, 1.0, 3) * SIGMA)[None] if seen else np.zeros((0, 3))

    scans = site_scans(2.5 * NODE_SPAN_S, seed=6, drones=drone)
    toml = TOML + f"\n[fusion]\nlearn_fixtures_after_s = {NODE_SPAN_S if learn else 0}\n"
    (tmp_path / "live.toml").write_text(toml)
    path = write(tmp_path / "live.jsonl", measurement_lines(scans))
    assert main(["track", "--config", str(tmp_path / "live.toml"), str(path)]) == 0
    captured = capsys.readouterr()
    first = _first_confirmed(captured.out)
    told = re.search(r"radar 'surv': (\d+) places where its plots recurred", captured.err)
    t0 = T0  # the first scan's time
    drone_enu = np.array([300.0, 1500.0, 40.0])
    drone_tracks = [t - t0 for t, p in first.values() if np.linalg.norm(p - drone_enu) < 100.0]
    false_late = [
        t for t, p in first.values() if t - t0 > 1.2 * NODE_SPAN_S and np.linalg.norm(p - drone_enu) > 100.0
    ]
    early = [t for t, p in first.values() if t - t0 < NODE_SPAN_S and np.linalg.norm(p - drone_enu) > 100.0]
    assert len(early) >= 3  # the reflectors raise false tracks while nothing is known of them
    assert drone_tracks and min(drone_tracks) - arrive / RATE_HZ < 1.0
    print(f"learn={learn}: {len(early)} false tracks in the first span, {len(false_late)} after")
    if learn:
        assert false_late == []
        assert told is not None and 3 <= int(told.group(1)) <= 8  # the summary says (reflectors split)
    else:
        assert len(false_late) >= 2 and told is None
