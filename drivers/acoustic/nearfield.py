"""Multichannel evidence for the drone detector: is the comb's source at the array itself?

An insect buzzing a few centimetres from a capsule makes a harmonic comb (its wingbeat, 100-700 Hz,
and harmonics) much like a rotor's, coherent from one place; the mono detector and the array's
coherence (`coherence.py`) both take it for a drone. What gives it away is distance. Sound falls as
1/r, so a source r from the nearest capsule and r + d from another is 20·log10((r + d)/r) dB louder
at the first, at every harmonic alike: 8.5 dB for an insect 3 cm from one capsule and 8 cm from
another. A drone is metres away at least, where every capsule hears it within a fraction of a dB.

What else makes capsules differ, and how each is kept out:
* the capsules' own sensitivities: a capsule that reads low (water or dirt in its port) is below
  the array's median capsule with the others at it, while 1/r lifts the capsule nearest a source
  above the median, so the spread counts only up to that lift (`_spread_on_comb`); a capsule
  that reads high is learnt from the blocks without a drone-like comb (`CapsuleGains`: far and
  diffuse sound reaches every capsule alike, so what stays different over minutes is the
  capsule) and taken off; what is left, up to twice the datasheet's tolerance (config
  `sensitivity_tolerance_db`, ±1 dB for common MEMS capsules), is part of the allowance
  (`far_field_spread_db`), as is the spread of a source 1 m away (`NEAREST_SOURCE_M`, about the
  nearest a multirotor's rotors come to a mast's array);
* reflections (ground, walls) and the array body's own scattering, which raise one capsule at one
  harmonic and another at the next: only harmonics up to where the aperture spans half a
  wavelength are used (`max_level_hz`), and the level difference of a pair must be consistent over
  the harmonics: its median less `Z` standard errors of that median (Student's t on few
  harmonics), the errors taken from how much the harmonics disagree (noise and interference both
  show there) and never below what averaging noise over the block's frames allows, and the
  louder capsule must also be the one the sound reaches first;
* uneven noise (wind at one capsule): each channel's harmonic power is taken above that channel's
  own floor around the harmonic, and only harmonics clearly above the floor are used.
`nearfield_logit` turns the excess over the allowance into a logit adjustment applied through
`DroneDetector.with_evidence`, like coherence: the same threshold, the same decision.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.coherence import MAX_HZ, FrameSpectra, clear_of_comb, harmonic_bins
from cuas_node.drivers.acoustic.features import F0_MIN_HZ

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
NEAREST_SOURCE_M = 1.0  # a drone nearer the array than this is not what the allowance is for
MIN_HARMONICS = 3  # fewer cannot show a level difference consistent over harmonics
USABLE_SNR = 4.0  # a harmonic is used when a channel hears it this far above its floor (6 dB)
FLOOR_HALF_BINS = 8  # the floor: the median of ±8 bins (±125 Hz at 64 ms frames) around it
Z = 3.0  # standard errors a pair's median difference must clear
MAX_PENALTY = 10.0  # logit at a clear near-field source: nothing in the sky sounds like that
RAMP_DB = 2.0  # excess over the allowance at which the whole penalty applies
GAIN_BAND_HZ = (500.0, 4000.0)  # above most wind, where a site's sound is far and diffuse
GAIN_QUANTILE = 0.25  # of the band's bins: below a comb's lines and an insect's buzz
GAIN_BLOCKS = 600  # capsule levels: the median over the last 600 blocks learnt from (5 min of 0.5 s)
GAIN_LEARNT_BLOCKS = 120  # until a minute has been learnt from, the datasheet's word (all alike) stands
SILENT = 1e-20  # band power below this is a capsule that hears nothing
DEAD_DB = -40.0  # a capsule this far below the others is dead, not quiet
_T_QUANTILE = 0.99865  # one-sided, as Z = 3 standard errors of a normal


class CapsuleGains:
    """Each capsule's level (dB) against the array's median capsule (so that one odd capsule
    stands out alone), learnt from the blocks with no drone-like comb in them (the site's far and
    diffuse sound, which reaches every capsule alike): per block the lower quartile of each
    channel's power over 500 Hz-4 kHz (below the lines of a comb the detector missed), then the
    median over the last `GAIN_BLOCKS` blocks learnt from (a gust or an insect at one capsule
    for less than half of them moves it little). Zero (the capsules alike, as their datasheet
    says) until `GAIN_LEARNT_BLOCKS` have been learnt from; a capsule blocked, damaged or silent
    is learnt then and reported (`odd`)."""

    def __init__(self, n_mics: int) -> None:
        self.relative_db = np.zeros(n_mics)
        self._levels = np.zeros((GAIN_BLOCKS, n_mics))
        self.blocks = 0  # blocks learnt from, all time

    def update(self, spectra: FrameSpectra) -> None:
        """Learn from a block's spectra (the caller skips blocks that hold a drone-like comb)."""
        f = spectra.f
        band = (f >= GAIN_BAND_HZ[0]) & (f <= min(GAIN_BAND_HZ[1], 0.9 * f[-1]))
        if np.count_nonzero(band) < 8:
            return
        power = np.quantile(spectra.channel_power[:, band], GAIN_QUANTILE, axis=1)
        if power.max() < SILENT:
            return
        level = 10.0 * np.log10(np.maximum(power, SILENT))
        self._levels[self.blocks % GAIN_BLOCKS] = level - np.median(level)
        self.blocks += 1
        if self.blocks >= GAIN_LEARNT_BLOCKS:
            self.relative_db = np.median(self._levels[: min(self.blocks, GAIN_BLOCKS)], axis=0)

    @property
    def dead(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.relative_db < DEAD_DB)

    def odd(self, tolerance_db: float) -> str:
        """A word for the health report on capsules further from the others than their tolerance
        allows (by 1 dB more), or ""."""
        if self.relative_db.size == 2:  # two capsules: which one is off cannot be told
            gap = float(self.relative_db[0] - self.relative_db[1])
            if abs(gap) <= 2.0 * tolerance_db + 1.0:
                return ""
            return f"microphones 0 and 1 differ by {gap:+.1f} dB (one blocked, damaged or silent?)"
        words = []
        for i in np.flatnonzero(np.abs(self.relative_db) > tolerance_db + 1.0):
            level = self.relative_db[i]
            if self.dead[i]:
                words.append(f"microphone {i} is silent (dead or disconnected?)")
            elif level < 0.0:
                words.append(f"microphone {i} reads {level:+.1f} dB against the array (blocked or damaged?)")
            else:  # louder: its own noise (wind at its port, a rattle) or another capsule's sensitivity
                words.append(
                    f"microphone {i} reads {level:+.1f} dB against the array (wind or noise at its port,"
                    " or a capsule of another sensitivity?)"
                )
        return "; ".join(words)


