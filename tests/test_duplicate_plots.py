"""A radar frame (or a line) delivered twice is fused once (fusion/radar_frames.py `repeated_rows`,
the engine's `_radar`): an outside test found every line of a `track` input written twice gave
two confirmed tracks on every target at the same place. Two objects never give one radar
bit-identical plots, so a repeated plot is the same plot."""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from cuas_node.fusion.radar_frames import REPEAT_MAX_FRAMES, RecentFrames, repeated_rows
from cuas_node.replay import GOLDEN_DIR, replay_to_string
from cuas_node.track import Tracking
from cuas_node.track_cli import track_config

RADAR = GOLDEN_DIR / "radar-xwr1642-b.pcapng"


def test_repeated_rows_keep_the_first_and_read_nan_as_equal() -> None:
    nan = math.nan
    z = np.array([[10.0, 0.1, 0.2, nan], [12.0, 0.1, 0.2, 1.0], [10.0, 0.1, 0.2, nan], [10.0, 0.1, 0.2, 0.0]])
    assert repeated_rows(z).tolist() == [False, False, True, False]
    before = np.array([[12.0, 0.1, 0.2, 1.0]])
    assert repeated_rows(z, before).tolist() == [False, True, True, False]
    assert repeated_rows(z[:0]).size == 0


def _run(lines: list[str]) -> tuple[list[str], dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = io.StringIO()
        stats = Tracking(track_config(RADAR, Path(tmp)), out).run(lines)
    return out.getvalue().splitlines(), stats.dropped


def test_a_radar_recording_fed_twice_gives_the_same_tracks() -> None:
    """Every measurement line twice, and then a frame delivered again after three more frames
    (past the reorder window: fused late, by retrodiction, if it were fused at all): the same
    tracks lines as the recording once, and each repeated detection counted."""
    lines = [
        text for text in replay_to_string(RADAR).splitlines() if json.loads(text)["type"] == "measurement"
    ]
    once, dropped = _run(lines)
    assert any(json.loads(text)["tracks"] for text in once)  # the recording does make tracks
    assert dropped["duplicate"] == 0
    radar_lines = sum('"kind":"RadarDetection"' in text for text in lines)

    twice, dropped = _run([text for text in lines for _ in range(2)])
    assert twice == once
    assert dropped["duplicate"] == radar_lines and dropped["invalid"] == 0  # counted once, as what they are

    frames: dict[float, list[str]] = {}
    for text in lines:
        if '"kind":"RadarDetection"' in text:
            frames.setdefault(json.loads(text)["t_capture"], []).append(text)
    stamps = sorted(frames)
    again_t, after_t = stamps[len(stamps) // 2], stamps[len(stamps) // 2 + 3]
    late: list[str] = []
    for text in lines:
        late.append(text)
        if text == frames[after_t][-1]:
            late.extend(frames[again_t])
    resent, dropped = _run(late)
    assert resent == once
    assert dropped["duplicate"] == len(frames[again_t])


def test_the_memory_of_recent_frames_stays_bounded() -> None:
    """Capture times that go back (a sensor clock reset the node's clock did not see) or a frame
    sent over and over cannot make it grow: at most `REPEAT_MAX_FRAMES` frames, each row once."""
    frames = RecentFrames()
    z = np.random.default_rng(1).normal(size=(80, 4))
    for k in range(12_000):
        frames.repeated("radar", (k if k < 200 else k - 1_000_000) * 0.05, z + k)
    assert len(frames._frames["radar"]) <= REPEAT_MAX_FRAMES
    again = [frames.repeated("radar", 2.0, z).all() for _ in range(50)]
    assert again == [False] + [True] * 49
    assert frames._frames["radar"][2.0].shape == z.shape


def test_a_scanning_radars_plot_sent_again_in_a_later_batch_is_fused_once() -> None:
    """A scanning radar's plots are fused in batches timed by their stamps' midpoint, so a plot
    sent again (a link that retransmits) arrives in another batch at another batch time: it is
    looked up by its own stamp. Two targets side by side seen every sweep for 8 s (one batch a
    sweep), one plot of each sweep sent again alone two sweeps later: the same tracks as once,
    and every repeat counted (before, each repeat was fused as a new plot)."""
    from tests.test_sweeping_radar import _beam_time, _plot, _tracking

    sweeps = [
        [_plot(_beam_time(n, az), r + 5.0 * n, az) for az, r in ((0.2, 2000.0), (0.21, 2600.0))]
        for n in range(8)
    ]
    once = [text for sweep in sweeps for text in sweep]
    again = []
    for n, sweep in enumerate(sweeps):
        again += sweep
        if n >= 2:
            again.append(sweeps[n - 2][0])
    single, double = _tracking(once), _tracking(again)
    assert single.stats.dropped["duplicate"] == 0
    assert double.stats.dropped["duplicate"] == len(sweeps) - 2
    assert isinstance(single.out, io.StringIO) and isinstance(double.out, io.StringIO)
    assert double.out.getvalue() == single.out.getvalue()
