"""A scanning radar (`sweeps = true`): each plot stamped when the beam passed it, the coverage
looked at once a sweep (fusion/sweep.py). Fused as frames, each plot was a look at the whole
coverage that charged every other track a miss, and no track ever confirmed."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from cuas_node.cli import main
from cuas_node.fusion.sweep import SweepLooks
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.publish import wire

SWEEP_TOML = """
[node]
id = "sweep-test"
position = { lat = 52.0, lon = 4.0, alt_m = 0.0 }

[[sensors]]
kind = "radar"
id = "surv"
max_range_m = 5000
min_range_m = 200
fov_az_deg = 60
fov_el_deg = 20
range_sigma_m = 5
az_sigma_deg = 0.5
el_sigma_deg = 1.0
rate_hz = 1
false_alarms_per_scan = 10
sweeps = true
mount = { yaw_deg = 90.0, pitch_deg = 0.0, offset_m = [0.0, 0.0, 0.0] }
"""

T0 = 1_750_000_000.0
HALF = math.radians(60.0)
SIGMAS = (5.0, math.radians(0.5), math.radians(1.0))


def test_looks_come_once_a_period_from_the_first_plot_and_a_silence_restarts_them() -> None:
    looks = SweepLooks({"surv": 1.0})
    assert (
        looks.due(
            "surv",
            10.3,
        )
        == []
    )  # the first plot starts the count
    assert looks.due("surv", 10.9) == []
    assert looks.due("surv", 11.3) == [11.3]  # one period after the first plot: a whole sweep
    assert looks.due("surv", 12.0) == []
    assert looks.due("surv", 13.5) == [12.3, 13.3]  # a sweep without plots was a look too
    assert looks.due("surv", 16.0) == []  # silent for 2.5 sweeps: the radar may have been off
    assert looks.due("surv", 16.99) == []
    assert looks.due("surv", 17.0) == [17.0]


def _sweep_lines(vanish_at: float, seconds: int) -> tuple[list[str], list[tuple[float, float, float]]]:
    """Three targets 1.2-3 km out flying across the sector, one of which vanishes at `vanish_at`;
    the beam sweeps -60..+60 degrees once a second and each plot (Pd 0.9, and 10 false alarms a
    sweep) carries the time the beam passed it. Returns the lines in time order and the targets'
    (range, azimuth, speed across) at t = 0."""
    rng = random.Random(3)
    targets = [(1200.0, -0.6, 12.0), (2200.0, 0.1, -15.0), (3000.0, 0.5, 8.0)]
    plots: list[tuple[float, tuple[float, float, float]]] = []
    for sweep in range(seconds):
        for k, (r0, az0, v) in enumerate(targets):
            t_rel = sweep + (az0 + HALF) / (2 * HALF)  # when the beam passes it (it moves slowly)
            if (k == 2 and t_rel >= vanish_at) or rng.random() > 0.9:
                continue
            az = az0 + v * t_rel / r0
            t_rel = sweep + (az + HALF) / (2 * HALF)
            plots.append((t_rel, (r0 + rng.gauss(0, SIGMAS[0]), az + rng.gauss(0, SIGMAS[1]), 0.05)))
        for _ in range(10):
            az = rng.uniform(-HALF, HALF)
            plots.append(
                (sweep + (az + HALF) / (2 * HALF), (rng.uniform(200, 5000), az, rng.uniform(0, 0.3)))
            )
    lines = []
    for t_rel, (r, az, el) in sorted(plots):
        t = T0 + round(t_rel, 3)
        m = RadarDetection("surv", t, t + 0.2, r, az, el, None, *SIGMAS, None, 15.0)
        lines.append(wire.dumps(wire.measurement_record(m)))
    return lines, targets


def test_a_sweeping_radar_tracks_every_target_once_and_ends_a_vanished_ones_track(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, targets = _sweep_lines(vanish_at=20.0, seconds=40)
    config, path = tmp_path / "radar.toml", tmp_path / "plots.jsonl"
    config.write_text(SWEEP_TOML)
    path.write_text("\n".join(lines) + "\n")
    assert main(["track", "--config", str(config), str(path)]) == 0
    out, err = capsys.readouterr()
    assert "sweeps = true" not in err
    docs = [json.loads(line) for line in out.splitlines()]
    seen: dict[str, list[tuple[float, str, list[float]]]] = {}
    for doc in docs:
        for tr in doc.get("tracks", []) if doc["type"] == "tracks" else []:
            seen.setdefault(tr["id"], []).append((doc["t"] - T0, tr["status"], tr["enu_m"]))
    confirmed = {i: rows for i, rows in seen.items() if any(s == "confirmed" for _, s, _ in rows)}
    # One confirmed track per target, each near its target (the radar looks east: range and
    # azimuth from north-east-up).
    assert len(confirmed) == len(targets)
    starts = sorted(math.atan2(rows[0][2][1], rows[0][2][0]) for rows in confirmed.values())
    assert starts == pytest.approx(sorted(-az for _, az, _ in targets), abs=0.05)
    # Each confirmed within a few sweeps of the start; the vanished target's track deleted
    # after about the 8 missed sweeps that say it is gone at Pd 0.9 (not at the 40 s end).
    assert all(min(t for t, s, _ in rows if s == "confirmed") < 6.0 for rows in confirmed.values())
    ended = [rows[-1] for rows in confirmed.values() if rows[-1][1] == "deleted"]
    assert len(ended) == 1 and 20.0 + 6.0 < ended[0][0] < 20.0 + 14.0


def test_track_says_when_a_radars_plots_carry_far_more_times_than_its_scans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same sweeps described as a radar whose scans share one time: every plot a look, no
    track confirmed, and the summary names the radar and the setting that describes it."""
    lines, _ = _sweep_lines(vanish_at=20.0, seconds=40)
    config, path = tmp_path / "radar.toml", tmp_path / "plots.jsonl"
    config.write_text(SWEEP_TOML.replace("sweeps = true", "sweeps = false"))
    path.write_text("\n".join(lines) + "\n")
    assert main(["track", "--config", str(config), str(path)]) == 0
    out, err = capsys.readouterr()
    assert not any(
        tr["status"] == "confirmed" for line in out.splitlines() for tr in json.loads(line)["tracks"]
    )
    assert "radar 'surv': its plots carried" in err and "needs sweeps = true" in err
