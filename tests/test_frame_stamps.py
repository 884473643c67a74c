"""A radar that looks at its whole coverage at once but stamps each plot as its extractor emits it
(a frame's plots milliseconds apart). Fused a capture time at a time, each plot was a look that
charged a miss to every other track, and no track confirmed (an outside test: 10 Hz, plots up
to 3 ms apart, no `tracks` message at all). Runs of times within an eighth of the period are one
frame (fusion/frame_stamps.py)."""

from __future__ import annotations

import io
import json
import math
import random
import tempfile
from pathlib import Path

import pytest

from cuas_node.cli import main
from cuas_node.config import load_config
from cuas_node.fusion.frame_stamps import FrameRuns
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.publish import wire
from cuas_node.track import Tracking

FRAME_TOML = """
[node]
id = "frame-test"
position = { lat = 52.0, lon = 4.0, alt_m = 0.0 }

[[sensors]]
kind = "radar"
id = "plots"
max_range_m = 1500
min_range_m = 20
fov_az_deg = 60
fov_el_deg = 20
range_sigma_m = 2
az_sigma_deg = 1.0
el_sigma_deg = 1.0
rate_hz = 10
false_alarms_per_scan = 5
range_rate = false
mount = { yaw_deg = 0.0, pitch_deg = 0.0, offset_m = [0.0, 0.0, 0.0] }
"""

T0 = 1_750_000_000.0
SIGMAS = (2.0, math.radians(1.0), math.radians(1.0))
TARGETS = ((400.0, -0.4, 10.0), (800.0, 0.0, -12.0), (1200.0, 0.4, 8.0))  # range, azimuth, speed across


def _frames(
    seconds: float, spread_s: float, seed: int = 4, sensor: str = "plots", offset_s: float = 0.0
) -> list[str]:
    """Three targets crossing the field of view and 5 false alarms a frame, 10 frames a second
    (Pd 0.9); each plot stamped `spread_s` × its place in the frame after the frame's instant
    (the plots come out of the extractor in random order)."""
    rng = random.Random(seed)
    lines = []
    for n in range(round(seconds * 10)):
        t = n / 10.0
        plots = [
            (r + rng.gauss(0, SIGMAS[0]), az + v * t / r + rng.gauss(0, SIGMAS[1]))
            for r, az, v in TARGETS
            if rng.random() < 0.9
        ]
        plots += [(rng.uniform(20, 1500), rng.uniform(-1.0, 1.0)) for _ in range(5)]
        rng.shuffle(plots)
        for k, (r, az) in enumerate(plots):
            stamp = T0 + t + offset_s + spread_s * k / len(plots)
            m = RadarDetection(
                sensor,
                stamp,
                stamp - T0 + 0.05,
                r,
                az,
                0.1 + rng.gauss(0, SIGMAS[2]),
                None,
                *SIGMAS,
                None,
                12.0,
            )
            lines.append(wire.dumps(wire.measurement_record(m)))
    return lines


def _tracking(lines: list[str], text: str = FRAME_TOML) -> Tracking:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "radar.toml"
        path.write_text(text)
        tracking = Tracking(load_config(path), io.StringIO())
    tracking.run(lines)
    return tracking


def _confirmed_tracks(tracking: Tracking) -> dict[str, list[tuple[float, list[float]]]]:
    assert isinstance(tracking.out, io.StringIO)
    seen: dict[str, list[tuple[float, list[float]]]] = {}
    for line in tracking.out.getvalue().splitlines():
        doc = json.loads(line)
        for tr in doc.get("tracks", []):
            if tr["status"] == "confirmed":
                seen.setdefault(tr["id"], []).append((doc["t"] - T0, tr["enu_m"]))
    return seen


def test_plots_stamped_apart_within_a_frame_are_tracked_as_one_frame() -> None:
    """Stamped up to 3 ms apart, the three targets get one confirmed track each, as soon and as
    close as with one stamp a frame, and nothing else is confirmed."""
    alike, apart = (_confirmed_tracks(_tracking(_frames(10.0, spread))) for spread in (0.0, 0.003))
    assert len(alike) == len(apart) == len(TARGETS)
    first = sorted(min(t for t, _ in rows) for rows in apart.values())
    assert first == pytest.approx(sorted(min(t for t, _ in rows) for rows in alike.values()), abs=0.11)
    for rows in apart.values():
        t, enu = rows[-1]
        r = math.hypot(enu[0], enu[1])
        assert any(
            abs(r - r0) < 15.0 and abs(math.atan2(enu[0], enu[1]) - az0 - v * t / r0) < 0.05
            for r0, az0, v in TARGETS
        )


