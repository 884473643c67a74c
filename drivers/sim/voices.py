"""Sound sources for the simulated microphone array and the detector's training clips: each voice
is a stateful synthesiser whose successive `render` calls give a continuous signal in pascals at
1 m, so that the array simulator (`acoustic.py`) and the training script (calibration/
acoustic_train.py) share one physics.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
P_REF = 20e-6  # Pa


def colored_noise(n: int, rng: np.random.Generator, exponent: float, fs: int = 16000) -> FloatArray:
    """Unit-RMS noise with a 1/f^exponent power spectrum (0 white, 1 pink, 2 brown)."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec *= 1.0 / np.maximum(f, 20.0) ** (exponent / 2)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n=n)
    return np.asarray(x / (np.sqrt(np.mean(x**2)) + 1e-20), dtype=np.float64)


def bandpass_noise(n: int, fs: int, lo: float, hi: float, rng: np.random.Generator) -> FloatArray:
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec *= 1.0 / (1.0 + (lo / np.maximum(f, 1.0)) ** 4) / (1.0 + (f / hi) ** 4)
    x = np.fft.irfft(spec, n=n)
    return np.asarray(x / (np.sqrt(np.mean(x**2)) + 1e-20), dtype=np.float64)


class Voice:
    """A stateful source: successive `render` calls give a continuous signal (Pa at 1 m)."""

    def __init__(self, fs: int, rng: np.random.Generator, level_db_1m: float) -> None:
        self.fs = fs
        self.rng = rng
        self.rms_pa = P_REF * 10 ** (level_db_1m / 20)
        self.t = 0.0

    def render(self, n: int, speed_mps: float = 0.0) -> FloatArray:
        x = self._render(n, speed_mps)
        self.t += n / self.fs
        return x * self.rms_pa

    def _render(self, n: int, speed_mps: float) -> FloatArray:
        raise NotImplementedError


