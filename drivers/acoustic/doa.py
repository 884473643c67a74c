"""Direction of arrival by SRP-PHAT over a direction grid, the ODAS way, vectorised in numpy.

Why this method: a drone is a broadband-plus-harmonics source at low SNR, heard by a small array
(8 cm for the ReSpeaker 4-mic). PHAT whitening makes every frequency bin vote equally for a time
difference, so the strong low harmonics do not swamp the geometry, and summing the pairs'
cross-correlations over a grid of candidate directions (steered response power) uses all pairs
jointly, which is what makes a 4-microphone array usable. Spatial aliasing above c/2d is tamed by
that sum: aliased lobes of different pairs fall in different directions.

Per block: STFT → per-cell PHAT-normalised cross-spectra averaged over frames, kept in the drone
band → one inverse FFT per pair with ×`interp` zero-padding (a fine lag axis) → for every grid
direction the pairs' correlations are read at that direction's lags (linear interpolation; lag
tables are precomputed) and averaged. The grid is a Fibonacci sphere (near-uniform cells); peaks
are refined on a local az/el grid, and their widths give the uncertainty.

Planar arrays (all the Pi presets) hear a direction and its mirror image in the array plane
identically, so the search keeps one hemisphere: the sky side when the mount pose is known
(otherwise the array's +z side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.geometry import ArrayGeometry
from cuas_node.kernel.physics import SPEED_OF_SOUND_MPS
from cuas_node.kernel.pose import Pose

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class DoaOptions:
    band_hz: tuple[float, float] = (100.0, 4000.0)
    frame_s: float = 0.032  # STFT frame: long enough to resolve harmonics, short against motion
    lag_rate_hz: float = 256000.0  # lag-axis resolution: the correlations are oversampled to this rate
    grid_points: int = 2000  # on the full sphere; a hemisphere search uses about half
    max_sources: int = 3
    min_separation_deg: float = 25.0
    relative_threshold: float = 0.6  # a secondary peak must reach this fraction of the main one
    min_coherence: float = 0.02  # peaks below this mean PHAT correlation are noise
    min_sigma_deg: float = 0.5  # floor for model errors (mic positions, speed of sound, wind)
    speed_of_sound_mps: float = SPEED_OF_SOUND_MPS


@dataclass(frozen=True, slots=True)
class DoaPeak:
    """One source direction in the sensor frame, with its 1-sigma uncertainty."""

    az_rad: float
    el_rad: float
    sigma_az_rad: float
    sigma_el_rad: float
    coherence: float  # mean PHAT cross-correlation of the pairs at the peak, 0..1
    snr_db: float  # coherent-to-incoherent power ratio implied by the coherence
    unit: FloatArray  # (3,) direction vector


def unit_vectors(az: npt.ArrayLike, el: npt.ArrayLike) -> FloatArray:
    """Sensor-frame unit vectors (..., 3) for azimuth (from +y towards +x) and elevation."""
    a = np.asarray(az, dtype=np.float64)
    e = np.asarray(el, dtype=np.float64)
    ce = np.cos(e)
    return np.stack([ce * np.sin(a), ce * np.cos(a), np.sin(e)], axis=-1)


def fibonacci_sphere(n: int) -> FloatArray:
    """n near-uniformly spread unit vectors on the sphere."""
    k = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * k / n
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))
    phi = math.pi * (3.0 - math.sqrt(5.0)) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def stft(x: FloatArray, nfft: int, hop: int) -> ComplexArray:
    """(n, M) samples → (T, M, nfft//2+1) spectra with a Hann window (no padding: whole frames only)."""
    n = x.shape[0]
    if n < nfft:
        x = np.concatenate([x, np.zeros((nfft - n, x.shape[1]))], axis=0)
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft, axis=0)[::hop]  # (T, M, nfft)
    window = np.hanning(nfft + 1)[:-1]
    return np.fft.rfft(frames * window, axis=-1)