def test_runs_of_stamps_take_their_frames_first_stamp() -> None:
    """A frame's later stamps join its first: within an eighth of the period, and a quarter of
    the silence before it."""
    runs = FrameRuns(0.0125)
    stamps = [10.0 + n / 10.0 + 0.001 * k for n in range(4) for k in range(3)]
    assert [runs.add(t) for t in stamps] == pytest.approx(
        [10.0 + n / 10.0 for n in range(4) for _ in range(3)]
    )
    assert runs.frames == 4 and runs.runs == 4


def test_evenly_spaced_frames_of_a_radar_set_too_slow_are_not_joined() -> None:
    """A 10 Hz radar configured at 1 Hz: its frames 100 ms apart lie within an eighth of the
    configured second, but come evenly, not as runs: each stays a frame (helper-85: joined in
    pairs, 6 track ids for 3 targets)."""
    runs = FrameRuns(0.125)
    stamps = [10.0 + n / 10.0 for n in range(50)]
    joined = [runs.add(t) for t in stamps]  # (its first two, before any silence was seen, are one)
    assert joined == [10.0, *stamps[:1], *stamps[2:]] and runs.frames == 49 and runs.runs == 1


def test_frames_a_second_count_frames_not_stamps() -> None:
    runs = FrameRuns(0.0125)
    for n in range(20):
        for k in (0, 2, 1, 3):  # (a late plot of the run joins it too)
            runs.add(n / 10.0 + 0.001 * k)
    assert runs.frames == 20 and runs.runs == 20
    assert runs.per_second() == pytest.approx(10.0)


def test_a_frame_delivered_in_any_order_is_one_run() -> None:
    """The plots of a frame delivered together in any order of their stamps (helper-86:
    shuffled lines, 406 scans for 150 frames, learnt Pd 0.36)."""
    lines = _frames(10.0, 0.003)
    frames: dict[float, list[str]] = {}
    for line in lines:
        frames.setdefault(round(json.loads(line)["t_receive"], 1), []).append(line)
    rng = random.Random(9)
    shuffled = [line for group in frames.values() for line in rng.sample(group, len(group))]
    tracking = _tracking(shuffled)
    assert tracking.core.engine.counters.scans <= 100 + 8
    assert len(_confirmed_tracks(tracking)) == len(TARGETS)


def test_a_frame_stays_one_scan_when_another_radars_frame_falls_among_its_plots() -> None:
    """Two radars stamping apart, the second's frames 1 ms after the first's: the plots of the two
    interleave in time, and each frame is still one look (helper-85: split at every switch of
    sensor, 1111 scans for 202, one target confirmed only after 4.5 s)."""
    second = FRAME_TOML.split("[[sensors]]")[1].replace('id = "plots"', 'id = "other"')
    text = FRAME_TOML + "\n[[sensors]]" + second
    lines = _frames(10.0, 0.003) + _frames(10.0, 0.003, sensor="other", offset_s=0.001, seed=5)
    lines.sort(key=lambda line: json.loads(line)["t_receive"])
    tracking = _tracking(lines, text)
    assert tracking.core.engine.counters.scans <= 2 * (100 + 8)  # a scan a frame (the first aside)
    firsts = sorted(min(t for t, _ in rows) for rows in _confirmed_tracks(tracking).values())
    assert len(firsts) == len(TARGETS) and firsts[-1] < 1.0  # both radars see the three


def test_track_names_a_radar_that_stamps_each_plot_and_does_not_call_it_a_scanning_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, path = tmp_path / "radar.toml", tmp_path / "plots.jsonl"
    config.write_text(FRAME_TOML)
    path.write_text("\n".join(_frames(4.0, 0.003)) + "\n")
    assert main(["track", "--config", str(config), str(path)]) == 0
    err = capsys.readouterr().err
    assert "radar 'plots': 40 of its 40 scans carried their plots' capture times apart (within 12 ms" in err
    assert "sweeps = true" not in err
