"""The CLI as a technician uses it: decode files, watch a node, helpful errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cuas_node.watch import WatchState, render

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared reference captures not present")


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", *args], input=stdin, capture_output=True, timeout=60
    )


@needs_shared
def test_decode_ti_mmwave_capture() -> None:
    result = _cli("decode", "ti-mmwave", str(SHARED / "captures/radar/ti-xwr16xx-sdk3.4-b.dat"))
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(frames) == 101
    assert frames[0]["type"] == "ti_frame" and frames[0]["frame"] == 316
    point = frames[0]["points"][0]
    assert set(point) == {"x", "y", "z", "doppler", "snr_db", "noise_db"}
    assert point["snr_db"] == pytest.approx(24.2) and point["y"] == pytest.approx(0.305252, abs=1e-6)


@needs_shared
def test_decode_nmea_log_from_stdin() -> None:
    data = (SHARED / "captures/gps/mt3339.log").read_bytes()
    result = _cli("decode", "nmea", "-", stdin=data)
    assert result.returncode == 0, result.stderr
    fixes = [json.loads(line) for line in result.stdout.splitlines()]
    assert fixes and all(f["type"] == "nmea_fix" for f in fixes)
    dated = [f for f in fixes if "t" in f]
    assert dated and all(None not in f.values() for f in fixes)


def test_decode_rejects_unknown_kind_and_missing_file(tmp_path: Path) -> None:
    assert _cli("decode", "lidar", str(tmp_path)).returncode == 2
    missing = _cli("decode", "nmea", str(tmp_path / "nope.log"))
    assert missing.returncode == 1 and b"cannot read" in missing.stderr


@pytest.mark.parametrize("kind", ["nmea", "ti-mmwave"])
def test_decode_of_bytes_holding_no_record_says_so_on_stderr(kind: str) -> None:
    """A technician's first question of a port's dump: stdout stays the contract (nothing), and
    stderr says why there may be nothing; where a record was decoded, stderr stays quiet."""
    noise = bytes(random.Random(5).randrange(256) for _ in range(3000))
    result = _cli("decode", kind, "-", stdin=noise)
    assert result.returncode == 0 and result.stdout == b""
    assert f"no {kind} records in 3000 bytes".encode() in result.stderr
    one = _cli(
        "decode", "nmea", "-", stdin=b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
    )
    assert one.returncode == 0 and one.stdout.count(b"\n") == 1 and one.stderr == b""


def test_sim_keeps_its_spool_in_the_state_directory_it_is_given(tmp_path: Path) -> None:
    """demo.sh gives each demo a fresh CUAS_NODE__STATE_DIR so that an earlier run's undelivered
    messages are not replayed into it: the spool must move with it (it stayed under
    $XDG_STATE_HOME, and seq and the backlog carried on)."""
    env = {
        **os.environ,
        "CUAS_NODE__STATE_DIR": str(tmp_path / "state"),
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "CUAS_MQTT__HOST": "127.0.0.1",
        "CUAS_MQTT__PORT": "1",  # no broker: every message stays in the spool
    }
    done = subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", "sim", "demo", "--duration", "1", "--speed", "10"],
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert any((tmp_path / "state" / "spool").glob("seg-*.log"))
    assert not (tmp_path / "xdg").exists()


def test_sim_unknown_scenario_is_a_config_error() -> None:
    result = _cli("sim", "no-such-scenario")
    assert result.returncode == 78
    assert b"demo" in result.stderr  # the built-in names are listed


def test_watch_with_a_malformed_port_variable_is_a_config_error() -> None:
    """`watch` reads CUAS_MQTT__PORT itself: a typo is exit 78 naming the variable, not a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CUAS_")}
    result = subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", "watch", "--duration", "0.1", "--plain"],
        capture_output=True,
        timeout=60,
        env={**env, "CUAS_MQTT__PORT": "eighty"},
    )
    assert result.returncode == 78, result.stderr
    assert b"Traceback" not in result.stderr
    assert b"mqtt.port (env CUAS_MQTT__PORT): not a whole number" in result.stderr


