"""Simulated microphone array: scenario targets → sound at each microphone → framed PCM bytes.

Each target has a voice (a stateful source synthesiser) whose output is kept as an emission-time
history. A microphone sample received at time t hears the source as emitted at the retarded time
t_e solving t − t_e = |x(t_e) − p_mic| / c, found by fixed-point iteration on the target's position
history, so propagation delay (0.9 s at 300 m) and Doppler come out of the geometry rather than
being added as effects. Amplitude falls as 1/r (spherical spreading, referenced to 1 m), and air
absorption is a range-dependent low-pass applied to the emission (ISO 9613-1 magnitude at 20 °C,
70 % RH, approximated as a power law). Wind (low-frequency, gusty, independent per microphone, as
turbulence at the mic port is) and ambient pink noise are added, the sum is converted to int16 as a
MEMS microphone with a gain would, and cut into protocol frames.

The voices (`voices.py`) are also used, as mono clips, by the detector's training script (calibration/
acoustic_train.py): the simulator and the training data share one physics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.geometry import ArrayGeometry
from cuas_node.drivers.acoustic.protocol import FLAG_UTC, encode_frame
from cuas_node.drivers.sim.voices import (
    P_REF,
    DroneVoice,
    Voice,
    absorption_db_per_m,
    bandpass_noise,
    colored_noise,
    make_voice,
)
from cuas_node.kernel.physics import SPEED_OF_SOUND_MPS
from cuas_node.kernel.pose import Pose

FloatArray = npt.NDArray[np.float64]
NEAREST_M = 0.01  # spherical spreading is taken to stop at a microphone port's size
DELAY_GRID = 16  # samples between solves of the propagation delay (`SimAcousticArray._received`)


@dataclass
class _Track:
    voice: Voice
    times: list[float] = field(default_factory=list)
    positions: list[FloatArray] = field(default_factory=list)
    velocities: list[FloatArray] = field(default_factory=list)
    emission_t0: float = 0.0  # emission time of history sample 0
    emission: FloatArray = field(default_factory=lambda: np.zeros(0))
    raw_tail: FloatArray = field(default_factory=lambda: np.zeros(0))

    def position(self, t: FloatArray) -> FloatArray:
        """Position at times t: linear between recorded states, extrapolated by the last velocity."""
        times = np.asarray(self.times)
        pos = np.asarray(self.positions)
        out = np.empty((t.size, 3))
        for axis in range(3):
            out[:, axis] = np.interp(t, times, pos[:, axis])
        after = t > times[-1]
        if after.any():
            out[after] = pos[-1] + (t[after] - times[-1])[:, None] * self.velocities[-1]
        return out


class SimAcousticArray:
    """Synthesises a mic array's stream. Call `block(t_end, ids, kinds, enu, vel)` with the targets'
    state at successive times; each call returns the frames covering audio up to `t_end`."""

    def __init__(
        self,
        geometry: ArrayGeometry,
        pose: Pose,
        *,
        sample_rate: int = 16000,
        seed: int = 0,
        frame_samples: int = 256,
        epoch: float = 0.0,
        gain_db: float = 30.0,
        ambient_db_spl: float = 40.0,
        wind_db_spl: float = 45.0,
        max_range_m: float = 2000.0,
        wire_channels: int | None = None,
    ) -> None:
        self.geometry = geometry
        self.pose = pose
        self.fs = sample_rate
        self.rng = np.random.default_rng(seed)
        self.frame_samples = frame_samples
        self.epoch = epoch
        self.mics_enu = pose.sensor_to_enu(geometry.positions)  # (M, 3)
        # MEMS microphone: 94 dB SPL (1 Pa) = −26 dBFS, then a programmable gain.
        self.pa_to_fs = 10 ** ((-26.0 + gain_db) / 20)
        self.ambient_pa = P_REF * 10 ** (ambient_db_spl / 20)
        self.wind_pa = P_REF * 10 ** (wind_db_spl / 20)
        self.max_range_m = max_range_m
        self.history_s = max_range_m / SPEED_OF_SOUND_MPS + 1.0
        self.wire_channels = wire_channels or max(geometry.channel_map) + 1
        self.tracks: dict[str, _Track] = {}
        self.sample_index = 0  # next sample to produce
        self.sequence = 0
        self._pending = np.zeros((0, self.wire_channels))
        self._pending_start = 0
        self._gust_phase = float(self.rng.uniform(0, 2 * math.pi))

    def _update_tracks(
        self, t: float, ids: Sequence[str], kinds: Sequence[str], enu: FloatArray, vel: FloatArray
    ) -> None:
        for i, tid in enumerate(ids):
            track = self.tracks.get(tid)
            if track is None:
                voice = make_voice(kinds[i], self.fs, np.random.default_rng(self.rng.integers(1 << 31)))
                # Silent before it appeared: history starts now.
                track = self.tracks[tid] = _Track(voice=voice, emission_t0=t)
            track.times.append(t)
            track.positions.append(np.asarray(enu[i], dtype=np.float64))
            track.velocities.append(np.asarray(vel[i], dtype=np.float64))

    def _emit(self, track: _Track, t_end: float) -> None:
        """Extend the target's emission history up to t_end, absorption-filtered for its range."""
        n_have = track.emission.size
        n_new = math.floor((t_end - track.emission_t0) * self.fs) - n_have
        if n_new <= 0:
            return
        speed = float(np.linalg.norm(track.velocities[-1]))
        raw = track.voice.render(n_new, speed)
        rng_m = float(np.linalg.norm(track.positions[-1] - self.mics_enu.mean(axis=0)))
        taps = 65
        f = np.fft.rfftfreq(256, 1.0 / self.fs)
        gain = 10 ** (-absorption_db_per_m(f) * rng_m / 20)
        h = np.fft.irfft(gain, n=256)
        h = np.roll(h, taps // 2)[:taps] * np.hanning(taps + 2)[1:-1]
        joined = np.concatenate([track.raw_tail, raw])
        filtered = np.convolve(joined, h, mode="full")[track.raw_tail.size : track.raw_tail.size + n_new]
        track.raw_tail = joined[-(taps - 1) :]
        track.emission = np.concatenate([track.emission, filtered])
        keep = int(self.history_s * self.fs)
        if track.emission.size > keep:  # forget what no microphone can still hear
            drop = track.emission.size - keep
            track.emission = track.emission[drop:]
            track.emission_t0 += drop / self.fs

    def _received(self, track: _Track, t_rx: FloatArray) -> FloatArray:
        """(n, M) pressure at the microphones from one target: retarded time, 1/r, interpolation.
        The path length is solved on a grid `DELAY_GRID` samples apart and interpolated between:
        it changes by v/c of the grid step per step (0.2 ms at 14 m/s over 4 ms), and a straight
        line between grid points errs by under a tenth of that where the trajectory bends (its
        states are piecewise linear), so the tones keep their phase while the solve costs a
        sixteenth of solving every sample (it was most of the demo's synthesis time)."""
        grid = np.append(t_rx[::DELAY_GRID], t_rx[-1])  # (G,), both ends included
        mics = self.mics_enu  # (M, 3)

        def path(t_e: FloatArray) -> FloatArray:  # (G, M) emission times → path lengths
            where = track.position(t_e.ravel()).reshape(*t_e.shape, 3)
            return np.asarray(np.sqrt(((where - mics) ** 2).sum(axis=-1)), dtype=np.float64)

        t_e = np.repeat(grid[:, None], mics.shape[0], axis=1)
        dist = path(t_e)
        for _ in range(3):  # fixed point: converges like (v/c)^k
            dist = path(grid[:, None] - dist / SPEED_OF_SOUND_MPS)
        dist_rx = np.column_stack([np.interp(t_rx, grid, d) for d in dist.T])  # (n, M)
        pos = ((t_rx[:, None] - dist_rx / SPEED_OF_SOUND_MPS) - track.emission_t0) * self.fs
        # 1/r down to the scale of a capsule's port: an insect at a microphone is loud there.
        out = _cubic_interp(track.emission, pos.ravel()).reshape(pos.shape) / np.maximum(dist_rx, NEAREST_M)
        out[dist_rx > self.max_range_m] = 0.0
        return out

    def block(
        self,
        t_end: float,
        ids: Sequence[str],
        kinds: Sequence[str],
        enu: npt.ArrayLike,
        vel: npt.ArrayLike,
    ) -> bytes:
        """Audio from the previous call up to scenario time `t_end`, as protocol frames."""
        enu_a = np.asarray(enu, dtype=np.float64).reshape(-1, 3)
        vel_a = np.asarray(vel, dtype=np.float64).reshape(-1, 3)
        self._update_tracks(t_end, ids, kinds, enu_a, vel_a)
        n = math.floor(t_end * self.fs) - self.sample_index
        if n <= 0:
            return b""
        t_rx = (self.sample_index + np.arange(n)) / self.fs
        pressure = np.zeros((n, self.geometry.n_mics))
        for track in self.tracks.values():
            if track.times[-1] < t_end - 5.0:
                continue  # gone from the scenario long enough to be out of earshot
            self._emit(track, t_end)
            pressure += self._received(track, t_rx)
        pressure += self._noise(n, t_rx)
        samples = np.zeros((n, self.wire_channels))
        samples[:, list(self.geometry.channel_map)] = pressure * self.pa_to_fs * 32768.0
        self.sample_index += n
        return self._frames(samples)

    def _noise(self, n: int, t_rx: FloatArray) -> FloatArray:
        m = self.geometry.n_mics
        ambient = np.stack([colored_noise(n, self.rng, 1.0, self.fs) for _ in range(m)], axis=1)
        wind = np.stack([bandpass_noise(n, self.fs, 5.0, 120.0, self.rng) for _ in range(m)], axis=1)
        gust = 0.6 + 0.4 * np.sin(2 * math.pi * 0.15 * t_rx + self._gust_phase) ** 2
        return ambient * self.ambient_pa + wind * (self.wind_pa * gust)[:, None]

    def _frames(self, samples: FloatArray) -> bytes:
        buf = np.concatenate([self._pending, samples], axis=0)
        fs_n = self.frame_samples
        n_frames = buf.shape[0] // fs_n
        out = bytearray()
        for k in range(n_frames):
            start_index = self._pending_start + k * fs_n
            t_us = round((self.epoch + start_index / self.fs) * 1e6)
            out += encode_frame(buf[k * fs_n : (k + 1) * fs_n], self.fs, self.sequence, t_us, flags=FLAG_UTC)
            self.sequence += 1
        self._pending = buf[n_frames * fs_n :]
        self._pending_start += n_frames * fs_n
        return bytes(out)


def _cubic_interp(x: FloatArray, pos: FloatArray) -> FloatArray:
    """4-point Lagrange interpolation of x at fractional indices; zero outside the history."""
    i = np.floor(pos).astype(np.intp)
    f = pos - i
    xp = np.concatenate([np.zeros(2), x, np.zeros(3)])
    j = np.clip(i + 2, 1, xp.size - 3)
    ym1, y0, y1, y2 = xp[j - 1], xp[j], xp[j + 1], xp[j + 2]
    c0 = -f * (f - 1) * (f - 2) / 6
    c1 = (f + 1) * (f - 1) * (f - 2) / 2
    c2 = -(f + 1) * f * (f - 2) / 2
    c3 = (f + 1) * f * (f - 1) / 6
    y = c0 * ym1 + c1 * y0 + c2 * y1 + c3 * y2
    valid = (pos >= 0) & (pos <= x.size - 1)
    return np.asarray(np.where(valid, y, 0.0), dtype=np.float64)


def synth_array_block(
    geometry: ArrayGeometry,
    sample_rate: int,
    az_rad: float,
    el_rad: float,
    seconds: float,
    snr_db: float,
    seed: int = 0,
    f0_hz: float = 200.0,
) -> FloatArray:
    """A far-field drone at (az, el) in the sensor frame plus independent white sensor noise at the
    given per-channel SNR, (n, M) in full-scale units: the fixture of the DoA tests and benchmark.
    Delays are applied exactly in the frequency domain (fractional, circular over a padded span)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    pad = n + 4096
    voice = DroneVoice(sample_rate, rng, f0_hz=f0_hz, level_db_1m=80.0, rotors=4, broadband_db=-6.0)
    s = voice.render(pad)
    spec = np.fft.rfft(s)
    f = np.fft.rfftfreq(pad, 1.0 / sample_rate)
    ce = math.cos(el_rad)
    u = np.array([ce * math.sin(az_rad), ce * math.cos(az_rad), math.sin(el_rad)])
    tau = -(geometry.positions @ u) / SPEED_OF_SOUND_MPS  # arrival delay relative to the centre
    x = np.fft.irfft(spec[None, :] * np.exp(-2j * math.pi * f[None, :] * tau[:, None]), n=pad)[:, :n].T
    x /= np.sqrt(np.mean(x**2)) * 10  # −20 dBFS
    noise = rng.standard_normal(x.shape) * 0.1 * 10 ** (-snr_db / 20)
    return np.asarray(x + noise, dtype=np.float64)
