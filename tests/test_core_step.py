"""One core step for every entry point: the runtime and `replay` fed the same recording publish
the same tracks, because both run `NodeCore.step` (eval and the golden tests run it too)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cuas_node.core.reorder import ReorderBuffer
from cuas_node.drivers.record import read_recording
from cuas_node.kernel.measurement import GpsFix
from cuas_node.recording_config import replay_config
from cuas_node.replay import GOLDEN_DIR, Replay
from cuas_node.runtime import Runtime
from tests.sinks import RecordingSink

RECORDINGS = sorted(GOLDEN_DIR.glob("*.pcapng"))


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_runtime_and_replay_publish_identical_tracks(path: Path, tmp_path: Path) -> None:
    recording = read_recording(path)
    config = replay_config(recording, {"node": {"state_dir": str(tmp_path)}}, tmp_path, str(path))
    out = io.StringIO()
    Replay(recording, config, out).run()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    replayed_tracks = [m for m in lines if m["type"] == "tracks"]
    replayed_alerts = [m for m in lines if m["type"] == "alert"]

    # The runtime, fed the same measurements per cycle through the method its fusion thread runs.
    source = Replay(read_recording(path), config, None)
    sink = RecordingSink(config.node.id, session=0)
    runtime = Runtime(config, source.clock, [], sink, session=0)
    end = None
    for t, batch in source.cycles():
        runtime.cycle(t, batch)
        end = t
    assert end is not None
    runtime.finish(end)

    if path.stem.startswith("sim-"):  # the simulated recordings have targets (gps-*, radar-*: none)
        assert replayed_tracks, "the recording must produce tracks for this test to mean anything"
    assert sink.tracks == replayed_tracks
    assert sink.alerts == replayed_alerts


def test_reorder_buffer_releases_in_capture_order_and_counts_late_arrivals() -> None:
    def fix(t: float) -> GpsFix:
        return GpsFix("gps", t, 0.0, 52.0, 4.3, 10.0, 47.0, quality=1)

    buffer = ReorderBuffer(0.1, lambda m: m.t_capture)
    assert buffer.push([fix(1.0), fix(0.95)]) == []  # both within the window behind 1.0
    assert [m.t_capture for m in buffer.push([fix(1.2)])] == [0.95, 1.0]
    assert buffer.push([fix(0.5)]) == []  # behind what was released already: late
    assert [m.t_capture for m in buffer.due(1.15)] == [0.5]  # the next step releases it anyway
    assert buffer.late == 1
    assert [m.t_capture for m in buffer.due(10.0)] == [1.2]
    assert len(buffer) == 0


def test_replay_config_keeps_the_state_dir_override() -> None:
    """The comparison above gives the runtime a private state dir; make sure the override lands."""
    path = RECORDINGS[0]
    with tempfile.TemporaryDirectory() as tmp:
        config = replay_config(read_recording(path), {"node": {"state_dir": tmp}}, Path(tmp), str(path))
        assert str(config.node.state_dir) == tmp


@pytest.mark.parametrize(("cap_hz", "epoch"), [(5.0, 1.8e9), (20.0, 1.8e9), (5.0, 1000.0), (7.0, 1.8e9)])
def test_tracks_messages_come_as_often_as_the_cap_allows_on_any_epoch(cap_hz: float, epoch: float) -> None:
    """`tracks_max_rate_hz` is a ceiling the node reaches: with a track changing every 50 ms
    cycle, a message every ceil(period / cycle) cycles, at capture times on the Unix epoch (whose
    rounding once made four 50 ms cycles fall short of 0.2 s: 4 Hz for a cap of 5, 12 for 20) as
    on small ones."""
    import math

    from cuas_node.assembly import core_setup
    from cuas_node.config import build_config
    from cuas_node.core.step import NodeCore
    from cuas_node.kernel.measurement import RadarDetection

    data = {
        "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.3, "alt_m": 10.0}},
        "fusion": {"reorder_window_s": 0.0},
        "mqtt": {"tracks_max_rate_hz": cap_hz},
        "sensors": [{"kind": "ti-mmwave", "id": "ti", "port": "/dev/null", "max_range_m": 200}],
    }
    core = NodeCore(core_setup(build_config(data, "test")))
    sigmas = (0.15, math.radians(1.0), math.radians(2.0), 0.1)
    times = []
    for k in range(200):  # 10 s of 50 ms cycles, one drone flying out at 5 m/s
        t = epoch + k * 0.05
        r = 60.0 + 5.0 * k * 0.05
        detection = RadarDetection("ti", t, t, r, 0.1, 0.05, 5.0, *sigmas, snr_db=20.0)
        if core.step(t, [detection]).tracks is not None:
            times.append(t)
    cycles = math.ceil(round(1.0 / cap_hz / 0.05, 6))  # the cycles a message must wait at most
    gaps = np.round(np.diff(times) / 0.05).astype(int)
    assert len(times) > 150 / cycles, (len(times), gaps.tolist())
    assert set(gaps.tolist()) == {cycles}, gaps.tolist()


def test_a_quiet_node_holds_no_memory_cycle_after_cycle() -> None:
    """A node with nothing to publish maintains its tracks every cycle and drains nothing: the
    empty deletions of each cycle were held until the next drain (1.7 KB a cycle, 120 MB an hour
    at 20 Hz on a quiet mast, and a change check that grew with them)."""
    import tracemalloc

    from cuas_node.assembly import core_setup
    from cuas_node.config import build_config
    from cuas_node.core.step import NodeCore

    data = {
        "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.3, "alt_m": 10.0}},
        "sensors": [{"kind": "ti-mmwave", "id": "ti", "port": "/dev/null", "max_range_m": 200}],
    }
    core = NodeCore(core_setup(build_config(data, "test")))
    for k in range(100):  # past every first allocation
        core.step(1.8e9 + k * 0.05)
    ours = [tracemalloc.Filter(True, str(Path(__file__).resolve().parents[1] / "*"))]  # (no other thread's)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(ours)
        for k in range(100, 600):
            assert core.step(1.8e9 + k * 0.05).tracks is None
        after = tracemalloc.take_snapshot().filter_traces(ours)
        grown = sum(d.size_diff for d in after.compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 50_000, f"{grown} bytes more after 500 quiet cycles"
