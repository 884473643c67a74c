"""Golden regression tests, as gpsd does them: every recording in tests/data/recordings/ is replayed
at max speed and its output (measurements and tracks, JSON lines) compared with the checked-in
`<name>.expected.jsonl`.

A difference is either a regression or an intended change. After an intended change (a better
clusterer, a tuned tracker), regenerate and review the diff before committing it:

    .venv/bin/python -m cuas_node.replay --regenerate-golden
    git diff --stat tests/data/recordings/

Floats are compared to 1e-6 (relative) rather than as text: the same file gives the same bytes on
one machine, but numpy's kernels may differ in the last bit between an x86 laptop and a Pi's ARM.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from cuas_node.replay import GOLDEN_DIR, replay_to_string

RECORDINGS = sorted(GOLDEN_DIR.glob("*.pcapng"))
REGENERATE = ".venv/bin/python -m cuas_node.replay --regenerate-golden"


def _close(a: Any, b: Any, path: str = "") -> str | None:
    """Where `a` and `b` differ (None if they agree), with floats compared to 1e-6."""
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        return None if a == b else f"{path}: {a!r} != {b!r}"
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        ok = math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        return None if ok else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            diff = _close(a[key], b[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff = _close(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def test_there_are_golden_recordings() -> None:
    assert len(RECORDINGS) >= 4, f"golden recordings missing from {GOLDEN_DIR}"
    for rec in RECORDINGS:
        assert rec.stat().st_size < 200_000, f"{rec.name} is too big for the repository"


@pytest.mark.parametrize("recording", RECORDINGS, ids=[r.name.removesuffix(".pcapng") for r in RECORDINGS])
def test_golden(recording: Path) -> None:
    expected_path = recording.with_name(recording.name.removesuffix(".pcapng") + ".expected.jsonl")
    assert expected_path.exists(), f"no expected output for {recording.name}: run {REGENERATE}"
    actual = replay_to_string(recording)
    expected = expected_path.read_text()
    if actual == expected:
        return
    got, want = actual.splitlines(), expected.splitlines()
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        diff = _close(json.loads(a), json.loads(b))
        if diff:
            pytest.fail(
                f"{recording.name}: line {i + 1} differs at {diff}\n  got:  {a[:300]}\n  want: {b[:300]}\n"
                f"If this change is intended: {REGENERATE}, and review the diff."
            )
    if len(got) != len(want):
        pytest.fail(f"{recording.name}: {len(got)} lines, expected {len(want)}. If intended: {REGENERATE}")


def test_replay_is_deterministic() -> None:
    """The same file gives the same output, byte for byte, run after run."""
    rec = GOLDEN_DIR / "sim-demo.pcapng"
    assert replay_to_string(rec) == replay_to_string(rec)
