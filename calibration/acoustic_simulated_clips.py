"""Simulated training clips for the acoustic detector: drones from the simulator's own voices at a
random distance and SNR over outdoor ambience, and negatives including the hard ones (machines
whose sound is also a harmonic comb but with non-multirotor statistics).

Why simulate at all: the real set holds two drones in one room; the simulated clips teach the
model the physics (harmonic combs chopped at the blade rate, air absorption with distance) rather
than that room's microphone chain. Every generator draws only from the `rng` it is given, in a
fixed order, so a seed reproduces the training set exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.features import extract
from cuas_node.drivers.sim.voices import (
    AircraftVoice,
    BirdVoice,
    DroneVoice,
    absorption_db_per_m,
    bandpass_noise,
    colored_noise,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]
SIM_RATE = 16000
SIM_SECONDS = 1.024


def _absorb(x: FloatArray, fs: int, range_m: float) -> FloatArray:
    """Air absorption over `range_m`: a far drone loses its high harmonics first."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / fs)
    return np.asarray(np.fft.irfft(spec * 10 ** (-absorption_db_per_m(f) * range_m / 20), n=x.size))


def unit_rms(x: FloatArray) -> FloatArray:
    """Scaled to RMS 1, so that mixing levels are SNRs in dB and not accidents of a generator."""
    return np.asarray(x / (np.sqrt(np.mean(x**2)) + 1e-20))