def far_field_spread_db(positions: FloatArray, tolerance_db: float) -> float:
    """The largest level difference between two capsules that a source at `NEAREST_SOURCE_M` or
    beyond can give: twice the capsules' sensitivity tolerance, plus 1/r across the array for a
    source at that distance on the line through its two farthest-apart capsules."""
    centred = positions - positions.mean(axis=0)
    a = min(float(np.sqrt((centred**2).sum(axis=1)).max()), 0.5 * NEAREST_SOURCE_M)
    return 2.0 * tolerance_db + 20.0 * math.log10((NEAREST_SOURCE_M + a) / (NEAREST_SOURCE_M - a))


def max_level_hz(positions: FloatArray, c: float = 343.0) -> float:
    """Highest harmonic compared: the array's aperture is half a wavelength there. Above it a
    reflection's phase, or the board's shadow, differs from capsule to capsule."""
    d = positions[:, None, :] - positions[None, :, :]
    aperture = float(np.sqrt((d**2).sum(axis=-1)).max())
    return min(MAX_HZ, c / (2.0 * max(aperture, 1e-3)))


def level_spread_db(
    spectra: FrameSpectra,
    positions: FloatArray,
    f0_hz: float,
    c: float = 343.0,
    capsule_db: FloatArray | None = None,
    tolerance_db: float = 1.0,
    away_from_hz: float | None = None,
    sub_combs: Sequence[int] = (),
) -> float:
    """A lower bound (dB) on the level difference that two capsules of a block hear consistently
    at the comb's harmonics k·f0 ≤ `max_level_hz` (module docstring), each capsule's learnt level
    (`CapsuleGains.relative_db`) taken off; 0 when the block cannot say (one channel, fewer than
    `MIN_HARMONICS` harmonics clear of the floor) or its arrival times deny a near source.
    `away_from_hz`: another comb's f0 whose harmonics are left out (`coherence.harmonic_bins`).
    `sub_combs`: the k whose comb f0/k is judged too, the largest spread counting: the detector's
    f0 may be a harmonic of the source's comb (an insect's wingbeat at 180 Hz read as 900, whose
    own harmonics under the cap are too few), and the caller names the k where the comb's own
    lines stand (`features.sub_combs`): on a drone's comb, with no lines between its own, an
    f0/k would judge the same lines again, fewer of them and with noise bins among them."""
    if spectra.full.shape[1] < 2:
        return 0.0
    top = max_level_hz(positions, c)
    return max(
        _spread_on_comb(
            spectra, f0_hz / k, top, capsule_db, tolerance_db, away_from_hz, f0_hz if k > 1 else None
        )
        for k in (1, *sub_combs)
        if f0_hz / k >= F0_MIN_HZ or k == 1  # (the detector's lowest f0)
    )


