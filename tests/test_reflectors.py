"""A site's fixed reflectors: learnt once with nothing flying (`calibrate radar-reflectors`), then
priced by the track score as the clutter they are (node/fusion/reflectors.py, docs/calibration.md).

The property that matters: with the map, reflectors that flicker start no confirmed track, while a
drone anywhere else (hovering from its first plot, dropping out) confirms as it does without it;
the map learns nothing from clutter however it varies with range, nor from what moves through
the coverage during the survey. Everything runs through the real commands (`calibrate`, `track`,
`config check`) on measurement lines, as a technician runs them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cuas_node.cli import main
from cuas_node.fusion.reflectors import FORMAT, SiteReflectors, learn_reflectors
from cuas_node.kernel.measurement import EmptyRadarScan, RadarDetection
from cuas_node.publish import wire

RATE_HZ = 10.0
SIGMA = np.array([2.0, math.radians(1.0), math.radians(1.0)])
RANGE_M, FOV_AZ, FOV_EL = (200.0, 2500.0), math.radians(60.0), math.radians(20.0)
VIEW = (RANGE_M[1] - RANGE_M[0], FOV_AZ, FOV_EL)
# range m, azimuth, elevation (the radar looks north), plots per scan: a mast to a faint tree.
REFLECTORS = np.array(
    [
        [650.0, -0.40, 0.010, 0.9],
        [1200.0, 0.30, 0.005, 0.5],
        [1800.0, -0.10, 0.004, 0.25],
        [2200.0, 0.60, 0.003, 0.1],
    ]
)
T0 = 1_750_000_000.0
TOML = f"""
[node]
id = "site"
position = {{ lat = 52.0, lon = 4.0, alt_m = 0.0 }}

[[sensors]]
kind = "radar"
id = "surv"
min_range_m = {RANGE_M[0]}
max_range_m = {RANGE_M[1]}
fov_az_deg = 60
fov_el_deg = 20
range_sigma_m = 2.0
az_sigma_deg = 1.0
el_sigma_deg = 1.0
rate_hz = {RATE_HZ}
false_alarms_per_scan = 5
"""


def _clutter(rng: np.random.Generator, mean: float, near_bias: float = 0.0) -> np.ndarray:
    """Uniform false alarms; with `near_bias`, that share of them in the nearest fifth of the range."""
    m = int(rng.poisson(mean))
    near = rng.random(m) < near_bias
    top = np.where(near, RANGE_M[0] + 0.2 * (RANGE_M[1] - RANGE_M[0]), RANGE_M[1])
    return np.column_stack(
        [rng.uniform(RANGE_M[0], top), rng.uniform(-FOV_AZ, FOV_AZ, m), rng.uniform(-FOV_EL, FOV_EL, m)]
    )


def _reflector_plots(rng: np.random.Generator) -> np.ndarray:
    seen = rng.random(len(REFLECTORS)) < REFLECTORS[:, 3]
    return REFLECTORS[seen, :3] + rng.normal(0.0, 1.0, (int(seen.sum()), 3)) * SIGMA


def _at(position: Sequence[float]) -> np.ndarray:
    east, north, up = position
    r = math.sqrt(east**2 + north**2 + up**2)
    return np.array([[r, math.atan2(east, north), math.asin(up / r)]])


def _scans(
    seconds: float, seed: int, *, reflectors: bool = True, drones: Any = None, clutter: float = 5.0
) -> list[np.ndarray]:
    """Each scan's plots (range, az, el). `drones(k, rng)`: the targets' plots of scan k."""
    rng = np.random.default_rng(seed)
    scans = []
    for k in range(round(seconds * RATE_HZ)):
        parts = [_clutter(rng, clutter)]
        if reflectors:
            parts.append(_reflector_plots(rng))
        if drones is not None:
            parts.append(drones(k, rng))
        scans.append(np.concatenate(parts))
    return scans


def _lines(scans: list[np.ndarray]) -> list[str]:
    out = []
    for k, z in enumerate(scans):
        t = T0 + k / RATE_HZ
        if not z.shape[0]:
            out.append(wire.dumps(wire.measurement_record(EmptyRadarScan("surv", t, t + 0.01))))
        for r, az, el in z.tolist():
            m = RadarDetection("surv", t, t + 0.01, r, az, el, None, 2.0, SIGMA[1], SIGMA[2], None, 15.0)
            out.append(wire.dumps(wire.measurement_record(m)))
    return out


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _enu(z: np.ndarray) -> np.ndarray:
    r, az, el = z[:, 0], z[:, 1], z[:, 2]
    return np.column_stack([r * np.cos(el) * np.sin(az), r * np.cos(el) * np.cos(az), r * np.sin(el)])


# -- learning: spots only where plots recur beyond the clutter around them --------------------
def _learn(scans: list[np.ndarray]) -> SiteReflectors:
    z = np.concatenate(scans)
    scan_of = np.repeat(np.arange(len(scans)), [s.shape[0] for s in scans])
    return learn_reflectors(z, scan_of, len(scans), SIGMA, VIEW)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clutter_alone_makes_no_spot_however_it_varies_with_range(seed: int) -> None:
    """Uniform false alarms, and the same with 60 % of them in the nearest fifth of the range
    (denser near the radar, as ground clutter is): a ring's own background, never a spot."""
    for bias in (0.0, 0.6):
        rng = np.random.default_rng([seed, int(bias * 10)])
        scans = [_clutter(rng, 30.0, bias) for _ in range(1200)]
        assert len(_learn(scans)) == 0, bias