def outdoor_ambience(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """Outdoor ambience: some mix of pink/brown noise, wind, traffic rumble and birds."""
    parts = [colored_noise(n, rng, rng.uniform(0.0, 2.0), fs)]
    if rng.random() < 0.5:
        parts.append(bandpass_noise(n, fs, 5.0, rng.uniform(80, 300), rng) * rng.uniform(0.5, 3))
    if rng.random() < 0.3:
        parts.append(unit_rms(BirdVoice(fs, rng).render(n)) * rng.uniform(0.2, 1.5))
    if rng.random() < 0.3:
        parts.append(bandpass_noise(n, fs, 30.0, rng.uniform(300, 1500), rng) * rng.uniform(0.5, 2))
    return unit_rms(np.sum(parts, axis=0))


def _speech_like(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """Voiced syllables: a harmonic source whose f0 glides ±20 % around 90–300 Hz, in 4 Hz bursts."""
    t = np.arange(n) / fs
    f0 = rng.uniform(90, 300) * (1 + 0.15 * np.sin(2 * math.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6)))
    ph = 2 * math.pi * np.cumsum(f0) / fs
    k = np.arange(1, 25)
    formant = np.exp(-(((k * 200 - rng.uniform(400, 1200)) / 600.0) ** 2)) + 0.3 / k
    x = (formant[:, None] * np.sin(k[:, None] * ph[None, :])).sum(axis=0)
    syll = np.clip(np.sin(2 * math.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 2
    return unit_rms(x * syll)


def _hum(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """Mains hum and transformer buzz: a steady comb on 50/60 Hz (or twice that) below 1 kHz."""
    t = np.arange(n) / fs
    f0 = float(rng.choice([50.0, 60.0, 100.0, 120.0]))
    k = np.arange(1, int(1000 // f0) + 1)
    amp = k ** -rng.uniform(1.0, 2.5)
    return unit_rms(
        (amp[:, None] * np.sin(2 * math.pi * f0 * k[:, None] * t + rng.uniform(0, 6, (k.size, 1)))).sum(0)
    )


def _engine(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """A road vehicle: broadband tyre noise plus low firing-frequency harmonics (20–80 Hz)."""
    t = np.arange(n) / fs
    f0 = rng.uniform(20, 80) * (1 + 0.05 * t)
    ph = 2 * math.pi * np.cumsum(f0) / fs
    k = np.arange(1, 8)
    tone = unit_rms((k[:, None] ** -1.0 * np.sin(k[:, None] * ph[None, :])).sum(0))
    return unit_rms(tone * rng.uniform(0.2, 1) + bandpass_noise(n, fs, 50.0, rng.uniform(500, 2000), rng))


def _rain(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """Rain: random decaying clicks over a little coloured noise."""
    x = np.zeros(n)
    idx = rng.integers(0, n, int(rng.uniform(50, 800) * n / fs))
    x[idx] = rng.standard_normal(idx.size)
    x = np.convolve(x, np.exp(-np.arange(64) / rng.uniform(2, 12)), mode="same")
    return unit_rms(x + 0.1 * colored_noise(n, rng, 1.0, fs))


def _appliance(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """One electric motor (vacuum cleaner, fan, blender, drill, pump): a single steady f0 with
    needle-sharp harmonic lines, and airflow noise that is not chopped at the blade rate."""
    t = np.arange(n) / fs
    f0 = float(np.exp(rng.uniform(math.log(80.0), math.log(1500.0))))
    inst = f0 * (1.0 + rng.uniform(0.0, 0.004) * np.sin(2 * math.pi * rng.uniform(0.1, 1.0) * t))
    k = np.arange(1, max(2, min(40, int(min(6000.0, 0.45 * fs) // f0))) + 1, dtype=np.float64)
    amp = k ** -rng.uniform(0.5, 2.0) * 10 ** (rng.normal(0.0, 6.0, k.size) / 20)
    ph = 2 * math.pi * np.cumsum(inst) / fs
    tone = (amp[:, None] * np.sin(k[:, None] * ph[None, :] + rng.uniform(0, 6, (k.size, 1)))).sum(0)
    air = bandpass_noise(n, fs, rng.uniform(150.0, 800.0), rng.uniform(1500.0, 7000.0), rng)
    return unit_rms(unit_rms(tone) * rng.uniform(0.3, 1.0) + air * rng.uniform(0.1, 1.5))


def _two_stroke(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """A small combustion engine (chainsaw, moped, lawn mower, outboard): a rich comb at the
    firing rate (50–250 Hz) whose rpm swings by 2–25 % as the throttle moves, with exhaust noise
    pulsed at the firing rate."""
    t = np.arange(n) / fs
    base = rng.uniform(50.0, 250.0)
    swing = rng.uniform(0.02, 0.25) * np.sin(2 * math.pi * rng.uniform(0.3, 3.0) * t + rng.uniform(0, 6))
    inst = base * (1.0 + swing + rng.uniform(-0.2, 0.2) * t)
    cyc = np.cumsum(inst) / fs
    k = np.arange(1, max(2, int(min(5000.0, 0.45 * fs) // (base * 1.3))) + 1, dtype=np.float64)
    amp = k ** -rng.uniform(0.3, 1.3) * 10 ** (rng.normal(0.0, 4.0, k.size) / 20)
    tone = (
        amp[:, None] * np.sin(2 * math.pi * k[:, None] * cyc[None, :] + rng.uniform(0, 6, (k.size, 1)))
    ).sum(0)
    pulse = 1.0 + rng.uniform(0.0, 0.8) * np.sin(2 * math.pi * cyc)
    exhaust = bandpass_noise(n, fs, 200.0, rng.uniform(2000.0, 6000.0), rng) * pulse
    return unit_rms(unit_rms(tone) + exhaust * rng.uniform(0.2, 1.5))


def _siren(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """An emergency siren or alarm: a few harmonics sweeping over 500–1800 Hz, wail or yelp."""
    t = np.arange(n) / fs
    lo, hi = rng.uniform(500.0, 900.0), rng.uniform(1100.0, 1800.0)
    rate = rng.uniform(0.2, 4.0)
    inst = lo + (hi - lo) * 0.5 * (1 + np.sin(2 * math.pi * rate * t + rng.uniform(0, 6)))
    ph = 2 * math.pi * np.cumsum(inst) / fs
    k = np.arange(1, 5, dtype=np.float64)
    tone = ((k[:, None] ** -1.5) * np.sin(k[:, None] * ph[None, :])).sum(0)
    return unit_rms(tone)


def _helicopter(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """A helicopter: broadband rotor noise slapped at the main rotor's blade rate (10–30 Hz) and a
    tail-rotor comb 4–6 times higher, mostly below 1 kHz."""
    t = np.arange(n) / fs
    main = rng.uniform(10.0, 30.0)
    slap = 1.0 + rng.uniform(0.3, 1.0) * np.maximum(np.sin(2 * math.pi * main * t), 0.0) ** rng.uniform(2, 8)
    wash = colored_noise(n, rng, rng.uniform(1.0, 2.0), fs) * slap
    tail = main * rng.uniform(4.0, 6.0)
    k = np.arange(1, 8, dtype=np.float64)
    comb = ((k[:, None] ** -1.0) * np.sin(2 * math.pi * tail * k[:, None] * t[None, :])).sum(0)
    return unit_rms(wash + unit_rms(comb) * rng.uniform(0.1, 0.7))


def wind_noise(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """Wind on a microphone: red noise low-passed at 80–600 Hz, its level swinging ±10 dB and
    more in gusts of 0.3–3 Hz (turbulence at the capsule, not a source: no comb, no direction)."""
    x = colored_noise(n, rng, rng.uniform(1.5, 2.5), fs)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    x = np.fft.irfft(np.fft.rfft(x) / np.sqrt(1.0 + (f / rng.uniform(80.0, 600.0)) ** 4), n=n)
    g = np.fft.rfft(rng.standard_normal(n))
    g[0] = 0.0
    g[(f > rng.uniform(0.3, 3.0)) & (np.arange(f.size) > 2)] = 0.0  # at least the slowest swings
    gust = np.fft.irfft(g, n=n)
    gust = gust / (gust.std() + 1e-12)
    return unit_rms(x * 10 ** (rng.uniform(3.0, 12.0) * gust / 20))


NEGATIVES: dict[str, Callable[[int, int, np.random.Generator], FloatArray]] = {
    "noise": lambda n, fs, rng: colored_noise(n, rng, rng.uniform(0.0, 2.0), fs),
    "ambience": outdoor_ambience,
    "speech": _speech_like,
    "hum": _hum,
    "engine": _engine,
    "rain": _rain,
    "birds": lambda n, fs, rng: unit_rms(BirdVoice(fs, rng).render(n)),
    "aircraft": lambda n, fs, rng: unit_rms(AircraftVoice(fs, rng).render(n)),
    "appliance": _appliance,
    "two_stroke": _two_stroke,
    "siren": _siren,
    "helicopter": _helicopter,
    "wind": wind_noise,
}


def simulated_clip(label: int, rng: np.random.Generator, fs: int = SIM_RATE) -> FloatArray:
    """One clip of SIM_SECONDS: a drone over ambience (label 1) or one of NEGATIVES, often mixed
    with ambience too (label 0), at a random level between -45 and -10 dB RMS."""
    n = int(SIM_SECONDS * fs)
    if label == 1:
        voice = DroneVoice(fs, rng)
        source = unit_rms(_absorb(voice.render(n, float(rng.uniform(0, 15))), fs, float(rng.uniform(5, 300))))
        snr_db = rng.uniform(-3.0, 25.0)
        x = source * 10 ** (snr_db / 20) + outdoor_ambience(n, fs, rng)
    else:
        kind = str(rng.choice(sorted(NEGATIVES)))
        x = NEGATIVES[kind](n, fs, rng)
        if kind not in ("noise", "ambience") and rng.random() < 0.7:
            x = x * 10 ** (rng.uniform(-5, 20) / 20) + outdoor_ambience(n, fs, rng)
    return np.asarray(unit_rms(x) * 10 ** (rng.uniform(-45, -10) / 20))


def simulated_set(n_per_class: int, seed: int) -> tuple[FloatArray, IntArray]:
    """Features and labels of n_per_class clips of each class, alternating drone / not drone."""
    rng = np.random.default_rng(seed)
    labels = np.array([1, 0] * n_per_class, dtype=np.int_)
    feats = np.array([extract(simulated_clip(int(lab), rng), SIM_RATE).values for lab in labels])
    return feats, labels
