"""`cuas-node track`: measurement JSON lines through the node's fusion (docs/track.md).

The main property: fed the lines `replay` prints for a recording, with the recording's config,
`track` prints replay's tracks lines (the limits, which the lines cannot lift, are spelt out
below and in docs/track.md). Then the command: stdin, malformed lines, unknown kinds and sensors,
exit codes, a radar of another make described in a TOML config, and the virtual-time grid.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cuas_node.cli import main
from cuas_node.kernel.measurement import EmptyRadarScan, GpsFix, RadarDetection, RemoteIdReport
from cuas_node.publish import wire
from cuas_node.replay import GOLDEN_DIR, replay_to_string
from cuas_node.track import ORIGIN_WAIT_S, ArrivalGrid, Tracking
from cuas_node.track_cli import SHOWN_ERRORS, track_config

RECORDINGS = sorted(GOLDEN_DIR.glob("*.pcapng"))
DEMO = GOLDEN_DIR / "sim-demo.pcapng"
EXACT = {"radar-xwr1642-b", "gps-mt3339"}
"""Recordings whose last packet produced measurements: there `track` ends where replay ends, and
every line is identical. Elsewhere replay steps on through packets that produced none (a GPS
sentence without a fix, a radar frame without detections), which no measurement line shows: the
last `tracks` line (the end-of-input flush) then carries an earlier `t` in `track`."""


@pytest.fixture(scope="module")
def replayed() -> dict[str, list[str]]:
    """What `replay` prints for each recording (computed once for the module)."""
    return {rec.name: replay_to_string(rec).splitlines() for rec in RECORDINGS}


def _is_measurement(text: str) -> bool:
    return bool(json.loads(text)["type"] == "measurement")


def _track(config_source: Path, lines: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        config = track_config(config_source, Path(tmp))
        out = io.StringIO()
        Tracking(config, out).run(lines)
    return out.getvalue().splitlines()


def _without(text: str, *, t: bool = False, classes: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(text)
    if t:
        doc.pop("t")
    if classes:
        doc["tracks"] = [{k: v for k, v in tr.items() if k != "class"} for tr in doc["tracks"]]
    return doc


def test_every_line_replay_prints_validates_against_the_measurement_schema(
    replayed: dict[str, list[str]], schemas: dict[str, dict[str, Any]]
) -> None:
    measurement = jsonschema.Draft202012Validator(schemas["measurement"])
    tracks = jsonschema.Draft202012Validator(schemas["tracks"])
    kinds = set()
    for lines in replayed.values():
        for text in lines:
            doc = json.loads(text)
            if doc["type"] == "measurement":
                measurement.validate(doc)
                kinds.add(doc["kind"])
            else:
                tracks.validate(doc)
    assert kinds >= {"RadarDetection", "GpsFix", "RemoteIdReport", "RfPresence"}


@pytest.mark.parametrize("recording", RECORDINGS, ids=[r.name.removesuffix(".pcapng") for r in RECORDINGS])
def test_track_on_replays_lines_gives_replays_tracks(recording: Path, replayed: dict[str, list[str]]) -> None:
    """Record → replay prints measurements and tracks; `track` on that output (its tracks lines are
    ignored), with the recording's config, prints the same tracks lines."""
    name = recording.name.removesuffix(".pcapng")
    lines = replayed[recording.name]
    want = [text for text in lines if not _is_measurement(text)]
    got = _track(recording, lines)
    assert got == _track(recording, [text for text in lines if _is_measurement(text)])
    if name in EXACT:
        assert got == want
        return
    assert len(got) == len(want) > 0
    # The FPV scanner stamps a presence with its channel's sample time and hands it over at the end
    # of the sweep that confirms it, a cycle or more later, which the line does not show: `track`
    # fuses it in the cycle of the line before it, so the classification evidence may be applied a
    # cycle earlier. Kinematics and everything else stay identical.
    fpv = any('"kind":"RfPresence"' in text for text in lines)
    for a, b in zip(got[:-1], want[:-1], strict=True):
        if fpv:
            assert _without(a, classes=True) == _without(b, classes=True)
        else:
            assert a == b
    last_got, last_want = json.loads(got[-1]), json.loads(want[-1])
    assert _without(got[-1], t=True, classes=fpv) == _without(want[-1], t=True, classes=fpv)
    assert last_got["t"] < last_want["t"] <= last_got["t"] + 1.0