def test_every_reflector_is_found_where_it_is_and_priced_at_its_busiest() -> None:
    site = _learn(_scans(60.0, seed=4, clutter=20.0))
    assert len(site) == len(REFLECTORS)
    order = np.argsort(site.mean[:, 0])
    assert np.all(np.abs(site.mean[order] - REFLECTORS[:, :3]) <= 0.3 * SIGMA), site.mean[order]
    # The busiest 20 scans' rate: at least the mean (the true rate, within sampling) and at most 1.
    assert np.all(site.rate[order] >= 0.8 * REFLECTORS[:, 3]) and np.all(site.rate <= 1.0)
    # Its scatter is the radar's noise, not the counting cells'.
    spread = np.sqrt(np.diagonal(site.cov, axis1=1, axis2=2))
    np.testing.assert_allclose(spread[order[:2]], np.tile(SIGMA, (2, 1)), rtol=0.3)


def test_a_reflector_in_bursts_is_priced_as_it_shows() -> None:
    """A reflector that shows every scan for 3 s in every 30 s (a door, a flag in gusts): its
    mean is 0.1 a scan, but while it shows it could confirm a track at 1 a scan."""
    rng = np.random.default_rng(5)
    scans = []
    for k in range(1800):
        z = _clutter(rng, 10.0)
        if k % 300 < 30:
            z = np.concatenate([z, REFLECTORS[:1, :3] + rng.normal(0.0, 1.0, (1, 3)) * SIGMA])
        scans.append(z)
    site = _learn(scans)
    assert len(site) == 1 and site.rate[0] == pytest.approx(1.0)


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
    # A 4-row detection of a 3-row map is refused where the model is made (other units).
    assert site.density(np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize("k", [1, 30, 400])
def test_density_sums_every_reflector_near_enough_to_matter(k: int) -> None:
    """Only the pairs close in range are evaluated (`_REACH_SIGMAS`): the sum is the full one,
    for 4-row maps, their 3-row marginal, correlated scatter and plots all round the azimuth."""
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
    site = _learn(_scans(30.0, seed=6))
    again = SiteReflectors.from_dict(json.loads(json.dumps(site.to_dict())))
    np.testing.assert_array_equal(again.mean, site.mean)
    np.testing.assert_array_equal(again.rate, site.rate)
    empty = SiteReflectors.from_dict({"format": FORMAT, "dim": 4, "reflectors": []})
    assert len(empty) == 0 and empty.dim == 4
    one = {"mean": [1000.0, 0.0, 0.0], "cov": np.diag(SIGMA**2).tolist(), "rate_per_scan": 0.5}
    bad = {
        "not a reflector map": {"format": "something else", "reflectors": []},
        "'reflectors' must be a list": {"format": FORMAT, "reflectors": {}},
        "needs 'mean', 'cov' and 'rate_per_scan'": {"format": FORMAT, "reflectors": [{"mean": [1, 2, 3]}]},
        "not positive definite": {"format": FORMAT, "reflectors": [one | {"cov": np.zeros((3, 3)).tolist()}]},
        "'cov' is D × D": {"format": FORMAT, "reflectors": [one | {"cov": [[1.0]]}]},
        "is a finite number >= 0": {"format": FORMAT, "reflectors": [one | {"rate_per_scan": -1}]},
    }  # fmt: skip
    for words, doc in bad.items():
        with pytest.raises(ValueError, match=words.replace("(", r"\(")):
            SiteReflectors.from_dict(doc)


# -- the procedure and the node, through the commands -----------------------------------------
def _calibrate(
    tmp_path: Path, scans: list[np.ndarray], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    config = tmp_path / "site.toml"
    config.write_text(TOML)
    lines = _write(tmp_path / "survey.jsonl", _lines(scans))
    out = tmp_path / "surv-reflectors.json"
    rc = main(
        ["calibrate", "radar-reflectors", "--config", str(config), "--sensor", "surv", str(out), str(lines)]
    )
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _confirmed_at(out: str) -> dict[str, np.ndarray]:
    """Each confirmed track's ENU position when it first confirmed."""
    first: dict[str, np.ndarray] = {}
    for line in out.splitlines():
        doc = json.loads(line)
        for tr in doc.get("tracks", []) if doc["type"] == "tracks" else []:
            if tr["status"] == "confirmed":
                first.setdefault(tr["id"], np.array(tr["enu_m"]))
    return first


HOVER = (300.0, 1500.0, 40.0)  # a drone hovering from its first plot, far from every reflector
CROSSING = (-900.0, 1000.0, 60.0)  # a drone flying east at 12 m/s across the site


def _drones(k: int, rng: np.random.Generator) -> np.ndarray:
    """The hovering drone, seen 80 % of scans but for two 3 s dropouts, and the crossing one."""
    plots = []
    if rng.random() < 0.8 and not (150 <= k < 180 or 400 <= k < 430):
        plots.append(_at(HOVER))
    if rng.random() < 0.8:
        plots.append(_at((CROSSING[0] + 12.0 * k / RATE_HZ, CROSSING[1], CROSSING[2])))
    plots = [p + rng.normal(0.0, 1.0, (1, 3)) * SIGMA for p in plots]
    return np.concatenate(plots) if plots else np.zeros((0, 3))


def test_with_the_map_reflectors_start_no_track_and_drones_confirm_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _calibrate(tmp_path, _scans(60.0, seed=7), capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["reflectors"] == len(REFLECTORS) and summary["moving_targets"] == 0
    assert summary["config"] == {"reflectors_file": str((tmp_path / "surv-reflectors.json").resolve())}

    lines = _write(tmp_path / "live.jsonl", _lines(_scans(60.0, seed=8, drones=_drones)))
    reflector_enu = _enu(REFLECTORS[:, :3])
    found = {}
    for with_map in (False, True):
        toml = TOML + (f'reflectors_file = "{tmp_path / "surv-reflectors.json"}"\n' if with_map else "")
        (tmp_path / "live.toml").write_text(toml)
        assert main(["track", "--config", str(tmp_path / "live.toml"), str(lines)]) == 0
        confirmed = _confirmed_at(capsys.readouterr().out)
        near = {i: float(np.linalg.norm(reflector_enu - p, axis=1).min()) for i, p in confirmed.items()}
        found[with_map] = (
            sum(d < 100.0 for d in near.values()),
            [p for p in confirmed.values() if np.linalg.norm(p - np.array(HOVER)) < 100.0],
        )
    without, with_map = found[False], found[True]
    assert without[0] >= 2  # the reflectors confirm tracks without the map (the test can fail)
    assert with_map[0] == 0
    # The hovering drone confirms with the map as without it: once, and again after each dropout
    # (as many times), never lost for good.
    assert len(with_map[1]) == len(without[1]) >= 1


def test_a_recording_too_short_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _calibrate(tmp_path, _scans(10.0, seed=9), capsys)
    assert rc == 1 and out == ""
    assert "refused: 100 scans of 'surv' in the input; at least 200 are needed (20 s at 10 Hz)" in err
    assert not (tmp_path / "surv-reflectors.json").exists()


def test_what_moved_through_the_survey_is_left_out_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A car on a road crossing the coverage during the survey: without its plots left out, its
    path would be learnt as a trail of reflectors."""

    def car(k: int, rng: np.random.Generator) -> np.ndarray:
        if not 100 <= k < 500:
            return np.zeros((0, 3))
        position = (-300.0 + 15.0 * (k - 100) / RATE_HZ, 900.0, 2.0)
        return _at(position) + rng.normal(0.0, 1.0, (1, 3)) * SIGMA

    rc, out, err = _calibrate(tmp_path, _scans(60.0, seed=10, drones=car), capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["moving_targets"] == 1 and summary["moving_target_plots"] >= 350
    assert summary["reflectors"] == len(REFLECTORS)
    assert "a target moved" in err and "its plots are left out of the map" in err


def test_malformed_lines_are_named_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "site.toml"
    config.write_text(TOML)
    lines = _lines(_scans(30.0, seed=11))
    lines.insert(5, '{"type":"measurement","kind":"RadarDetection"')
    path = _write(tmp_path / "survey.jsonl", lines)
    argv = ["calibrate", "radar-reflectors", "--config", str(config), "--sensor", "surv"]
    assert main([*argv, str(tmp_path / "map.json"), str(path)]) == 0
    assert f"{path}: line 6: not JSON" in capsys.readouterr().err
    assert main([*argv.copy()[:-1], "nowhere", str(tmp_path / "map.json"), str(path)]) == 78


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CUAS_")}
    return subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_map_that_cannot_be_used_stops_the_config_naming_the_sensor_and_file(tmp_path: Path) -> None:
    site = SiteReflectors(np.array([[1000.0, 0.0, 0.0]]), np.diag(SIGMA**2)[None], np.array([0.5]))
    three = tmp_path / "three.json"
    three.write_text(json.dumps(site.to_dict()))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    cases = {
        tmp_path / "missing.json": "cannot read it",
        garbage: "Expecting property name",
        three: "learnt without range-rate, and this radar measures it",
    }
    for path, words in cases.items():
        toml = TOML.replace("false_alarms_per_scan = 5", "range_rate = true\nrange_rate_sigma_mps = 0.5")
        config = tmp_path / "c.toml"
        config.write_text(toml + f'reflectors_file = "{path}"\n')
        for command in (("track", "--config", str(config), os.devnull), ("config", "check", str(config))):
            done = _cli(*command)
            assert done.returncode == 78 and "Traceback" not in done.stderr, done.stderr
            assert f"sensor 'surv': reflectors_file {path}: {words}" in done.stderr, done.stderr
    # Without range-rate the same 3-row map is the radar's own.
    config = tmp_path / "c.toml"
    config.write_text(TOML + f'reflectors_file = "{three}"\n')
    assert _cli("track", "--config", str(config), os.devnull).returncode == 0
