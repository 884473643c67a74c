"""What changes between sites, applied to a real clip so that the detector learns the source and not
the room it was recorded in (used by `acoustic_dataset.real_features`).

The real drone clips are two small drones indoors, one microphone, 16 kHz. A mast hears the same
rotors through other physics, so each augmented copy goes through a seeded random chain:

* distance: air absorption (ISO 9613-1, as the simulator) over 0–300 m, high harmonics go first;
* the place: a ground reflection (a delayed copy 0.3–8 ms later, the comb filter of a mast over
  grass or tarmac) and/or reverberation (an exponentially decaying noise tail, RT60 0.05–0.8 s);
* the microphone: a smooth random frequency response (±6 dB over a few octaves, a tilt) and a
  high-pass at 20–200 Hz (wind filters, small capsules);
* wind: gusty low-frequency noise at −5–20 dB below the clip, buffeting in slow bursts;
* other ambient sound mixed at 0–25 dB SNR: a real clip of another recording (given by the caller,
  so that leave-one-session-out can keep the mixtures out of the held-out session's folds) or the
  simulator's outdoor ambience;
* the recorder: the sample rate (16, 22.05, 44.1 or 48 kHz, through the polyphase resampler the
  feature front end then undoes), gain with clipping, a time shift.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from cuas_node.calibration.acoustic_simulated_clips import outdoor_ambience, unit_rms, wind_noise
from cuas_node.drivers.sim.voices import absorption_db_per_m

FloatArray = npt.NDArray[np.float64]
RATES = (16000, 22050, 44100, 48000)


def _filter(x: FloatArray, gain: FloatArray) -> FloatArray:
    return np.asarray(np.fft.irfft(np.fft.rfft(x) * gain, n=x.size))


def _room(x: FloatArray, fs: int, rng: np.random.Generator) -> FloatArray:
    """Ground reflection and/or a reverberant tail."""
    n = x.size
    y = x.copy()
    if rng.random() < 0.5:
        d = int(rng.uniform(0.0003, 0.008) * fs)
        y[d:] += rng.uniform(0.3, 0.9) * x[: n - d]
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.05, 0.8)
        m = int(min(rt60, 0.5) * fs)
        tail = rng.standard_normal(m) * np.exp(-6.9 * np.arange(m) / (rt60 * fs))
        size = 1 << math.ceil(math.log2(n + m))
        wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(tail, size), n=size)[:n]
        wet *= math.sqrt(float(np.mean(y**2)) / (float(np.mean(wet**2)) + 1e-30))
        y = y + wet * 10 ** (-rng.uniform(0.0, 15.0) / 20)
    return y


def _microphone(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """A random smooth response: a tilt of ±3 dB/octave about 1 kHz (bounded to ±9 dB), two bumps
    or dips of ±6 dB about one octave wide, a high-pass at 20–200 Hz (amplitude gains per bin)."""
    f = np.fft.rfftfreq(n, 1.0 / fs)
    octave = np.log2(np.maximum(f, 20.0) / 1000.0)
    db = np.clip(rng.uniform(-3.0, 3.0) * octave, -9.0, 9.0)
    for _ in range(2):
        db = db + rng.uniform(-6.0, 6.0) * np.exp(-0.5 * ((octave - rng.uniform(-3.0, 3.0)) / 0.5) ** 2)
    hp = 1.0 / np.sqrt(1.0 + (rng.uniform(20.0, 200.0) / np.maximum(f, 1.0)) ** 4)
    return np.asarray(10 ** (db / 20) * hp)


def site_augment(
    x: FloatArray, fs: int, rng: np.random.Generator, ambient: FloatArray | None = None
) -> tuple[FloatArray, int]:
    """Another take of a real clip as another site, microphone and recorder would give it
    → (samples at ±1 full scale, sample rate). `ambient` (same rate, any length ≥ 1 sample) is a
    real clip of another recording to mix in; None uses the simulator's outdoor ambience."""
    y = np.asarray(x[int(rng.integers(0, int(0.032 * fs))) :], dtype=np.float64)
    n = y.size
    f = np.fft.rfftfreq(n, 1.0 / fs)
    if rng.random() < 0.7:
        y = _filter(y, 10 ** (-absorption_db_per_m(f) * rng.uniform(0.0, 300.0) / 20))
    if rng.random() < 0.6:
        y = _room(y, fs, rng)
    y = unit_rms(y)
    if rng.random() < 0.4:
        y = y + wind_noise(n, fs, rng) * 10 ** (rng.uniform(-20.0, 5.0) / 20)
    if rng.random() < 0.8:
        if ambient is not None and ambient.size > 0:
            amb = unit_rms(np.resize(np.roll(ambient, int(rng.integers(ambient.size))), n))
        else:
            amb = outdoor_ambience(n, fs, rng)
        y = y + amb * 10 ** (-rng.uniform(0.0, 25.0) / 20)
    if rng.random() < 0.8:
        y = _filter(y, _microphone(n, fs, rng))
    rate = int(rng.choice(RATES))
    if rate != fs:
        from scipy.signal import resample_poly

        g = math.gcd(rate, fs)
        y = np.asarray(resample_poly(y, rate // g, fs // g))
    peak = float(np.max(np.abs(y))) + 1e-12
    return np.asarray(np.clip(y / peak * 10 ** (rng.uniform(-30.0, 3.0) / 20), -1.0, 1.0)), rate