def _spread_on_comb(
    spectra: FrameSpectra,
    f0_hz: float,
    top_hz: float,
    capsule_db: FloatArray | None,
    tolerance_db: float,
    away_from_hz: float | None,
    lines_of_hz: float | None = None,
) -> float:
    """`level_spread_db` on the harmonics of one f0. `lines_of_hz`: the detector's f0, of which
    `f0_hz` is a fraction (a sub-comb): the spread counts only as far as that f0's own lines
    show it too (`_own_lines_db`)."""
    bins = harmonic_bins(spectra, f0_hz, top_hz, away_from_hz)
    if bins is None:
        return 0.0
    full = spectra.full
    levels = _line_levels(spectra, bins, capsule_db)
    if levels is None:
        return 0.0
    alive, usable, level, se = levels
    k = int(np.count_nonzero(usable))
    if k < MIN_HARMONICS:
        return 0.0
    live = np.flatnonzero(alive)
    # Which capsule stands out: each against the array's median capsule (with two, the other).
    # 1/r raises the capsule nearest a source above the median further than it lowers the
    # farthest below it, while a capsule that reads low (blocked, damaged) is below the median
    # with every other capsule at it: so the spread, the loudest capsule over the others, counts
    # only up to twice what the loudest stands above the median (once what its sensitivity
    # tolerance could explain). An insect keeps its whole spread; a weak capsule gives none.
    centre = np.median(level[live], axis=0) if live.size >= 3 else level[live].min(axis=0)
    rise = level[live] - centre
    above = _clear(rise, (se[live] ** 2).mean(axis=1), k)
    best = int(np.argmax(np.median(rise, axis=1)))
    if above[best] <= 0.0:
        return 0.0
    loud = int(live[best])
    others = live[live != loud]
    pairs = _clear(level[loud] - level[others], (se[loud] ** 2 + se[others] ** 2).mean(axis=1), k)
    if not (pairs > 0.0).any():
        return 0.0
    spread = float(pairs.max())
    if live.size >= 3:  # up to the loudest capsule's rise again, beyond what its tolerance explains
        lift = float(np.median(rise[best]))
        spread = min(spread, lift + max(lift - tolerance_db, 0.0))
    # A source near the array is nearest the capsule that hears it loudest, so it reaches that
    # capsule before every capsule that hears it clearly less; a level the arrival times
    # contradict is interference (a wall's reflection in step with the comb), not distance.
    lines = full[:, :, bins[usable]]  # (T, M, K)
    cross = (lines[:, [loud]] * np.conj(lines[:, others])).mean(axis=0)  # (others, K)
    f = spectra.f[bins[usable]][None, :]
    weight = np.abs(cross)
    moment = (weight * f * f).sum(axis=1)
    later = (weight * f * np.angle(cross)).sum(axis=1) / (2.0 * math.pi * np.maximum(moment, 1e-300))
    if not (later[pairs > 0.0] > 0.0).all():
        return 0.0
    if lines_of_hz is not None:
        own = _own_lines_db(spectra, lines_of_hz, top_hz, capsule_db, away_from_hz, loud, others)
        return max(0.0, min(spread, own))
    return spread


