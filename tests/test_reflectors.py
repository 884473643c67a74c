"""A site's fixed reflectors: learnt once with nothing flying (`calibrate radar-reflectors`), then
priced by the track score as the clutter they are (node/fusion/reflectors.py, docs/calibration.md).

The property that matters: with the map, reflectors that flicker start no confirmed track, while a
drone anywhere else (hovering from its first plot, dropping out, a few sigmas from a reflector)
confirms as it does without it. Everything runs through the real commands (`calibrate`, `track`,
`config check`) on measurement lines, as a technician runs them; the learning alone is
tests/test_reflector_learning.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cuas_node.cli import main
from cuas_node.fusion.reflectors import FORMAT, SiteReflectors
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.publish import wire
from tests.reflector_site import (
    RATE_HZ,
    REFLECTORS,
    SIGMA,
    T0,
    TOML,
    at,
    enu,
    first_confirmed,
    learn,
    measurement_lines,
    site_scans,
    write,
)


# -- the map itself ---------------------------------------------------------------------------
def test_density_is_the_reflectors_and_nothing_a_few_sigmas_away() -> None:
    cov = np.diag(SIGMA**2)
    site = SiteReflectors(np.array([[1000.0, math.pi - 0.001, 0.0]]), cov[None], np.array([0.5]))
    peak = 0.5 / math.sqrt(np.linalg.det(2.0 * math.pi * cov))
    z = np.array([[1000.0, math.pi - 0.001, 0.0], [1000.0, -math.pi + 0.001, 0.0], [1010.0, 3.14, 0.0]])
    d = site.density(z)
    assert d[0] == pytest.approx(peak)
    assert d[1] == pytest.approx(peak * math.exp(-0.5 * (0.002 / SIGMA[1]) ** 2))  # azimuth wraps
    assert d[2] < 1e-5 * peak  # 5 σ in range away
    assert site.density(np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize("k", [1, 30, 400])
def test_density_sums_every_reflector_near_enough_to_matter(k: int) -> None:
    """Only the pairs close in range are evaluated: the sum is the full one, for 4-row maps and
    their 3-row marginal, correlated scatter, and plots all round the azimuth."""
    rng = np.random.default_rng(k)
    mean = np.column_stack(
        [rng.uniform(300, 2500, k), rng.uniform(-3, 3, k), rng.uniform(-0.3, 0.3, k), rng.normal(0, 1, k)]
    )
    a = rng.normal(0.0, 1.0, (k, 4, 4)) * np.array([2.0, 0.01, 0.01, 0.3])
    cov = a @ a.transpose(0, 2, 1) + np.diag([4.0, 3e-4, 3e-4, 0.1])
    site = SiteReflectors(mean, cov, rng.uniform(0.05, 0.9, k))
    z = np.column_stack(
        [rng.uniform(300, 2500, 200), rng.uniform(-math.pi, math.pi, 200), rng.uniform(-0.3, 0.3, 200)]
    )
    z = np.column_stack([z, rng.normal(0, 1, 200)])
    near = min(k, 50)  # plots on reflectors, where the density matters
    z[:near] = mean[:near] + rng.normal(0, 1, (near, 4)) * np.sqrt(np.diagonal(cov[:near], axis1=1, axis2=2))
    for d in (3, 4):
        c = cov[:, :d, :d]
        nu = z[:, None, :d] - mean[None, :, :d]
        nu[..., 1] = (nu[..., 1] + math.pi) % (2.0 * math.pi) - math.pi
        d2 = np.einsum("mki,kij,mkj->mk", nu, np.linalg.inv(c), nu)
        full = (site.rate / np.sqrt(np.linalg.det(2.0 * math.pi * c)) * np.exp(-0.5 * d2)).sum(axis=1)
        np.testing.assert_allclose(site.density(z[:, :d]), full, rtol=1e-9, atol=1e-12 * full.max())


def test_map_file_round_trip_and_what_a_bad_one_says() -> None:
    site = learn(site_scans(30.0, seed=6)).reflectors
    site.sensor_id = "surv"
    again = SiteReflectors.from_dict(json.loads(json.dumps(site.to_dict())))
    np.testing.assert_array_equal(again.mean, site.mean)
    np.testing.assert_array_equal(again.rate, site.rate)
    assert again.sensor_id == "surv"
    empty = SiteReflectors.from_dict({"format": FORMAT, "dim": 4, "reflectors": []})
    assert len(empty) == 0 and empty.dim == 4 and empty.sensor_id is None
    one = {"mean": [1000.0, 0.0, 0.0], "cov": np.diag(SIGMA**2).tolist(), "rate_per_scan": 0.5}
    bad = {
        "not a reflector map": {"format": "something else", "reflectors": []},
        "'reflectors' must be a list": {"format": FORMAT, "reflectors": {}},
        "needs 'mean', 'cov' and 'rate_per_scan'": {"format": FORMAT, "reflectors": [{"mean": [1, 2, 3]}]},
        "not positive definite": {"format": FORMAT, "reflectors": [one | {"cov": np.zeros((3, 3)).tolist()}]},
        "'cov' is D × D": {"format": FORMAT, "reflectors": [one | {"cov": [[1.0]]}]},
        "is a finite number >= 0": {"format": FORMAT, "reflectors": [one | {"rate_per_scan": -1}]},
        "'sensor_id' must be a string": {"format": FORMAT, "reflectors": [one], "sensor_id": 3},
        "the rows of every reflector's 'mean' (got 4)": {"format": FORMAT, "dim": 4, "reflectors": [one]},
        "reflector's 'mean' (got None)": {"format": FORMAT, "dim": None, "reflectors": [one]},
        "a share of scans: at most 1": {"format": FORMAT, "reflectors": [one | {"rate_per_scan": 5.0}]},
    }  # fmt: skip
    for words, doc in bad.items():
        with pytest.raises(ValueError, match=re.escape(words)):
            SiteReflectors.from_dict(doc)


# -- the procedure and the node, through the commands -----------------------------------------
def _calibrate(
    tmp_path: Path, lines: list[str], capsys: pytest.CaptureFixture[str], toml: str = TOML
) -> tuple[int, str, str]:
    config = tmp_path / "site.toml"
    config.write_text(toml)
    survey = write(tmp_path / "survey.jsonl", lines)
    out = tmp_path / "surv-reflectors.json"
    argv = ["calibrate", "radar-reflectors", "--config", str(config), "--sensor", "surv"]
    rc = main([*argv, str(out), str(survey)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _track(tmp_path: Path, lines: list[str], toml: str, capsys: pytest.CaptureFixture[str]) -> str:
    (tmp_path / "live.toml").write_text(toml)
    path = write(tmp_path / "live.jsonl", lines)
    assert main(["track", "--config", str(tmp_path / "live.toml"), str(path)]) == 0
    return capsys.readouterr().out


HOVER = (300.0, 1500.0, 40.0)  # a drone hovering from its first plot, far from every reflector
CROSSING = (-900.0, 1000.0, 60.0)  # a drone flying east at 12 m/s across the site


def _drones(k: int, rng: np.random.Generator) -> np.ndarray:
    """The hovering drone, seen 80 % of scans but for two 3 s dropouts, and the crossing one."""
    plots = []
    if rng.random() < 0.8 and not (150 <= k < 180 or 400 <= k < 430):
        plots.append(at(HOVER))
    if rng.random() < 0.8:
        plots.append(at((CROSSING[0] + 12.0 * k / RATE_HZ, CROSSING[1], CROSSING[2])))
    plots = [p + rng.normal(0.0, 1.0, (1, 3)) * SIGMA for p in plots]
    return np.concatenate(plots) if plots else np.zeros((0, 3))


def test_with_the_map_reflectors_start_no_track_and_drones_confirm_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _calibrate(tmp_path, measurement_lines(site_scans(60.0, seed=7)), capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["reflectors"] == len(REFLECTORS) and summary["passing"] == 0
    assert summary["config"] == {"reflectors_file": str((tmp_path / "surv-reflectors.json").resolve())}

    live = measurement_lines(site_scans(60.0, seed=8, drones=_drones))
    reflector_enu = enu(REFLECTORS[:, :3])
    found = {}
    for with_map in (False, True):
        toml = TOML + (f'reflectors_file = "{tmp_path / "surv-reflectors.json"}"\n' if with_map else "")
        confirmed = first_confirmed(_track(tmp_path, live, toml, capsys))
        near = [float(np.linalg.norm(reflector_enu - p, axis=1).min()) for _, p in confirmed.values()]
        hover = [t for t, p in confirmed.values() if np.linalg.norm(p - np.array(HOVER)) < 100.0]
        crossing = [t for t, p in confirmed.values() if abs(p[1] - CROSSING[1]) < 100.0 and p[2] > 30.0]
        found[with_map] = (sum(d < 100.0 for d in near), hover, crossing)
    without, with_map = found[False], found[True]
    assert without[0] >= 2  # the reflectors confirm tracks without the map (the test can fail)
    assert with_map[0] == 0
    # The hovering drone confirms with the map as without it: once, and again after each dropout,
    # at the same times to a scan or two; the crossing drone likewise.
    for k in (1, 2):
        assert len(with_map[k]) == len(without[k]) >= 1
        assert np.allclose(with_map[k], without[k], atol=2.5 / RATE_HZ)


def test_plots_a_reflector_explains_are_not_false_alarms_of_the_uniform_density(tmp_path: Path) -> None:
    """The radar's learnt false alarms a scan (the uniform density, and the confirmation bar):
    with the map, what the same site gives without its reflectors; the reflectors' 1.75 plots a
    scan, explained by the map, are not counted (nor were they, without the map, once their tracks
    had confirmed: those plots were then their tracks')."""
    from cuas_node.assembly import core_setup
    from cuas_node.config import load_config
    from cuas_node.core.step import NodeCore
    from cuas_node.measurement_lines import parse_line

    survey = learn(site_scans(60.0, seed=15)).reflectors
    survey.sensor_id = "surv"
    (tmp_path / "map.json").write_text(json.dumps(survey.to_dict()))
    (tmp_path / "c.toml").write_text(TOML + f'reflectors_file = "{tmp_path / "map.json"}"\n')
    learnt = {}
    for reflectors in (False, True):
        scans = measurement_lines(site_scans(60.0, seed=16, reflectors=reflectors))
        measurements = [parse_line(line) for line in scans]
        core = NodeCore(core_setup(load_config(tmp_path / "c.toml")))
        rates = []
        for t in sorted({m.t_capture for m in measurements}):  # type: ignore[union-attr]
            core.step(t + 0.01, [m for m in measurements if m.t_capture == t])  # type: ignore[union-attr]
            tracker = core.engine.tracker
            rates.append(float(tracker.stats.false_alarms[tracker.sensor_bits["surv"]]))
        learnt[reflectors] = float(np.mean(rates[100:]))
    assert learnt[True] == pytest.approx(learnt[False], abs=0.3), learnt


@pytest.mark.parametrize("offset_sigmas", [4.0, 8.0])
def test_a_drone_a_few_sigmas_from_a_reflector_confirms_as_far_from_any(
    offset_sigmas: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A drone hovering above the busiest reflector (the mast, 90 % of scans), `offset_sigmas`
    of the radar's elevation sigma above it: it confirms as soon as a drone with no reflector
    near (within a scan or two); only inside the reflector's own scatter is it slower."""
    rc, _out, err = _calibrate(tmp_path, measurement_lines(site_scans(60.0, seed=12)), capsys)
    assert rc == 0, err
    mast = REFLECTORS[0, :3]
    times = {}
    for name, el in (("near", mast[2] + offset_sigmas * SIGMA[2]), ("alone", mast[2] + 0.25)):
        waits = []
        for seed in range(4):
            target = np.array([[mast[0], mast[1], el]])

            def drone(k: int, rng: np.random.Generator, target: np.ndarray = target) -> np.ndarray:
                if k < 20 or rng.random() > 0.8:
                    return np.zeros((0, 3))
                return target + rng.normal(0.0, 1.0, (1, 3)) * SIGMA

            live = measurement_lines(site_scans(12.0, seed=100 + seed, drones=drone))
            toml = TOML + f'reflectors_file = "{tmp_path / "surv-reflectors.json"}"\n'
            confirmed = first_confirmed(_track(tmp_path, live, toml, capsys))
            hits = [t for t, p in confirmed.values() if np.linalg.norm(p - enu(target)[0]) < 60.0]
            waits.append(min(hits) - (T0 + 2.0) if hits else math.inf)
        times[name] = float(np.median(waits))
    assert times["alone"] < 1.0
    assert times["near"] <= times["alone"] + 2.5 / RATE_HZ, times


def test_a_recording_too_short_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _calibrate(tmp_path, measurement_lines(site_scans(10.0, seed=9)), capsys)
    assert rc == 1 and out == ""
    assert "refused: 100 scans of 'surv' in the input; at least 200 are needed (20 s at 10 Hz)" in err
    assert not (tmp_path / "surv-reflectors.json").exists()
    # Two short recordings an hour apart are a break, not 36 000 empty scans.
    first = measurement_lines(site_scans(8.0, seed=9))
    later = [
        json.dumps(doc | {"t_capture": doc["t_capture"] + 3600.0, "t_receive": doc["t_receive"] + 3600.0})
        for doc in map(json.loads, measurement_lines(site_scans(8.0, seed=10)))
    ]
    rc, out, err = _calibrate(tmp_path, first + later, capsys)
    assert rc == 1 and "refused: 160 scans of 'surv' in the input (1 breaks left out)" in err


def test_scans_without_a_line_are_counted_by_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A radar that sends nothing for a scan without plots (no `EmptyRadarScan`), at a quiet site:
    the scans are counted by time at its rate, so its reflectors' rates are what they are."""
    survey = site_scans(120.0, seed=13, false_alarms=0.3)
    rates = {}
    for empty_scans in (True, False):
        rc, out, err = _calibrate(tmp_path, measurement_lines(survey, empty_scans=empty_scans), capsys)
        assert rc == 0, err
        summary = json.loads(out)
        assert summary["scans"] == 1200
        rates[empty_scans] = summary["rates_per_scan"]
    assert rates[True] == rates[False]
    assert rates[True] == pytest.approx(sorted(REFLECTORS[:, 3], reverse=True), abs=0.05)


def test_a_file_given_twice_and_plots_stamped_apart_within_a_frame_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same survey file twice: its lines are counted once (and the duplicates said); a radar
    that stamps each plot of a frame a little apart: still one scan a frame (counted as many
    scans as plots, every rate came out at 0.44 of the truth)."""
    lines = measurement_lines(site_scans(60.0, seed=17))
    rc, out, err = _calibrate(tmp_path, lines, capsys)
    assert rc == 0, err
    once = json.loads(out)
    config = tmp_path / "site.toml"
    survey = tmp_path / "survey.jsonl"
    argv = ["calibrate", "radar-reflectors", "--config", str(config), "--sensor", "surv"]
    assert main([*argv, str(tmp_path / "twice.json"), str(survey), str(survey)]) == 0
    twice = json.loads(capsys.readouterr().out)
    assert twice["duplicates"] == len(lines) and twice["rates_per_scan"] == once["rates_per_scan"]
    stamped = []
    for k, line in enumerate(lines):
        doc = json.loads(line)
        stamped.append(json.dumps(doc | {"t_capture": doc["t_capture"] + 1e-4 * (k % 7)}))
    rc, out, err = _calibrate(tmp_path, stamped, capsys)
    assert rc == 0, err
    apart = json.loads(out)
    assert apart["scans"] == once["scans"] == 600
    assert apart["rates_per_scan"] == pytest.approx(once["rates_per_scan"], abs=0.01)
    assert "note: 60 s of survey; under 300 s a reflector" in err
    # A radar configured at 4 Hz whose frames come at 10: its frames are not merged, and it is said.
    rc, out, err = _calibrate(tmp_path, lines, capsys, TOML.replace(f"rate_hz = {RATE_HZ}", "rate_hz = 4.0"))
    assert rc == 0 and json.loads(out)["scans"] == 600
    assert "note: frames come every 0.1 s, rate_hz says 0.25 s" in err


def test_what_passed_through_the_survey_is_left_out_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A car on a road crossing the coverage during the survey: each place it passed shows in
    one tenth of the recording, not the site's; left out, and said."""

    def car(k: int, rng: np.random.Generator) -> np.ndarray:
        if not 100 <= k < 500:
            return np.zeros((0, 3))
        position = (-300.0 + 15.0 * (k - 100) / RATE_HZ, 900.0, 2.0)
        return at(position) + rng.normal(0.0, 1.0, (1, 3)) * SIGMA

    rc, out, err = _calibrate(tmp_path, measurement_lines(site_scans(180.0, seed=10, drones=car)), capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["passing"] >= 3 and summary["reflectors"] == len(REFLECTORS)
    assert "left out a spot at" in err and "something passing through" in err


def test_malformed_lines_are_named_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "site.toml"
    config.write_text(TOML)
    lines = measurement_lines(site_scans(30.0, seed=11))
    lines.insert(5, '{"type":"measurement","kind":"RadarDetection"')
    path = write(tmp_path / "survey.jsonl", lines)
    argv = ["calibrate", "radar-reflectors", "--config", str(config), "--sensor"]
    assert main([*argv, "surv", str(tmp_path / "map.json"), str(path)]) == 0
    assert f"{path}: line 6: not JSON" in capsys.readouterr().err
    assert main([*argv, "nowhere", str(tmp_path / "map.json"), str(path)]) == 78


RANGE_RATE_TOML = TOML.replace("false_alarms_per_scan = 5", "range_rate = true\nrange_rate_sigma_mps = 0.5")


def test_a_range_rate_radar_gets_a_map_of_four_rows_and_plots_without_it_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scans = site_scans(60.0, seed=14)
    rng = np.random.default_rng(14)
    lines = []
    for k, z in enumerate(scans):
        t = T0 + k / RATE_HZ
        for r, az, el in z.tolist():
            radial = float(rng.normal(0.0, 0.5))  # the reflectors stand still; so, here, does clutter
            m = RadarDetection("surv", t, t + 0.01, r, az, el, radial, 2.0, SIGMA[1], SIGMA[2], 0.5, 15.0)
            lines.append(wire.dumps(wire.measurement_record(m)))
    rc, _out, err = _calibrate(tmp_path, lines, capsys, RANGE_RATE_TOML)
    assert rc == 0, err
    site = json.loads((tmp_path / "surv-reflectors.json").read_text())
    assert site["dim"] == 4 and len(site["reflectors"]) == len(REFLECTORS) and site["sensor_id"] == "surv"
    rc, _out, err = _calibrate(tmp_path, measurement_lines(scans), capsys, RANGE_RATE_TOML)
    assert rc == 1 and "carry no range-rate, and the radar is configured to measure it" in err


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CUAS_")}
    return subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_map_that_cannot_be_used_stops_the_config_naming_the_sensor_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refusal by `track` and `config check`: the first as a user meets it (a process of its
    own, no traceback), the others in-process (the same code, without a start-up each)."""
    for name in [k for k in os.environ if k.upper().startswith("CUAS_")]:
        monkeypatch.delenv(name)
    site = SiteReflectors(np.array([[1000.0, 0.0, 0.0]]), np.diag(SIGMA**2)[None], np.array([0.5]))
    three = tmp_path / "three.json"
    three.write_text(json.dumps(site.to_dict()))
    four = SiteReflectors(
        np.array([[1000.0, 0.0, 0.0, 0.0]]), np.diag([*SIGMA**2, 0.25])[None], np.array([0.5])
    )
    other = tmp_path / "other.json"
    other.write_text(json.dumps(four.to_dict() | {"sensor_id": "other-radar"}))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    cases = {
        tmp_path / "missing.json": "cannot read it",
        garbage: "not JSON (Expecting property name",
        three: "learnt without range-rate, and this radar measures it",
        other: "learnt for sensor 'other-radar': learn this radar's own",
    }
    first = True
    for path, words in cases.items():
        config = tmp_path / "c.toml"
        config.write_text(RANGE_RATE_TOML + f'reflectors_file = "{path}"\n')
        for command in (("track", "--config", str(config), os.devnull), ("config", "check", str(config))):
            if first:
                done = _cli(*command)
                code, err, first = done.returncode, done.stderr, False
                assert "Traceback" not in err, err
            else:
                code, err = main(list(command)), capsys.readouterr().err
            assert code == 78 and f"sensor 'surv': reflectors_file {path}: {words}" in err, err
    # Without range-rate the same 3-row map is the radar's own.
    config = tmp_path / "c.toml"
    config.write_text(TOML + f'reflectors_file = "{three}"\n')
    assert main(["track", "--config", str(config), os.devnull]) == 0
