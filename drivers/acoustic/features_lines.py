"""Line-level features of the drone detector on the whole block (1 Hz resolution or the raw
signal), split from features.py to keep it readable: the blade-rate chopping of rotor noise, how
narrow each harmonic's line is, and a helicopter main rotor's low comb."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
HELI_F0_HZ = (8.0, 50.0)  # helicopter main-rotor blade passing; a multirotor's blades pass at 60 Hz and up
_EPS = 1e-20


def bpf_modulation(sig: FloatArray, fs: int, nfft: int, f0: float) -> float:
    """How strongly the 1–6 kHz rotor noise is amplitude-modulated at f0, in dB over the
    envelope spectrum's median nearby: blades chop their own turbulence at the blade rate, an
    appliance's airflow or wind is not chopped at its tone's frequency."""
    n = sig.size
    if n < nfft:
        return 0.0
    spec = np.fft.rfft(sig - sig.mean())
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec[(f < 1000.0) | (f > min(6000.0, 0.45 * fs))] = 0.0
    env = np.fft.irfft(spec, n=n) ** 2
    e_spec = np.abs(np.fft.rfft(env - env.mean())) ** 2
    near = (f >= f0 * 0.97) & (f <= f0 * 1.03)
    around = (f >= f0 * 0.5) & (f <= f0 * 1.5)
    if not near.any() or not around.any():
        return 0.0
    ratio = float(e_spec[near].max()) / (float(np.median(e_spec[around])) + 1e-30)
    return float(np.clip(10.0 * math.log10(ratio + 1e-12), -10.0, 40.0))


def heli_rotor_lines(spec: FloatArray, df: float, fs: int) -> float:
    """Comb contrast in dB of the 1 Hz-resolution spectrum for a fundamental of 8–50 Hz
    (harmonics up to 400 Hz): a helicopter's main rotor, whose blade passing is far below a
    multirotor's. Whitened against the median over ±20 Hz, like the main comb search."""
    hi = int(min(440.0, 0.45 * fs) / df)
    if hi < 16:
        return 0.0
    log_s = 10.0 * np.log10(spec[:hi] + float(spec[:hi].max()) * 1e-10 + _EPS)
    from scipy.ndimage import median_filter

    white = log_s - median_filter(log_s, size=max(3, round(40.0 / df) | 1), mode="nearest")
    axis = np.arange(white.size)
    best = -10.0
    for f0 in np.geomspace(HELI_F0_HZ[0], HELI_F0_HZ[1], 48):
        k = np.arange(1, int(400.0 // f0) + 1)
        on = np.interp(k * f0 / df, axis, white)
        off = np.interp((k - 0.5) * f0 / df, axis, white)
        best = max(best, float(np.mean(np.clip(on, -10, 25) - np.clip(off, -10, 25))))
    return best


def line_concentration(spec: FloatArray, df: float, fs: int, f0: float) -> float:
    """How much of each prominent blade harmonic's energy sits in one narrow line (1 Hz
    resolution over the block): a single motor at constant speed (vacuum cleaner, fan, pump)
    gives needle-sharp lines, several rotors a few % apart (a multirotor holding position) or a
    revving engine spread each harmonic into a cluster. Median over harmonics below 4 kHz that
    stand ≥ 10 dB above their ±5 % neighbourhood; 0 when there is none."""
    f_hi = min(4000.0, 0.45 * fs)
    conc = []
    for k in range(1, 17):
        fk = k * f0
        if fk > f_hi:
            break
        lo, hi = int(fk * 0.95 / df), math.ceil(fk * 1.05 / df) + 1
        win = spec[lo:hi]
        if win.size < 8:
            continue
        peak = int(np.argmax(win))
        total = float(win.sum())
        if total <= 0.0 or win[peak] < 10.0 * np.median(win):
            continue
        half = max(2, round(0.003 * fk / df))
        conc.append(float(win[max(0, peak - half) : peak + half + 1].sum()) / total)
    return float(np.median(conc)) if conc else 0.0