def _line_levels(
    spectra: FrameSpectra, bins: IntArray, capsule_db: FloatArray | None
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], FloatArray, FloatArray] | None:
    """Each channel's level (dB) at the lines in `bins` above its own floor around each, and
    that level's standard error, on the lines some live channel hears `USABLE_SNR` above its
    floor: (live channels, usable lines, level (M, K usable), se (M, K)); None when fewer
    than two channels are live."""
    frames, power = spectra.frames, spectra.channel_power  # power (M, F)
    width = 2 * FLOOR_HALF_BINS + 1
    if power.shape[1] < width:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(power, width, axis=1)  # (M, F - 2h, width)
    start = np.clip(bins - FLOOR_HALF_BINS, 0, windows.shape[1] - 1)
    floor = np.median(windows[:, start], axis=-1)  # (M, K)
    # A capsule that hears nothing here, or that the learner found dead, says nothing of distance.
    alive: npt.NDArray[np.bool_] = np.asarray((floor > 1e-30).all(axis=1))
    if capsule_db is not None:
        alive &= capsule_db > DEAD_DB
    if np.count_nonzero(alive) < 2:
        return None
    floor = np.maximum(floor, 1e-30)
    usable = np.asarray((power[alive][:, bins] >= USABLE_SNR * floor[alive]).any(axis=0))
    # Above each channel's own floor; a channel that hears a harmonic no better than noise
    # averaged over the frames allows is taken at that limit (its difference is then a bound).
    noise = floor[:, usable]
    limit = 2.0 * noise / math.sqrt(frames)
    signal = np.maximum(power[:, bins[usable]] - noise, limit)
    level = 10.0 * np.log10(signal)  # (M, K)
    if capsule_db is not None:
        level -= capsule_db[:, None]
    # The standard error of each level: a line of power A² in noise N, averaged over the frames,
    # is known to sqrt((2 A² N + N²)/frames) (A² taken at least N: a line under the floor is
    # a bound, not a measurement to be sure of).
    strong = np.maximum(signal, noise)
    se = 10.0 / math.log(10.0) * np.sqrt((2.0 * strong * noise + noise**2) / frames) / strong
    return alive, usable, level, se


def _own_lines_db(
    spectra: FrameSpectra,
    f0_hz: float,
    top_hz: float,
    capsule_db: FloatArray | None,
    away_from_hz: float | None,
    loud: int,
    others: IntArray,
) -> float:
    """How much louder (dB, a lower bound) capsule `loud` hears the detector's own lines, the
    harmonics of `f0_hz` up to `top_hz` (each at its nearest bin: the comb search's f0 is that
    precise, and a line of another comb one bin off is not this comb's), than the `others`: the
    largest over them of the median over the lines less `Z` standard errors of the noise each
    level carries. A sub-comb places the detection at the array only so far as the lines the
    detector found share its 1/r: an insect's wingbeat read on its fifth harmonic is loudest at
    the insect's capsule there too, while a far drone's comb whose f0/k lies on an insect's
    comb (a 242 Hz drone read on its 731 Hz third harmonic beside a 143 Hz insect, whose 146 Hz
    f0/5 is the insect's) is heard alike at every capsule."""
    df = float(spectra.f[1])
    top = min(top_hz, 0.9 * float(spectra.f[-1]))
    bins = np.unique(np.rint(np.arange(1, int(top // f0_hz) + 1) * f0_hz / df).astype(np.intp))
    bins = clear_of_comb(bins, df, away_from_hz)
    if not bins.size:
        # No line of the detector's own under the cap to judge by (its f0 above the array's level
        # cap, on a custom array wider than ~11 cm): the sub-comb's spread stands as measured.
        return math.inf
    levels = _line_levels(spectra, bins, capsule_db)
    if levels is None or not levels[1].any():
        return 0.0
    _, usable, level, se = levels
    k = int(np.count_nonzero(usable))
    diff = level[loud] - level[others]  # (others, K)
    model = (se[loud] ** 2 + se[others] ** 2).mean(axis=1)
    return float((np.median(diff, axis=1) - Z * np.sqrt(math.pi / 2.0 * model / k)).max())


def _clear(diff: FloatArray, model: FloatArray, k: int) -> FloatArray:
    """Per row of level differences (rows, K harmonics): the median less its margin (> 0: the
    row is louder beyond doubt). The median's error is taken from the
    harmonics' disagreement (noise, reflections, the board's shadow) or from the noise each level
    carries (`model`, per row), whichever is larger; a disagreement seen on few harmonics is
    itself uncertain, so it is cleared by Student's t on K - 1 degrees of freedom, not by Z."""
    disagreement = diff.var(axis=1, ddof=1)
    multiplier = np.where(disagreement > model, _t_multiplier(k), Z)
    margin = multiplier * np.sqrt(math.pi / 2.0 * np.maximum(disagreement, model) / k)
    return np.asarray(np.median(diff, axis=1) - margin, dtype=np.float64)


@functools.cache
def _t_multiplier(k: int) -> float:
    from scipy.special import stdtrit  # not at the top: see drivers/radar/cluster.py

    return float(stdtrit(max(k - 1, 1), _T_QUANTILE))


def nearfield_logit(spread_db: float, allowance_db: float) -> float:
    """Logit adjustment: 0 within the far-field allowance, down to −`MAX_PENALTY` once the
    consistent spread exceeds it by `RAMP_DB`."""
    excess = spread_db - allowance_db
    if excess <= 0.0:
        return 0.0
    return -MAX_PENALTY * min(1.0, excess / RAMP_DB)