def test_output_streams_while_the_input_is_read(replayed: dict[str, list[str]]) -> None:
    """Tracks lines come out as cycles complete, not only at the end of input (`replay | track`)."""
    lines = [text for text in replayed[DEMO.name] if _is_measurement(text)]
    out = io.StringIO()
    seen_before_end: list[int] = []

    def feed() -> Any:
        for i, text in enumerate(lines):
            if i == len(lines) - 1:
                seen_before_end.append(len(out.getvalue().splitlines()))
            yield text

    with tempfile.TemporaryDirectory() as tmp:
        Tracking(track_config(DEMO, Path(tmp)), out).run(feed())
    assert seen_before_end[0] >= len(out.getvalue().splitlines()) - 2


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def demo_lines(replayed: dict[str, list[str]]) -> list[str]:
    return [text for text in replayed[DEMO.name] if _is_measurement(text)]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_command_on_a_file_and_on_stdin(
    tmp_path: Path,
    demo_lines: list[str],
    replayed: dict[str, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "demo.jsonl"
    path.write_text("\n".join(demo_lines) + "\n")
    assert main(["track", "--config", str(DEMO), str(path)]) == 0
    out, err = capsys.readouterr()
    expected = _track(DEMO, demo_lines)
    assert out.splitlines() == expected
    summary = [line for line in err.splitlines() if line.startswith("cuas-node track: ")]
    # Nothing skipped; fusion itself dropped the multipath images below the ground, and says so;
    # and what it learnt of the radar.
    assert len(summary) == 3, err
    assert "fusion could not use 34 of the measurements given to it (34 below ground;" in summary[1]
    # (The demo's drones, 100 m out, never fly 10 of the board's cross-range cells from where
    # they started: its Pd is the configured one, and the summary says so.)
    assert re.fullmatch(
        r"cuas-node track: radar 'radar-1': Pd not learnt \(no track it saw moved 10 of its cells: "
        r"fusion\.detection_probability stands\), \d\.\d false alarms a scan",
        summary[2],
    )
    empty = sum('"kind":"EmptyRadarScan"' in line for line in demo_lines)
    assert empty > 0  # the demo radar's frames are not all busy
    assert (
        f"{len(demo_lines)} lines read, {len(demo_lines)} measurements given to fusion ({empty} of them "
        f"empty radar scans), {len(expected)} tracks messages" in summary[0]
    )
    assert "measurements/s" in summary[0] and " s (" in summary[0]
    for argv in (["track", "--config", str(DEMO), "-"], ["track", "--config", str(DEMO)]):
        _stdin(monkeypatch, path.read_bytes())
        assert main(argv) == 0
        assert capsys.readouterr().out.splitlines() == expected


def test_malformed_lines_unknown_kinds_and_sensors_are_reported_and_skipped(
    tmp_path: Path, demo_lines: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    radar = json.loads(next(text for text in demo_lines if '"RadarDetection"' in text))
    bad = [
        "{not json",
        "[1]",
        json.dumps(dict(radar, range_m="far")),
        json.dumps(dict(radar, t_capture=None)),
    ]
    bad += [json.dumps({k: v for k, v in radar.items() if k != "az_rad"})] * (SHOWN_ERRORS + 1)
    extra = [
        json.dumps({"type": "measurement", "kind": "LidarPoint", "sensor_id": "lidar"}),
        json.dumps(dict(radar, sensor_id="radar-9")),
        json.dumps(dict(radar, sensor_id="gps")),  # a radar detection from the GPS receiver
        "",
        json.dumps({"type": "tracks", "tracks": []}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(bad + extra + demo_lines) + "\n")
    assert main(["track", "--config", str(DEMO), str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == _track(DEMO, demo_lines)  # the bad lines changed nothing
    reported = [line for line in err.splitlines() if line.startswith("cuas-node track: line ")]
    assert len(reported) == SHOWN_ERRORS
    assert reported[0].startswith("cuas-node track: line 1: not JSON: ")
    assert reported[1] == "cuas-node track: line 2: not a JSON object: a JSON array"
    assert reported[2] == "cuas-node track: line 3: wrong type: range_m must be a number, not a string"
    assert reported[3] == "cuas-node track: line 4: wrong type: t_capture must be a number, not null"
    assert reported[4] == "cuas-node track: line 5: missing field: az_rad"
    total = len(bad)
    assert f"cuas-node track: ... and {total - SHOWN_ERRORS} more malformed lines" in err
    assert (
        f"{len(bad) + len(extra) + len(demo_lines)} lines read, {len(demo_lines)} measurements given to "
        "fusion" in err
    )
    assert (
        f"skipped {total} malformed lines (missing field: {SHOWN_ERRORS + 1}, wrong type: 2, not JSON: 1, "
        "not a JSON object: 1)" in err
    )
    assert "skipped 1 measurements of unknown kinds (LidarPoint: 1)" in err
    assert (
        "skipped 1 measurements of sensors not in the config or disabled (radar-9: 1; configured: gps, "
        "radar-1)" in err
    )
    assert (
        "skipped 1 measurements of a kind their sensor does not produce (RadarDetection from gps: 1)" in err
    )


def test_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = tmp_path / "in.jsonl"
    lines.write_text("")
    assert main(["track", "--config", str(DEMO), str(tmp_path / "missing.jsonl")]) == 66
    assert "cannot read" in capsys.readouterr().err
    assert main(["track", "--config", str(DEMO), str(tmp_path)]) == 66  # a directory
    capsys.readouterr()
    assert main(["track", "--config", str(tmp_path / "missing.toml"), str(lines)]) == 78
    assert "file not found" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[node\n")
    assert main(["track", "--config", str(broken), str(lines)]) == 78
    assert "TOML syntax error" in capsys.readouterr().err
    not_a_recording = tmp_path / "cut.pcapng"
    not_a_recording.write_bytes(DEMO.read_bytes()[:2000])
    assert main(["track", "--config", str(not_a_recording), str(lines)]) == 78
    capsys.readouterr()
    monkeypatch.delenv("CUAS_CONFIG", raising=False)
    assert main(["track", str(lines)]) == 2
    assert "give --config FILE" in capsys.readouterr().err
    monkeypatch.setenv("CUAS_CONFIG", str(DEMO))
    assert main(["track", str(lines)]) == 0  # $CUAS_CONFIG stands in for --config
    out, err = capsys.readouterr()
    assert out == "" and "0 lines read, 0 measurements given to fusion, 0 tracks messages" in err


RADAR_TOML = """
[node]
id = "bench"
position = { lat = 52.0, lon = 4.0, alt_m = 0.0 }

[[sensors]]
kind = "radar"
id = "surv"
max_range_m = 2500
range_sigma_m = 2.0
az_sigma_deg = 1.0
el_sigma_deg = 1.0
rate_hz = 10
mount = { yaw_deg = 90 }

[[zones]]
id = "east"
level = "critical"
polygon = [[51.99, 4.0], [52.01, 4.0], [52.01, 4.05], [51.99, 4.05]]
classes = ["multirotor", "fixed_wing", "unknown", "bird", "aircraft"]
"""


def _northbound(times: list[tuple[float, float]]) -> str:
    """The lines of a radar looking east (`RADAR_TOML`) at a target 800 m east and 100 m up flying
    north, a metre between plots: one plot at each (t_capture, t_receive)."""
    plots = []
    for k, (t_capture, t_receive) in enumerate(times):
        east, north, up = 800.0, -50.0 + k, 100.0
        rng = math.sqrt(east**2 + north**2 + up**2)
        m = RadarDetection(
            "surv", t_capture, t_receive, rng, math.atan2(-north, east), math.asin(up / rng),
            None, 2.0, 0.017, 0.017, None, 15.0,
        )  # fmt: skip
        plots.append(wire.dumps(wire.measurement_record(m)))
    return "\n".join(plots) + "\n"


def test_another_radars_plots_with_a_toml_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The use docs/track.md describes: plots of a radar the node has no driver for (here a target
    flying north at 10 m/s, 800 m east of a radar looking east, without range-rate), a config
    naming that radar, and tracks and zone alerts out."""
    config = tmp_path / "radar.toml"
    config.write_text(RADAR_TOML)
    t0 = 1_750_000_000.0
    path = tmp_path / "plots.jsonl"
    path.write_text(_northbound([(t0 + k * 0.1, 12.0 + k * 0.1) for k in range(100)]))
    assert main(["track", "--config", str(config), str(path)]) == 0
    out, err = capsys.readouterr()
    docs = [json.loads(line) for line in out.splitlines()]
    assert "100 measurements given to fusion" in err
    tracks = [d for d in docs if d["type"] == "tracks"]
    alerts = [d for d in docs if d["type"] == "alert"]
    final = tracks[-1]["tracks"]
    assert [tr["id"] for tr in final] == ["0.1"] and final[0]["status"] == "confirmed"
    assert final[0]["enu_m"] == pytest.approx([800.0, 49.0, 100.0], abs=5.0)
    assert final[0]["vel_enu_mps"] == pytest.approx([0.0, 10.0, 0.0], abs=1.0)
    assert [a["state"] for a in alerts][:1] == ["new"] and alerts[0]["alert_id"].startswith("0.1@east#")
    assert [d["seq"] for d in tracks] == list(range(1, len(tracks) + 1))
    # Steps at t0 - 12 s (the receive clock's zero) + k·50 ms; the last at the last plot's arrival.
    assert tracks[-1]["t"] == pytest.approx(t0 + 9.9, abs=1e-6)


@pytest.mark.parametrize("unit", [1.0, 1000.0, "passes"])
def test_capture_times_in_milliseconds_are_named_as_the_likely_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unit: float | str
) -> None:
    """An outside user's likeliest stamp mistake: `t_capture` in milliseconds. Every scan is then
    1000 of its periods from the next, nothing confirms, and the summary says what to check; in
    seconds it says nothing of the kind, nor for a log that holds only a radar's scans with plots
    (here four passes of 25 scans, 20 minutes apart: sparse on average, not scan by scan)."""
    config = tmp_path / "radar.toml"
    config.write_text(RADAR_TOML)
    t0, times = 1_750_000_000.0, []
    for k in range(100):
        t = t0 + k * 0.1 if unit != "passes" else t0 + (k // 25) * 1200.0 + (k % 25) * 0.1
        times.append((t * (unit if unit != "passes" else 1.0), t - t0 + 12.0))
    path = tmp_path / "plots.jsonl"
    path.write_text(_northbound(times))
    assert main(["track", "--config", str(config), str(path)]) == 0
    out, err = capsys.readouterr()
    confirmed = [tr for line in out.splitlines() for tr in json.loads(line).get("tracks", [])]
    assert any(tr["status"] == "confirmed" for tr in confirmed) == (unit != 1000.0)
    said = "capture times in milliseconds or another unit?" in err
    assert said == (unit == 1000.0), err
    # (said at once too, as the 20th such time comes: such a log can take long to fuse)
    assert err.count("20 capture times so far, never two within 100 s") == int(said)
    if said:
        assert (
            "radar 'surv': its plots carried 100 capture times, never two within 100 s, for rate_hz = 10"
            in err
        )


def test_plots_beyond_the_configured_coverage_are_counted_and_a_track_on_the_edge_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target sitting 3 m past the configured range (1.5 σ: a radar sees a little past its
    nominal coverage) is detected every scan: its track stays one track (it was deleted and born
    again every 1.3 s, judged unfed while its next plot waited in the reorder window). Plots far
    beyond the coverage or at an azimuth given in degrees are fused but counted, and the summary
    says so."""
    config = tmp_path / "radar.toml"
    config.write_text(RADAR_TOML)
    t0 = 1_750_000_000.0
    edge_plots, stray_plots = [], []
    for k in range(60):
        t, arrived = t0 + k * 0.1, 12.0 + k * 0.1
        sig = (2.0, 0.017, 0.017, None, 15.0)
        edge = RadarDetection("surv", t, arrived, 2503.0, -0.3, 0.1, None, *sig)
        beyond = RadarDetection("surv", t, arrived, 7000.0 + k, 0.1, 0.05, None, *sig)
        degrees = RadarDetection("surv", t, arrived, 900.0, 30.0, 0.05, None, *sig)
        edge_plots.append(wire.dumps(wire.measurement_record(edge)))
        stray_plots += [wire.dumps(wire.measurement_record(m)) for m in (beyond, degrees)]
    path = tmp_path / "edge.jsonl"
    path.write_text("\n".join(edge_plots) + "\n")
    assert main(["track", "--config", str(config), str(path)]) == 0
    out, err = capsys.readouterr()
    assert "beyond their radar's configured coverage" not in err
    tracks = [json.loads(line) for line in out.splitlines() if json.loads(line)["type"] == "tracks"]
    assert {tr["id"] for doc in tracks for tr in doc["tracks"]} == {"0.1"}
    assert all(tr["status"] == "confirmed" for doc in tracks for tr in doc["tracks"])
    path = tmp_path / "stray.jsonl"
    path.write_text("\n".join(stray_plots) + "\n")
    assert main(["track", "--config", str(config), str(path)]) == 0
    err = capsys.readouterr().err
    assert "120 radar detections lay beyond their radar's configured coverage" in err


PLOT_SIGMAS = (2.0, 0.017, 0.017, None, 15.0)  # a 3-D radar's plot: range m, az, el rad, no range-rate


def _track_lines(tmp_path: Path, toml: str, lines: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """`track`'s stdout for measurement lines under a config."""
    config, path = tmp_path / "radar.toml", tmp_path / "lines.jsonl"
    config.write_text(toml)
    path.write_text("\n".join(lines) + "\n")
    assert main(["track", "--config", str(config), str(path)]) == 0
    return capsys.readouterr().out


def _last_seen(out: str) -> dict[str, tuple[float, str]]:
    """Per track id: the time of the last tracks message that held it, and its status there."""
    last: dict[str, tuple[float, str]] = {}
    for line in out.splitlines():
        doc = json.loads(line)
        for tr in doc.get("tracks", []) if doc["type"] == "tracks" else []:
            last[tr["id"]] = (doc["t"], tr["status"])
    return last


def test_empty_radar_frames_end_a_vanished_targets_track_in_a_quiet_sky(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One target, no clutter: seen for 3 s, then gone while the radar keeps scanning. The empty
    frames (`EmptyRadarScan`, as the TI driver prints them) are looks that saw nothing: the track
    is charged its misses and deleted within a second. Without them a quiet sky is silence, and
    the track is published (coasting) until the 3 s timeout."""
    t0, sig = 1_750_000_000.0, PLOT_SIGMAS
    with_looks, plots_only = [], []
    for k in range(80):
        t, arrived = t0 + k * 0.1, 12.0 + k * 0.1
        if k < 30:
            m: RadarDetection | EmptyRadarScan = RadarDetection(
                "surv", t, arrived, 900.0 + 2.0 * k * 0.1, 0.2, 0.1, None, *sig
            )
        elif k < 79:
            m = EmptyRadarScan("surv", t, arrived)
        else:  # a stray plot far away, so that time runs on in both inputs
            m = RadarDetection("surv", t, arrived, 2000.0, -0.5, 0.1, None, *sig)
        line = wire.dumps(wire.measurement_record(m))
        with_looks.append(line)
        plots_only += [] if isinstance(m, EmptyRadarScan) else [line]
    gone = t0 + 2.9
    ends = {
        name: _last_seen(_track_lines(tmp_path, RADAR_TOML, lines, capsys))["0.1"]
        for name, lines in (("looks", with_looks), ("plots", plots_only))
    }
    t_end, status = ends["looks"]
    assert status == "deleted" and t_end - gone < 1.0
    t_end, status = ends["plots"]
    assert t_end - gone > 2.5  # published on until its timeout


def test_a_slow_radar_keeps_its_track_through_a_run_of_misses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1 Hz radar that misses its target 4 scans running (at Pd 0.7 that happens every minute or
    so): one track throughout. Deleting by time after `delete_after_s` (3 s = 3 scans) broke it into
    a new identity every time; the timeout now waits as long as the misses-in-view rule would."""
    t0, sig = 1_750_000_000.0, PLOT_SIGMAS
    lines = []
    for k in range(60):
        t, arrived = t0 + k, 12.0 + k
        seen = k % 14 < 10  # 10 scans seen, 4 missed, over and over
        m = RadarDetection("surv", t, arrived, 1200.0 + 5.0 * k, 0.2, 0.1, None, *sig) if seen else None
        lines.append(wire.dumps(wire.measurement_record(m or EmptyRadarScan("surv", t, arrived))))
    slow = RADAR_TOML.replace("rate_hz = 10", "rate_hz = 1")
    assert set(_last_seen(_track_lines(tmp_path, slow, lines, capsys))) == {"0.1"}


def test_a_slow_radars_track_that_flew_out_of_its_coverage_ends_after_a_period_and_a_half(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A radar scanning every 4 s; its target flies straight out past the maximum range at 40 m/s
    (160 m a scan). The track is asked whether it left the coverage once unfed for 1.5 periods
    (`management._PERIODS`; `track` steps between the scans), so it ends 6 s after its last
    plot, not 12 s or more later as a track timed out inside the coverage would (3 periods and
    the misses-in-view patience)."""
    t0, sig, period = 1_750_000_000.0, PLOT_SIGMAS, 4.0
    lines, last_hit = [], 0.0
    for k in range(16):
        t, arrived = t0 + period * k, 12.0 + period * k
        r = 1000.0 + 160.0 * k
        if r <= 2500.0:
            last_hit = t
            m: RadarDetection | EmptyRadarScan = RadarDetection("surv", t, arrived, r, 0.2, 0.05, None, *sig)
        else:
            m = EmptyRadarScan("surv", t, arrived)
        lines.append(wire.dumps(wire.measurement_record(m)))
    slow = RADAR_TOML.replace("rate_hz = 10", "rate_hz = 0.25")
    out = _track_lines(tmp_path, slow, lines, capsys)
    ended = [
        json.loads(line)["t"]
        for line in out.splitlines()
        if any(tr["status"] == "deleted" for tr in json.loads(line).get("tracks", []))
    ]
    confirmed = [
        json.loads(line)["t"]
        for line in out.splitlines()
        if any(tr["status"] == "confirmed" for tr in json.loads(line).get("tracks", []))
    ]
    assert confirmed and min(confirmed) < last_hit  # it was a confirmed track
    assert ended == [pytest.approx(last_hit + 1.5 * period, abs=0.5)]


def test_clutter_in_a_lost_tracks_gate_neither_confirms_it_again_nor_keeps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1 Hz radar with 40 false alarms a scan: a target tracked for 20 s vanishes, and every third
    scan a false alarm falls near where it would be (3.5 σ off in azimuth). Each such plot was a
    hit that confirmed the coasting track again and started its count of misses afresh, so it was
    published `confirmed` until the end of the input; such a plot's gain is far below what the
    misses before it cost, so the track stays coasting and is deleted (issue 15)."""
    t0, sig = 1_750_000_000.0, PLOT_SIGMAS
    rng = random.Random(5)
    lines = []
    for k in range(70):
        t, arrived = t0 + k, 12.0 + k
        plots = [
            RadarDetection(
                "surv",
                t,
                arrived,
                rng.uniform(100, 2500),
                rng.uniform(-1, 1),
                rng.uniform(-0.3, 0.5),
                None,
                *sig,
            )
            for _ in range(40)
        ]
        if k < 20 or k % 3 == 0:
            az = 0.2 if k < 20 else 0.2 + (-1) ** k * 3.5 * sig[1]
            plots.append(RadarDetection("surv", t, arrived, 1200.0 + 5.0 * k, az, 0.1, None, *sig))
        lines += [wire.dumps(wire.measurement_record(m)) for m in plots]
    out = _track_lines(tmp_path, RADAR_TOML.replace("rate_hz = 10", "rate_hz = 1"), lines, capsys)
    statuses: dict[str, list[tuple[float, str]]] = {}
    for line in out.splitlines():
        doc = json.loads(line)
        for tr in doc.get("tracks", []):
            statuses.setdefault(tr["id"], []).append((doc["t"] - t0, tr["status"]))
    target = [i for i, seen in statuses.items() if any(t < 20 and s == "confirmed" for t, s in seen)]
    assert len(target) == 1
    after = [s for t, s in statuses[target[0]] if t > 20]
    assert "coasting" in after and after[-1] == "deleted"
    assert "confirmed" not in after[after.index("coasting") :]


def test_a_quiet_start_keeps_tracks_on_the_radars_clock_not_a_gps_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """12 s of empty radar scans, then a target for 8 s, with a GPS whose clock runs 2 s ahead of
    the node's: the empty scans are stamped on the node's clock, so `track` takes its cycle clock
    from them, as from plots. (Not counted as node-stamped, the GPS's clock set the cycles and
    the target was never published.)"""
    toml = RADAR_TOML + '\n[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "/dev/null"\n'
    t0, lines = 1_750_000_000.0, []
    for k in range(250):
        t, arrived = t0 + k * 0.1, 12.0 + k * 0.1
        if 120 <= k < 200:
            m: RadarDetection | EmptyRadarScan = RadarDetection(
                "surv", t, arrived, 900.0 + 0.2 * (k - 120), 0.2, 0.1, None, *PLOT_SIGMAS
            )
        else:
            m = EmptyRadarScan("surv", t, arrived)
        lines.append(wire.dumps(wire.measurement_record(m)))
        if k % 10 == 0:
            fix = GpsFix("gps", t + 2.0, arrived, 52.0, 4.0, 0.0, 0.0, 1, 8, 1.0)
            lines.append(wire.dumps(wire.measurement_record(fix)))
    statuses = {
        tr["status"]
        for line in _track_lines(tmp_path, toml, lines, capsys).splitlines()
        for tr in json.loads(line).get("tracks", [])
    }
    assert "confirmed" in statuses


def test_a_remote_id_track_ends_at_the_timeout_when_its_broadcasts_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wait for the misses-in-view rule is a radar's: Remote ID reports are not looks (no
    misses, no learnt Pd), so a Remote ID track whose 1 Hz broadcasts stop is deleted at
    `delete_after_s` (3 s), not after the 8 s a 1 Hz radar at the prior Pd 0.9 would need."""
    toml = (
        RADAR_TOML.split("[[sensors]]")[0]
        + '[[sensors]]\nkind = "remoteid"\nid = "rid"\nport = "/dev/null"\n'
    )
    t0, lines = 1_750_000_000.0, []
    for k in range(40):  # the drone broadcasts for 20 s; another, far away, keeps time running
        t = t0 + k
        near = k < 20
        report = RemoteIdReport(
            "rid",
            t,
            12.0 + k,
            "DRONE1" if near else f"OTHER{k}",
            lat=52.001 + 1e-5 * k if near else 52.02,
            lon=4.001 if near else 4.02 + 1e-4 * k,
            alt_geo_m=60.0,
            h_accuracy_m=3.0,
            v_accuracy_m=4.0,
            time_utc=t,
        )
        lines.append(wire.dumps(wire.measurement_record(report)))
    t_end, status = _last_seen(_track_lines(tmp_path, toml, lines, capsys))["0.1"]
    assert status == "deleted" and t_end - (t0 + 19) < 4.0


def test_an_empty_scan_line_beside_the_same_frames_plots_is_not_a_second_look(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One frame, one look: an `EmptyRadarScan` sent with the capture time of plots of the same
    radar (before or after them) changes nothing; counted as a second look it charged the track
    a miss each scan and changed what was published."""
    t0, sig = 1_750_000_000.0, PLOT_SIGMAS
    plain, doubled = [], []
    for k in range(30):
        t, arrived = t0 + k * 0.1, 12.0 + k * 0.1
        plot = wire.dumps(
            wire.measurement_record(RadarDetection("surv", t, arrived, 900.0, 0.2, 0.1, None, *sig))
        )
        empty = wire.dumps(wire.measurement_record(EmptyRadarScan("surv", t, arrived)))
        plain.append(plot)
        doubled += [empty, plot] if k % 2 else [plot, empty]
    outs = [_track_lines(tmp_path, RADAR_TOML, lines, capsys) for lines in (plain, doubled)]
    assert outs[1] == outs[0] and "confirmed" in outs[0]


# -- the virtual-time grid ------------------------------------------------------------------------


def _radar(t_capture: float, t_receive: float) -> RadarDetection:
    return RadarDetection("r", t_capture, t_receive, 100.0, 0.0, 0.0, 0.0, 1.0, 0.01, 0.01, 0.1, 10.0)


def _gps(t_capture: float, t_receive: float) -> GpsFix:
    return GpsFix("g", t_capture, t_receive, 52.0, 4.0, 0.0, 0.0, 1)


def test_grid_cycles_follow_replays() -> None:
    """Cycle k takes receive times in ((k-1)·50 ms, k·50 ms], the first also 0; a step's time is
    the receive clock's zero in UTC (t_capture - t_receive of a radar) plus k·50 ms."""
    grid = ArrivalGrid()
    origin = 1_700_000_000.0
    a, b, c, d = (_radar(origin + r, r) for r in (0.0, 0.05, 0.0501, 0.2))
    assert list(grid.add(a)) == [] and list(grid.add(b)) == []
    assert list(grid.add(c)) == [(origin + 0.05, [a, b])]
    late = _radar(origin, 0.01)  # out of order: joins the open cycle
    assert list(grid.add(late)) == []
    assert list(grid.add(d)) == [(origin + 0.10, [c, late]), (origin + 0.15, [])]
    assert list(grid.end()) == [(origin + 0.20, [d])]
    assert list(grid.end()) == []  # ending twice hands out nothing new


def test_grid_waits_for_a_node_stamped_measurement_before_stepping() -> None:
    """A GPS fix's capture time is the receiver's: the grid's origin comes from a radar's line,
    also for the cycles before it."""
    grid = ArrivalGrid()
    origin = 1_700_000_000.0
    fix = _gps(origin - 1.0, 0.02)  # a second behind, as NMEA time is
    assert list(grid.add(fix)) == []
    radar = _radar(origin + 0.12, 0.12)
    assert list(grid.add(radar)) == [(origin + 0.05, [fix]), (origin + 0.10, [])]


def test_grid_falls_back_on_any_kind_without_node_stamped_ones() -> None:
    """Only GPS (or Remote ID) lines: after ORIGIN_WAIT_S of receive time, or at the end of input,
    the largest t_capture - t_receive of any kind is the origin."""
    grid = ArrivalGrid()
    origin = 1_700_000_000.0
    assert list(grid.add(_gps(origin + 0.01, 0.01))) == []
    assert list(grid.add(_gps(origin + 1.0, 1.0))) == []  # waiting
    # A line 10 s on waits for the next (a gap, or a line off on its own?): the next says a gap.
    assert list(grid.add(_gps(origin + ORIGIN_WAIT_S + 1.0, ORIGIN_WAIT_S + 1.0))) == []
    cycles = list(grid.add(_gps(origin + ORIGIN_WAIT_S + 1.01, ORIGIN_WAIT_S + 1.01)))
    assert len(cycles) == round((ORIGIN_WAIT_S + 1.0) / 0.05)  # all but the open one
    assert cycles[0][0] == pytest.approx(origin + 0.05, abs=1e-6) and len(cycles[0][1]) == 1
    assert cycles[-1][0] == pytest.approx(origin + ORIGIN_WAIT_S + 1.0, abs=1e-6) and len(cycles[-1][1]) == 1
    short = ArrivalGrid()
    fix = _gps(origin + 0.01, 0.01)
    assert list(short.add(fix)) == []
    assert list(short.end()) == [(pytest.approx(origin + 0.05, abs=1e-6), [fix])]


def _flight(t0: float, receive0: float) -> list[str]:
    """10 s of the target of `test_another_radars_plots_with_a_toml_config`, from t0."""
    plots = []
    for k in range(100):
        east, north, up = 800.0, -50.0 + k, 100.0
        rng = math.sqrt(east**2 + north**2 + up**2)
        m = RadarDetection(
            "surv", t0 + k * 0.1, receive0 + k * 0.1, rng, math.atan2(-north, east), math.asin(up / rng),
            None, 2.0, 0.017, 0.017, None, 15.0,
        )  # fmt: skip
        plots.append(wire.dumps(wire.measurement_record(m)))
    return plots


def test_a_gap_between_lines_is_jumped_while_nothing_would_happen(tmp_path: Path) -> None:
    """Found from outside: a log whose `t_receive` jumps a day ahead (a clock step, a glitch)
    made `track` step 1.7 million empty cycles, minutes of CPU (1e18: for ever). Empty cycles are
    skipped once no track is left to coast or delete: the output is the same as stepping them all
    (checked on a two-minute gap), and a day's gap costs two cycles."""
    path = tmp_path / "radar.toml"
    path.write_text(RADAR_TOML)
    t0 = 1_750_000_000.0
    two_minutes = _flight(t0, 0.0) + _flight(t0 + 120.0, 120.0)

    def run(lines: list[str], skip: bool) -> tuple[list[str], int]:
        tracking = Tracking(track_config(path, tmp_path), out := io.StringIO())
        if not skip:
            tracking.grid.idle = None
        stats = tracking.run(lines)
        return out.getvalue().splitlines(), stats.cycles

    (skipped, few), (stepped, all_cycles) = run(two_minutes, True), run(two_minutes, False)
    assert skipped == stepped and sum('"deleted"' in line for line in skipped) == 1
    assert all_cycles > 2_400 and few < all_cycles / 4
    day = _flight(t0, 0.0) + _flight(t0 + 86_400.0, 86_400.0)
    lines, cycles = run(day, True)
    assert cycles == few and len(lines) == len(skipped)  # the same messages, a day later


def test_a_log_whose_clock_steps_back_keeps_its_tracks_coming(tmp_path: Path) -> None:
    """A log kept on a wall clock that NTP set back an hour mid-flight (`t_receive` = `t_capture`,
    as docs/track.md allows). Such lines used to join the cycle open before the step, all of them
    to the end of input: one `tracks` message at the end for the whole second half. Now the
    cycles go back with the clock and the core step restarts as the node does (docs/reliability.md)."""
    path = tmp_path / "radar.toml"
    path.write_text(RADAR_TOML)
    t0 = 1_750_000_000.0
    lines = _flight(t0, t0) + _flight(t0 + 10.0 - 3600.0, t0 + 10.0 - 3600.0)
    tracking = Tracking(track_config(path, tmp_path), out := io.StringIO())
    tracking.run(lines)
    tracks = [json.loads(line) for line in out.getvalue().splitlines() if '"tracks"' in line]
    after = [d for d in tracks if d["t"] < t0]
    assert len(after) > 30, "messages keep coming after the step"
    assert tracking.core.clock_steps == 1
    assert any(tr["status"] == "deleted" and tr["id"] == "0.1" for tr in after[0]["tracks"])
    assert {tr["id"] for tr in after[-1]["tracks"]} == {"0.2"}


@pytest.mark.parametrize("where", ["late", "late, two lines", "late, last", "a day ahead", "a day behind"])
def test_lines_off_on_their_own_are_not_a_clock_step(tmp_path: Path, where: str) -> None:
    """Reviewers' finds: one line written 3 s late (a merged or buffered log) was taken for the
    log's clock stepping back: every track deleted, fusion restarted; so were two lines of one
    frame written late, and a late last line. Lines far from the open cycle now wait for a line
    of another cycle; if it does not go on from them, they were off on their own."""
    path = tmp_path / "radar.toml"
    path.write_text(RADAR_TOML)
    t0 = 1_750_000_000.0
    lines = _flight(t0, t0)
    if where.startswith("late"):
        off = [json.loads(lines.pop(50))]
        if where == "late, two lines":  # a second plot of the same frame (same stamps)
            off.append({**off[0], "range_m": off[0]["range_m"] + 400.0})
        for d in off:
            lines.insert(len(lines) if where == "late, last" else 80, json.dumps(d))  # written 3 s+ late
    else:
        off = json.loads(lines.pop(50))
        off["t_receive"] += 86_400.0 if where == "a day ahead" else -86_400.0
        lines.insert(50, json.dumps(off))
    tracking = Tracking(track_config(path, tmp_path), out := io.StringIO())
    tracking.run(lines)
    docs = [json.loads(line) for line in out.getvalue().splitlines() if '"tracks"' in line]
    # (fused no more: 3 s is beyond what the tracks' histories and a frame period reach, `late`)
    dropped = dict(tracking.stats.dropped)
    assert dropped.pop("stale") == (len(off) if where.startswith("late") else 0)
    assert tracking.core.clock_steps == 0 and sum(dropped.values()) == 0
    assert "0.1" in {tr["id"] for d in docs for tr in d["tracks"]}
    assert not any(tr["status"] == "deleted" and tr["id"] == "0.1" for d in docs for tr in d["tracks"])


def test_a_sparse_log_is_all_gaps_not_outliers(tmp_path: Path) -> None:
    """A reviewer's find: with every line more than a second after the one before (a slow radar's
    one plot a scan, a sparse Remote ID log), each line was held and then joined to the first
    cycle as off on its own: nothing tracked. A line that the log goes on from is a gap."""
    path = tmp_path / "radar.toml"
    path.write_text(RADAR_TOML.replace("rate_hz = 10", "rate_hz = 1"))
    t0 = 1_750_000_000.0
    lines = []
    for k in range(40):
        d = json.loads(_flight(t0, t0)[min(k, 99)])
        d["t_capture"] = d["t_receive"] = t0 + 1.1 * k
        d["range_m"] = math.sqrt(800.0**2 + (-50.0 + 11.0 * k) ** 2 + 100.0**2)
        d["az_rad"] = math.atan2(50.0 - 11.0 * k, 800.0)
        lines.append(json.dumps(d))
    tracking = Tracking(track_config(path, tmp_path), out := io.StringIO())
    stats = tracking.run(lines)
    docs = [json.loads(line) for line in out.getvalue().splitlines() if '"tracks"' in line]
    assert sum(stats.dropped.values()) == 0 and tracking.core.clock_steps == 0
    assert stats.cycles > 40 * 20 and len(docs) > 20
    assert any(tr["status"] == "confirmed" for d in docs for tr in d["tracks"])