class DroneVoice(Voice):
    """Multirotor: each rotor a blade-passing comb at its own f0 (a few % apart: they beat), with
    slow RPM wander, 1/k^β harmonic roll-off and random per-harmonic gains (blade asymmetry), plus
    broadband rotor noise amplitude-modulated at the blade rate. f0 rises with airspeed."""

    def __init__(
        self,
        fs: int,
        rng: np.random.Generator,
        *,
        f0_hz: float | None = None,
        level_db_1m: float = 80.0,
        rotors: int | None = None,
        broadband_db: float | None = None,
    ) -> None:
        super().__init__(fs, rng, level_db_1m)
        self.f0 = f0_hz if f0_hz is not None else float(np.exp(rng.uniform(math.log(80), math.log(1300))))
        self.rotors = rotors if rotors is not None else int(rng.choice([1, 2, 4, 4, 6]))
        self.detune = 1.0 + rng.normal(0.0, 0.012, self.rotors)
        n_harm = max(3, int(min(6000.0, 0.45 * fs) // self.f0))
        self.k = np.arange(1, n_harm + 1, dtype=np.float64)
        beta = rng.uniform(0.4, 1.6)
        self.amp = self.k**-beta * 10 ** (rng.normal(0, 4, (self.rotors, n_harm)) / 20)
        self.amp[:, self.k * self.f0 > 0.45 * fs] = 0.0
        self.phase = rng.uniform(0, 2 * math.pi, (self.rotors, n_harm))
        self.wander_rate = rng.uniform(0.1, 1.5)
        self.wander_depth = rng.uniform(0.002, 0.03)
        self.wander_phase = rng.uniform(0, 2 * math.pi, self.rotors)
        self.broadband = 10 ** ((broadband_db if broadband_db is not None else rng.uniform(-20, 0)) / 20)
        self.bb_mod = rng.uniform(0.1, 0.6)
        # The comb is one fixed waveform of each rotor's cycle count (only the rate at which the
        # cycles pass wanders), so it is tabulated once, not summed harmonic by harmonic per sample.
        self.table = _waveform_table(self.amp, self.phase, self.k)
        self.cycles = np.zeros(self.rotors)

    def _render(self, n: int, speed_mps: float) -> FloatArray:
        t = self.t + np.arange(n) / self.fs
        f0 = self.f0 * (1.0 + 0.012 * min(speed_mps, 25.0))  # more thrust when flying fast
        inst = (
            f0
            * self.detune[:, None]
            * (
                1.0
                + self.wander_depth
                * np.sin(2 * math.pi * self.wander_rate * t[None, :] + self.wander_phase[:, None])
            )
        )  # (R, n)
        cyc = self.cycles[:, None] + np.cumsum(inst, axis=1) / self.fs  # each rotor's cycles so far
        self.cycles = cyc[:, -1] % 1.0
        out = _read_table(self.table, cyc).sum(axis=0)
        tonal_rms = math.sqrt(float(np.mean(out**2))) + 1e-12
        noise = bandpass_noise(n, self.fs, 300.0, min(6000.0, 0.45 * self.fs), self.rng)
        mod = 1.0 + self.bb_mod * np.sin(2 * math.pi * cyc[0])
        out += self.broadband * tonal_rms * noise * mod
        return out / (math.sqrt(float(np.mean(out**2))) + 1e-12)


TABLE_SIZE = 4096
"""Points of one rotor cycle's waveform (`DroneVoice.table`): its highest harmonic (under 6 kHz,
f0 at least 80 Hz: at most 75) gets 54 points a period, where reading between points in a straight
line errs by at most 0.25 % of that harmonic's amplitude, far below the blades' own 4 dB spread."""


def _waveform_table(amp: FloatArray, phase: FloatArray, k: FloatArray) -> FloatArray:
    """(R, TABLE_SIZE + 1) each rotor's comb over one cycle, Σ_k a_k sin(2πkθ + φ_k), closed by its
    first point again so that reading never wraps."""
    theta = np.arange(TABLE_SIZE + 1) / TABLE_SIZE
    return np.stack(
        [
            (a[:, None] * np.sin(2 * math.pi * k[:, None] * theta + p[:, None])).sum(0)
            for a, p in zip(amp, phase, strict=True)
        ]
    )


def _read_table(table: FloatArray, cycles: FloatArray) -> FloatArray:
    """(R, n) each rotor's waveform at its cycle counts (R, n), read linearly between points."""
    where = (cycles % 1.0) * TABLE_SIZE
    i = np.minimum(where.astype(np.intp), TABLE_SIZE - 1)
    f = where - i
    rows = np.arange(table.shape[0])[:, None]
    return np.asarray(table[rows, i] * (1.0 - f) + table[rows, i + 1] * f, dtype=np.float64)


class InsectVoice(Voice):
    """A flying insect: its wingbeat (124-600 Hz: bees, flies, hoverflies, mosquitoes) is a
    harmonic comb like a rotor's, wandering a few % as it manoeuvres, louder and softer as it
    turns. Quiet (45 dB SPL at 10 cm): it matters only within centimetres of a microphone, where
    it is louder than any drone."""

    def __init__(self, fs: int, rng: np.random.Generator, level_db_1m: float = 25.0) -> None:
        super().__init__(fs, rng, level_db_1m)
        self.f0 = float(rng.uniform(124.0, 600.0))
        n_harm = max(2, int(min(6000.0, 0.45 * fs) // self.f0))
        self.k = np.arange(1, n_harm + 1, dtype=np.float64)
        self.amp = self.k ** -rng.uniform(0.8, 1.5) * 10 ** (rng.normal(0, 3, n_harm) / 20)
        self.phase = rng.uniform(0, 2 * math.pi, n_harm)
        self.wander = (rng.uniform(0.3, 2.0), rng.uniform(0.01, 0.04), rng.uniform(0, 2 * math.pi))
        self.tremolo = (rng.uniform(2.0, 8.0), rng.uniform(0.1, 0.4))

    def _render(self, n: int, speed_mps: float) -> FloatArray:
        t = self.t + np.arange(n) / self.fs
        rate, depth, phase = self.wander
        cyc = np.cumsum(self.f0 * (1.0 + depth * np.sin(2 * math.pi * rate * t + phase))) / self.fs
        out = (
            self.amp[:, None] * np.sin(2 * math.pi * self.k[:, None] * cyc[None] + self.phase[:, None])
        ).sum(0)
        self.phase = (self.phase + 2 * math.pi * self.k * cyc[-1]) % (2 * math.pi)
        out *= 1.0 + self.tremolo[1] * np.sin(2 * math.pi * self.tremolo[0] * t)
        return out / (math.sqrt(float(np.mean(out**2))) + 1e-12)


class BirdVoice(Voice):
    """Chirps: short frequency sweeps (2–7 kHz, 20–200 ms) with a harmonic, at random intervals."""

    def __init__(self, fs: int, rng: np.random.Generator, level_db_1m: float = 85.0) -> None:
        super().__init__(fs, rng, level_db_1m)
        self.next_chirp = rng.uniform(0.0, 0.3)

    def _render(self, n: int, speed_mps: float) -> FloatArray:
        out = np.zeros(n)
        t_end = self.t + n / self.fs
        rng = self.rng
        while self.next_chirp < t_end:
            dur = rng.uniform(0.02, 0.2)
            f_start = rng.uniform(1500, min(7000, 0.4 * self.fs))
            f_end = float(np.clip(f_start * rng.uniform(0.5, 1.8), 800, 0.45 * self.fs))
            m = int(dur * self.fs)
            tt = np.arange(m) / self.fs
            f = f_start + (f_end - f_start) * tt / dur
            ph = 2 * math.pi * np.cumsum(f) / self.fs
            chirp = np.hanning(m) * (np.sin(ph) + 0.3 * np.sin(2 * ph))
            start = round((self.next_chirp - self.t) * self.fs)
            lo, hi = max(start, 0), min(start + m, n)
            if hi > lo:
                out[lo:hi] += chirp[lo - start : hi - start]
            self.next_chirp += dur + rng.exponential(0.25)
        return out * 3.0  # chirps are sparse: keep their peaks, not their average, at the level


class AircraftVoice(Voice):
    """Distant aircraft: low-frequency broadband (jet or propeller wash), slowly swelling."""

    def __init__(self, fs: int, rng: np.random.Generator, level_db_1m: float = 130.0) -> None:
        super().__init__(fs, rng, level_db_1m)
        self.exponent = rng.uniform(1.0, 2.0)

    def _render(self, n: int, speed_mps: float) -> FloatArray:
        x = colored_noise(n, self.rng, self.exponent, self.fs)
        return x * (1.0 + 0.2 * math.sin(2 * math.pi * 0.1 * self.t))


def make_voice(kind: str, fs: int, rng: np.random.Generator) -> Voice:
    if kind == "quadcopter":
        return DroneVoice(fs, rng, f0_hz=float(rng.uniform(150, 450)), level_db_1m=80.0, rotors=4)
    if kind == "fixed-wing":
        return DroneVoice(fs, rng, f0_hz=float(rng.uniform(90, 220)), level_db_1m=85.0, rotors=1)
    if kind == "bird":
        return BirdVoice(fs, rng)
    if kind == "insect":
        return InsectVoice(fs, rng)
    return AircraftVoice(fs, rng)


def absorption_db_per_m(f_hz: npt.ArrayLike) -> FloatArray:
    """Air absorption, ISO 9613-1 at 20 °C / 70 % RH within ~30 % over 100 Hz–8 kHz."""
    return np.asarray(4.5e-3 * (np.asarray(f_hz) / 1000.0) ** 1.6, dtype=np.float64)
