"""A site's acoustic background (`cuas-node calibrate acoustic-background`): what the detector scores
relative to, and the threshold for a target false-alarm rate.

Why: a detector trained elsewhere cannot know that this mast stands next to a transformer humming
at 100 Hz and its harmonics, or in a gusty field. A few minutes of the site's own sound tell it:

* the site's standing lines: the median over the background windows of the whitened spectrum
  (dB above the local floor, per 16 Hz bin). Lines that stand there all the time are subtracted
  before the comb search (`features.extract(suppress_db=...)`), so they form no comb; a drone's
  lines, which are not part of the background, still do;
* the distribution of the detector's logit on the background windows (scored *with* that
  subtraction): the threshold for a target rate of false alarms per hour is the logit the site's
  background would exceed that often, from a normal fit to the windows' logits (a few minutes
  cannot show a once-an-hour event directly), and never below the loudest background window;
* a check that the background holds no drone: windows that the shipped detector, relative to
  the standing lines, calls drones, many or in a row, or most of the raw recording sounding like
  one, make `learn` refuse, because a threshold set above a drone would blind the node to it.

The file is small JSON; it names the detector weights it was made with (SHA-256), and a detector
refuses a background made for other weights, whose logits mean something else. It also says which
path scored its windows (`learnt_on`: "mono", one beam of the channels, or "array", through the
pipeline of the array named by `array_geometry`): the threshold is a statement about those scores,
and a node that scores otherwise (an array's sources with its evidence against a mono-learnt
background, or another array) is told so (`mismatch`: a pre-flight note of `run`, `config check`
and `doctor`, and a note of `acoustic score`). Files written before the field existed were all
learnt on one beam and load as "mono".
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
FORMAT = "cuas-node acoustic background"
VERSION = 1
DECISIONS_PER_HOUR = 7200.0  # the node decides on a 1 s window every 0.5 s
LINE_MARGIN_DB = 3.0  # a bin's median whitened level must exceed this to count as a standing line
MIN_WINDOWS = 20  # 10 s of background at least; minutes are better
DRONE_SHARE = 0.05  # refuse when more than this share of windows are called drones
DRONE_RUN = 4  # ... or this many windows in a row (2 s)
RAW_DRONE_SHARE = 0.5  # ... or when most of the raw recording sounds like one (a drone hovering throughout)


class BackgroundError(ValueError):
    """A background that cannot or must not be used; the message says why and what to do."""


def weights_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Background:
    suppress_db: FloatArray  # per analysis bin, ≥ 0
    logit_mean: float
    logit_std: float
    logit_max: float
    windows: int
    seconds: float
    weights_sha256: str
    sources: tuple[str, ...] = ()
    array: str | None = None  # the geometry whose pipeline scored the windows; None: one beam (mono)
    near_set_aside: int = 0  # windows whose source the array placed at a capsule: not in the statistics

    @property
    def learnt_on(self) -> str:
        return "mono" if self.array is None else "array"

    def mismatch(self, array: str | None) -> str:
        """A warning when the node scores through `array`'s pipeline (None: one beam) but the
        background was learnt on another path, else "": its threshold was then set on other scores
        than those it is compared with (an insect at a capsule, which the array marks down, raised
        a mono-learnt one; another array's evidence moves scores otherwise)."""
        if array == self.array:
            return ""
        learnt = "on one beam (mono)" if self.array is None else f"through the {self.array} array"
        scored = "as one beam" if array is None else f"through the {array} array"
        fix = (
            "score the array's recordings through it (--geometry)"
            if array is None
            else "learn it again through the array (calibrate acoustic-background --capture, or --geometry)"
        )
        return (
            f"site background learnt {learnt} but scored {scored}: its threshold is for other scores; {fix}"
        )

    def threshold(self, false_alarms_per_hour: float) -> float:
        """Drone likelihood above which this site's background alone raises `false_alarms_per_hour`
        alarms per hour (normal tail of the background logits, at least the loudest window)."""
        if not false_alarms_per_hour > 0:
            raise ValueError("false_alarms_per_hour must be > 0")
        p = min(0.5, false_alarms_per_hour / DECISIONS_PER_HOUR)
        z = NormalDist().inv_cdf(1.0 - p)
        logit = max(self.logit_mean + z * self.logit_std, self.logit_max + 0.25)
        return float(np.clip(1.0 / (1.0 + math.exp(-logit)), 0.05, 0.99))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "weights_sha256": self.weights_sha256,
            "windows": self.windows,
            "seconds": round(self.seconds, 2),
            "logit_mean": round(self.logit_mean, 4),
            "logit_std": round(self.logit_std, 4),
            "logit_max": round(self.logit_max, 4),
            "threshold_at_1_per_hour": round(self.threshold(1.0), 4),
            "sources": list(self.sources),
            "learnt_on": self.learnt_on,
            "array_geometry": self.array,
            "near_windows_set_aside": self.near_set_aside,
            "suppress_db": np.round(self.suppress_db, 2).tolist(),
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path, weights_sha256: str | None = None) -> Background:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise BackgroundError(f"{path}: cannot read the background file ({exc.strerror})") from exc
        except json.JSONDecodeError as exc:
            raise BackgroundError(f"{path}: not a background file (not JSON: {exc.msg})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise BackgroundError(f"{path}: not a {FORMAT} file, version {VERSION}")
        if weights_sha256 is not None and doc.get("weights_sha256") != weights_sha256:
            raise BackgroundError(
                f"{path}: learnt with other detector weights; "
                "run `cuas-node calibrate acoustic-background` again"
            )
        try:
            sup = np.asarray(doc["suppress_db"], dtype=np.float64)
            bg = cls(
                suppress_db=np.clip(sup, 0.0, 40.0),
                logit_mean=float(doc["logit_mean"]),
                logit_std=float(doc["logit_std"]),
                logit_max=float(doc["logit_max"]),
                windows=int(doc["windows"]),
                seconds=float(doc["seconds"]),
                weights_sha256=str(doc["weights_sha256"]),
                sources=tuple(str(s) for s in doc.get("sources", [])),
                array=_learnt_on(doc),
                near_set_aside=int(doc.get("near_windows_set_aside", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackgroundError(f"{path}: damaged background file ({exc!r})") from exc
        if sup.ndim != 1 or not np.all(np.isfinite(sup)) or not math.isfinite(bg.logit_std + bg.logit_mean):
            raise BackgroundError(f"{path}: damaged background file (non-finite values)")
        return bg


def _learnt_on(doc: dict[str, Any]) -> str | None:
    """The array the file's windows were scored through, None for one beam; a file without the
    field predates it and was learnt on one beam."""
    path = doc.get("learnt_on", "mono")
    if path == "mono":
        return None
    geometry = doc.get("array_geometry")
    if path != "array" or not isinstance(geometry, str) or not geometry:
        raise ValueError(f"learnt_on {path!r} with array_geometry {geometry!r}")
    return geometry


def line_profile(white_spectra: FloatArray) -> FloatArray:
    """Standing lines from the background windows' whitened spectra (windows, bins): the median
    over windows, minus LINE_MARGIN_DB, floored at 0 (a bin that is not a line subtracts nothing)."""
    return np.asarray(np.maximum(np.median(white_spectra, axis=0) - LINE_MARGIN_DB, 0.0), dtype=np.float64)


def logit_stats(logits: FloatArray, upper: bool = False) -> tuple[float, float, float]:
    """(centre, spread, max) of the background logits, robust to a few odd windows: median and
    IQR/1.349, the spread at least 0.25 (a perfectly steady background must not give a razor edge).

    `upper`: the spread from the upper half alone, (q75 - median)/0.6745, for an array's scores:
    its evidence marks sources down (an insect at a capsule by up to 10 in logit, a comb without
    one direction by up to 4), so they have a low tail made by the evidence that says nothing of how
    high the site's sound reaches (the false alarms), but would widen the IQR and raise the
    threshold. One beam's scores have no such tail; their two-sided spread stays as measured."""
    q25, q50, q75 = np.percentile(logits, [25, 50, 75])
    spread = (q75 - q50) / 0.6745 if upper else (q75 - q25) / 1.349
    return float(q50), max(float(spread), 0.25), float(np.max(logits))


def drone_like_run(called: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """(longest run of consecutive drone-called windows, index of its first window)."""
    best, start, run = 0, 0, 0
    for i, c in enumerate(called):
        run = run + 1 if c else 0
        if run > best:
            best, start = run, i - run + 1
    return best, start