def test_watch_render_shows_tracks_and_forgets_deleted_ones() -> None:
    state = WatchState()
    state.handle("cuas/v1/n1/status", b'{"type":"status","state":"online","t":1,"session":4}')
    track = {
        "id": "4.1",
        "status": "confirmed",
        "t": 1.0,
        "lat": 52.0,
        "lon": 4.3,
        "alt_m": 80.0,
        "enu_m": [30.0, 40.0, 20.0],
        "vel_enu_mps": [3.0, 4.0, 0.0],
        "pos_cov_enu_m2": [[1, 0, 0]] * 3,
        "class": {"label": "unknown", "confidence": 1.0},
        "sensors": ["radar-1"],
    }
    msg = {"type": "tracks", "node_id": "n1", "seq": 1, "t": 1.0, "tracks": [track]}
    state.handle("cuas/v1/n1/tracks", json.dumps(msg).encode())
    screen = render(state)
    assert "node n1: online" in screen and "4.1" in screen and "radar-1" in screen
    assert " 53.9 " in screen  # range to the track: sqrt(30² + 40² + 20²)
    flagged = dict(track, bearing_only=True, remote_id={"uas_id": "SN-1", "consistency": "inconsistent"})
    state.handle("cuas/v1/n1/tracks", json.dumps(dict(msg, tracks=[flagged])).encode())
    assert "bearing-only" in render(state) and "RID SN-1 INCONSISTENT" in render(state)
    msg["tracks"] = [dict(track, status="deleted")]
    state.handle("cuas/v1/n1/tracks", json.dumps(msg).encode())
    assert "4.1" not in render(state)
    state.handle("cuas/v1/n1/tracks", b"not json")  # ignored, not fatal
    # Real ids carry a ten-digit session: the column widens, and ids sort by number.
    many = [dict(track, id=f"1796283582.{n}") for n in (296, 3, 41)]
    state.handle("cuas/v1/n1/tracks", json.dumps(dict(msg, tracks=many)).encode())
    rows = [line for line in render(state).splitlines() if "1796283582." in line]
    assert [row.split()[0] for row in rows] == ["1796283582.3", "1796283582.41", "1796283582.296"]
    assert len({row.index("confirmed") for row in rows}) == 1  # the status column lines up


def test_watch_shows_counts_named_rates_and_active_alerts() -> None:
    state = WatchState()
    health = {
        "type": "health",
        "broker": {"connected": True},
        "fusion": {"tracks": 3, "confirmed": 2, "coasting": 1, "tentative": 14, "queue_depth": 0},
        "sensors": [
            {"id": "radar-1", "kind": "ti-mmwave", "state": "ok", "rate_hz": 31.0, "frames_per_s": 10.0,
             "detections_per_s": 31.0, "age_s": 0.1},
        ],
    }  # fmt: skip
    state.handle("cuas/v1/n1/health", json.dumps(health).encode())
    screen = render(state)
    assert "2 confirmed, 1 coasting, 14 tentative" in screen
    assert "10.0 frames/s" in screen and "31.0 detections/s" in screen
    alert = {
        "type": "alert", "alert_id": "4.2@compound#1", "state": "new", "since": 5.0,
        "zone": {"id": "compound", "level": "critical"},
        "track": {"id": "4.2", "status": "confirmed", "class": {"label": "multirotor"}},
    }  # fmt: skip
    state.handle("cuas/v1/n1/alerts", json.dumps(alert).encode())
    assert "ALERT CRITICAL zone compound: track 4.2 (multirotor) new" in render(state)
    state.handle("cuas/v1/n1/alerts", json.dumps(dict(alert, state="cleared")).encode())
    assert "ALERT" not in render(state)


def test_every_command_is_documented_in_the_readme() -> None:
    """The CLI is a public contract: each subcommand has a row in the README's commands table."""
    import argparse

    from cuas_node.cli import _parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    subparsers = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in subparsers.choices if f"`cuas-node {name}" not in readme]
    assert not missing, missing