class SrpPhat:
    """A direction finder for one array and sample rate; construct once, call `localise` per block."""

    def __init__(
        self,
        geometry: ArrayGeometry,
        sample_rate: int,
        options: DoaOptions | None = None,
        pose: Pose | None = None,
    ) -> None:
        self.geometry = geometry
        self.fs = sample_rate
        self.opt = opt = options or DoaOptions()
        self.nfft = 1 << max(6, math.ceil(math.log2(opt.frame_s * sample_rate)))
        self.hop = self.nfft // 2
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / sample_rate)
        hi = min(opt.band_hz[1], 0.45 * sample_rate)
        self.band = np.flatnonzero((freqs >= opt.band_hz[0]) & (freqs <= hi))
        self.pair_i, self.pair_j = geometry.pairs()
        # Linear interpolation between lags biases the peak unless the lag axis is fine: oversample.
        self.interp = 1 << max(0, math.ceil(math.log2(opt.lag_rate_hz / sample_rate)))
        self.n_lag = self.nfft * self.interp
        # Hemisphere: planar arrays cannot tell a direction from its mirror image in their plane.
        grid = fibonacci_sphere(opt.grid_points)
        self.keep_normal: FloatArray | None = None
        if geometry.planar:
            normal = geometry.normal
            if pose is not None and float((pose.rotation @ normal)[2]) < 0:
                normal = -normal  # the array is mounted upside down: the sky is on its -z side
            self.keep_normal = normal
            grid = grid[grid @ normal >= -1e-9]
        self.grid = grid
        self.grid_lags = self._lags(grid)
        spacing = math.sqrt(4 * math.pi / opt.grid_points)
        self.spacing_rad = spacing
        # Neighbours within ~2 cells, for the local-maximum test on the coarse map.
        cos_sep = grid @ grid.T
        self.neighbours = np.argsort(-cos_sep, axis=1)[:, 1:9]
        self._cos_min_sep = math.cos(math.radians(opt.min_separation_deg))

    def _lags(self, u: FloatArray) -> FloatArray:
        """Lag of each pair (P, D) in oversampled samples for directions u (D, 3)."""
        p = self.geometry.positions
        delta = p[self.pair_j] - p[self.pair_i]  # τ_i − τ_j = (p_j − p_i)·u / c
        return (delta @ u.T) * (self.fs * self.interp / self.opt.speed_of_sound_mps)

    def correlations(self, x: FloatArray) -> tuple[FloatArray, int]:
        """Band-limited, PHAT-weighted cross-correlations (P, n_lag), normalised so that a perfectly
        coherent pair peaks at 1; and the number of STFT frames they average."""
        spec = stft(x, self.nfft, self.hop)[:, :, self.band]  # (T, M, Fb)
        # PHAT: each pair's cross-spectrum over its magnitude, which is the product of the two
        # channels' phases (normalised per channel: M of them, not M(M-1)/2 pairs).
        phase = spec / (np.abs(spec) + _EPS)
        g = np.einsum("tpf,tpf->pf", phase[:, self.pair_i, :], phase[:, self.pair_j, :].conj())
        g /= spec.shape[0]
        full = np.zeros((g.shape[0], self.nfft // 2 + 1), dtype=np.complex128)
        full[:, self.band] = g
        cc = np.fft.irfft(full, n=self.n_lag, axis=-1) * (self.n_lag / (2.0 * max(1, self.band.size)))
        return cc, int(spec.shape[0])

    def _srp(self, cc: FloatArray, lags: FloatArray) -> FloatArray:
        """Mean over pairs of the correlations read at fractional lags (P, D) → (D,)."""
        base = np.floor(lags)
        frac = lags - base
        idx = base.astype(np.intp) % self.n_lag
        lo = np.take_along_axis(cc, idx, axis=1)
        hi = np.take_along_axis(cc, (idx + 1) % self.n_lag, axis=1)
        return np.asarray((lo + frac * (hi - lo)).mean(axis=0), dtype=np.float64)

    def srp_at(self, cc: FloatArray, u: FloatArray) -> FloatArray:
        return self._srp(cc, self._lags(np.atleast_2d(u)))

    def power_map(self, x: FloatArray) -> FloatArray:
        """The coarse SRP map over `self.grid` (for plots and tests)."""
        cc, _ = self.correlations(np.asarray(x, dtype=np.float64))
        return self._srp(cc, self.grid_lags)

    def localise(self, x: npt.ArrayLike) -> list[DoaPeak]:
        """Directions of up to `max_sources` sources in an (n, M) block, strongest first."""
        block = np.asarray(x, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != self.geometry.n_mics or self.band.size == 0:
            raise ValueError(f"expected (n, {self.geometry.n_mics}) samples")
        cc, n_frames = self.correlations(block)
        power = self._srp(cc, self.grid_lags)
        nbr_max = power[self.neighbours].max(axis=1)
        candidates = np.flatnonzero(power >= nbr_max)
        candidates = candidates[np.argsort(-power[candidates])]
        peaks: list[DoaPeak] = []
        if candidates.size == 0:
            return peaks
        top = float(power[candidates[0]])
        for d in candidates:
            if len(peaks) >= self.opt.max_sources or power[d] < max(self.opt.min_coherence, 0.0):
                break
            if peaks and power[d] < self.opt.relative_threshold * top:
                break
            u0 = self.grid[d]
            if any(float(u0 @ p.unit) > self._cos_min_sep for p in peaks):
                continue
            peak = self._refine(cc, u0, n_frames)
            if any(float(peak.unit @ p.unit) > self._cos_min_sep for p in peaks):
                continue
            peaks.append(peak)
        return peaks

    def _fold(self, u: FloatArray) -> FloatArray:
        """Mirror directions that left the kept hemisphere back across the array plane."""
        if self.keep_normal is None:
            return u
        n = self.keep_normal
        side = u @ n
        return np.asarray(np.where((side < 0)[..., None], u - 2 * side[..., None] * n, u), dtype=np.float64)

    def _refine(self, cc: FloatArray, u0: FloatArray, n_frames: int) -> DoaPeak:
        az = math.atan2(float(u0[0]), float(u0[1]))
        el = math.asin(float(np.clip(u0[2], -1.0, 1.0)))
        step = self.spacing_rad
        offsets = np.linspace(-1.0, 1.0, 9)
        for _ in range(3):  # three zooms: ±1, ±1/4, ±1/16 of a grid cell
            span_az = step / max(math.cos(el), 0.05)
            a = az + offsets[:, None] * span_az
            e = np.clip(el + offsets[None, :] * step, -math.pi / 2, math.pi / 2)
            aa, ee = np.broadcast_arrays(a, e)
            u = self._fold(unit_vectors(aa.ravel(), ee.ravel()))
            p = self.srp_at(cc, u)
            best = u[int(np.argmax(p))]
            az = math.atan2(float(best[0]), float(best[1]))
            el = math.asin(float(np.clip(best[2], -1.0, 1.0)))
            step /= 4.0
        u_best = unit_vectors(az, el)
        # Peak shape: curvature along azimuth and elevation at ±delta (angles on the sphere).
        delta = 0.5 * self.spacing_rad
        d_az = delta / max(math.cos(el), 0.05)
        probes = unit_vectors(
            np.array([az, az + d_az, az - d_az, az, az]), np.array([el, el, el, el + delta, el - delta])
        )
        p0, pa1, pa2, pe1, pe2 = self.srp_at(cc, self._fold(probes))
        coherence = float(np.clip(p0, 0.0, 0.999))
        snr = coherence / (1.0 - coherence)
        gain = math.sqrt(1.0 + snr * n_frames)
        floor = math.radians(self.opt.min_sigma_deg)

        def sigma(p_plus: float, p_minus: float, h: float) -> float:
            curvature = (2 * p0 - p_plus - p_minus) / h**2
            width = math.sqrt(max(p0, 1e-3) / curvature) if curvature > 1e-9 else math.pi
            return float(min(math.pi, max(floor, width / gain)))

        return DoaPeak(
            az_rad=az,
            el_rad=el,
            sigma_az_rad=sigma(pa1, pa2, d_az),
            sigma_el_rad=sigma(pe1, pe2, delta),
            coherence=coherence,
            snr_db=10.0 * math.log10(max(snr, 1e-6)),
            unit=u_best,
        )
