"""Motion and measurement models, vectorised over all tracks at once.

The state of a track is [e, n, u, ve, vn, vu] in the node's ENU frame. Every function takes
stacked arrays (K tracks first) so that a fusion step is a fixed number of numpy operations
whatever the number of tracks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cuas_node.kernel.pose import Pose, wrap

FloatArray = npt.NDArray[np.float64]
STATE_DIM = 6
RADAR_DIM = 4  # range, azimuth, elevation, radial velocity
_EYE3 = np.eye(3)


def _cv_masks() -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Where dt, dt²/2 and dt³/3 enter F and Q (constant patterns, so that F and Q for every
    track are a few broadcast products rather than a dozen indexed writes each)."""
    vel = np.zeros((STATE_DIM, STATE_DIM))
    pos_pos, pos_vel, vel_vel = (np.zeros((STATE_DIM, STATE_DIM)) for _ in range(3))
    for axis in range(3):
        vel[axis, axis + 3] = 1.0
        pos_pos[axis, axis] = 1.0
        pos_vel[axis, axis + 3] = pos_vel[axis + 3, axis] = 1.0
        vel_vel[axis + 3, axis + 3] = 1.0
    return vel, pos_pos, pos_vel, vel_vel


_VEL, _POS_POS, _POS_VEL, _VEL_VEL = _cv_masks()
_EYE = np.eye(STATE_DIM)
CLIMB_PRIOR_SIGMA_MPS = 3.0
"""1σ of a new track's vertical velocity, whatever its horizontal prior. Small drones mostly fly
level and climb at a few m/s (consumer multirotors at most 5–8 m/s, fixed-wing less), while a
radar's elevation is often its worst coordinate (1° is 35 m at 2 km): with the broad speed prior
on the vertical as well, a young track fits its height as a sloping line through noisy plots
instead of averaging them (docs/architecture.md, Birth state). A faster climb costs nothing: a
drone climbing at 6 or 10 m/s is followed as well as under the broad prior, since the vertical
process noise, not the prior, sets how a steady climb is followed (6 m/s: tests/test_radar_3d.py)."""


def velocity_prior(speed_sigma_mps: float) -> FloatArray:
    """(3,3) covariance of a new track's velocity: `speed_sigma_mps` on each horizontal axis, the
    smaller of it and `CLIMB_PRIOR_SIGMA_MPS` vertically."""
    climb = min(speed_sigma_mps, CLIMB_PRIOR_SIGMA_MPS)
    return np.diag([speed_sigma_mps**2, speed_sigma_mps**2, climb**2])


def axis_noise(accel_h: float, accel_v: float) -> FloatArray:
    """The (6,6) pattern of each entry's axis's acceleration variance (horizontal for e and n,
    vertical for u): Q = axis_noise ⊙ (the white-acceleration pattern in dt)."""
    per_axis = np.array([accel_h, accel_h, accel_v] * 2) ** 2
    return np.sqrt(per_axis[:, None] * per_axis[None, :])


def cv_matrix(dt: FloatArray) -> FloatArray:
    """F (K,6,6) of the constant-velocity model for each dt (K,)."""
    return np.asarray(_EYE + dt[:, None, None] * _VEL, dtype=np.float64)


def turn_matrix(dt: FloatArray, omega: FloatArray) -> FloatArray:
    """F (K,R,6,6) of a coordinated turn at each rate omega (R,) rad/s (counter-clockwise seen from
    above, 0: constant velocity) for each dt (K,): the horizontal velocity turns by omega·dt at
    constant speed while the position follows the arc; the vertical is constant-velocity."""
    k, n = dt.shape[0], omega.shape[0]
    f = np.broadcast_to(cv_matrix(dt)[:, None], (k, n, STATE_DIM, STATE_DIM)).copy()
    turning = omega != 0.0
    if turning.any():
        w = omega[turning]
        angle = dt[:, None] * w[None]
        sin, cos = np.sin(angle), np.cos(angle)
        # sin(ωt)/ω and (1 − cos ωt)/ω, the arc's along- and across-track reach per unit velocity.
        along, across = sin / w, (1.0 - cos) / w
        block = f[:, turning]
        block[..., 0, 3], block[..., 0, 4] = along, -across
        block[..., 1, 3], block[..., 1, 4] = across, along
        block[..., 3, 3], block[..., 3, 4] = cos, -sin
        block[..., 4, 3], block[..., 4, 4] = sin, cos
        f[:, turning] = block
    return f


def white_accel_pattern(dt: FloatArray) -> FloatArray:
    """Q (K,6,6) of a unit white acceleration on every axis; times `axis_noise`, a model's Q."""
    d = dt[:, None, None]
    return np.asarray(d * d * d / 3.0 * _POS_POS + d * d / 2.0 * _POS_VEL + d * _VEL_VEL, dtype=np.float64)


def cv_predict(
    x: FloatArray, p: FloatArray, dt: FloatArray, noise: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Constant-velocity prediction of states (K,6) and covariances (K,6,6) by dt (K,) of either
    sign, with `noise` an `axis_noise` pattern (vertical stiffer than horizontal: small drones
    climb far more gently than they turn). Forward, the noise of the interval is added after the
    transition (F P Fᵀ + Q); backward, the state then was the state now less that noise, carried
    back (F (P + Q) Fᵀ with F = F(dt < 0))."""
    f = cv_matrix(dt)
    q = white_accel_pattern(np.abs(dt)) * noise
    back = (dt < 0.0)[:, None, None]
    cov = np.where(back, f @ (p + q) @ f.transpose(0, 2, 1), f @ p @ f.transpose(0, 2, 1) + q)
    return np.einsum("kab,kb->ka", f, x), cov


def radar_predict(x: FloatArray, pose: Pose) -> tuple[FloatArray, FloatArray]:
    """Predicted radar measurement h(x) (K,4) and its analytic Jacobian H (K,4,6)."""
    k = x.shape[0]
    # Position and velocity into the sensor frame by one product: rows (2K,3) times R. A 2-D
    # product, not a stack of (2,3) @ (3,3): numpy's broadcast matmul of small matrices costs
    # several times more than one BLAS call over all rows.
    offset = np.concatenate([pose.offset_enu_m, np.zeros(3)])
    sensor = ((x - offset).reshape(2 * k, 3) @ pose.rotation).reshape(k, 2, 3)
    ps, vs = sensor[:, 0], sensor[:, 1]
    sx, sy, sz = ps[:, 0], ps[:, 1], ps[:, 2]
    rho2 = np.maximum(sx * sx + sy * sy, 1e-9)
    rho = np.sqrt(rho2)
    r2 = rho2 + sz * sz
    r = np.sqrt(r2)
    rdot = np.einsum("ki,ki->k", ps, vs) / r
    z = np.stack([r, np.arctan2(sx, sy), np.arctan2(sz, rho), rdot], axis=1)

    # Jacobian w.r.t. the sensor-frame position and velocity, (K,4,2,3): row, [position|velocity], axis.
    js = np.zeros((k, RADAR_DIM, 2, 3))
    los = ps / r[:, None]
    js[:, 0, 0] = los
    js[:, 1, 0, 0] = sy / rho2
    js[:, 1, 0, 1] = -sx / rho2
    c = -sz / (r2 * rho)
    js[:, 2, 0, 0] = sx * c
    js[:, 2, 0, 1] = sy * c
    js[:, 2, 0, 2] = rho / r2
    js[:, 3, 0] = vs / r[:, None] - (rdot / r2)[:, None] * ps
    js[:, 3, 1] = los
    # Back to ENU: each 3-vector block times Rᵀ (v_sensor = Rᵀ v_enu, so ∂/∂v_enu = ∂/∂v_sensor · Rᵀ).
    h = (js.reshape(k * RADAR_DIM * 2, 3) @ pose.rotation.T).reshape(k, RADAR_DIM, STATE_DIM)
    return z, h


def range_rate_curvature(x: FloatArray, p: FloatArray, pose: Pose) -> FloatArray:
    """(K,) the second-order part of the range-rate's predicted variance, ½ tr(A P A P), A the
    Hessian of ṙ = p·v/|p| over the state (p from the radar).

    ∂ṙ/∂p is the tangential velocity over the range: a track that knows its position to metres
    but its velocity to several m/s knows that slope poorly, and the first-order H P Hᵀ, which
    takes it as exact, is several times too small beside a range-rate measured to a tenth of a
    m/s (position NEES 7–17 in a young track's first seconds). Blocks: ∂²ṙ/∂v² = 0,
    ∂²ṙ/∂p∂v = (I − u uᵀ)/r, ∂²ṙ/∂p² = −(u gᵀ + g uᵀ)/r − ṙ (I − u uᵀ)/r², with u = p/r and
    g = ∂ṙ/∂p = (v − ṙ u)/r."""
    # ṙ = u·v is the same in any frame: no rotation into the sensor's is needed.
    k = x.shape[0]
    d = x[:, :3] - pose.offset_enu_m
    v = x[:, 3:]
    r = np.maximum(np.sqrt(np.einsum("ki,ki->k", d, d)), 1e-6)
    u = d / r[:, None]
    rdot = np.einsum("ki,ki->k", u, v)
    g = (v - rdot[:, None] * u) / r[:, None]
    across = (_EYE3 - u[:, :, None] * u[:, None, :]) / r[:, None, None]
    a = np.zeros((k, STATE_DIM, STATE_DIM))
    ug = u[:, :, None] * g[:, None, :]
    a[:, :3, :3] = -(ug + ug.transpose(0, 2, 1) + rdot[:, None, None] * across) / r[:, None, None]
    a[:, :3, 3:] = across
    a[:, 3:, :3] = across
    ap = a @ p
    return np.asarray(0.5 * np.einsum("kij,kji->k", ap, ap), dtype=np.float64)


def whiten(s: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """W b (P,D,M) and ln|S| row by row (P,D: 2 ln L_ii, summing to ln|S|; row i of W b and of it
    are the evidence of measurement row i given the rows before it) for covariances S (P,D,D)
    and right-hand sides b (P,D,M), where
    WᵀW = S⁻¹ (W = L⁻¹, L the Cholesky factor of S): what gating's Mahalanobis distances and
    the Kalman update ask of S, from one factorisation and a forward substitution over the D
    rows, without an inverse or a second factorisation for the determinant (for ν, |Wν|² = νᵀ
    S⁻¹ ν; for H P, (W H P)ᵀ (W H P) = P Hᵀ S⁻¹ H P). A covariance that rounding has left not
    positive definite is replaced by the nearest positive definite one (its eigenvalues raised to
    a small positive floor) and factorised as the others."""
    lower = cholesky_lower(s)
    return forward_substitute(lower, b), log_det_rows(lower)


def log_det_rows(lower: FloatArray) -> FloatArray:
    """2 ln L_ii (…,D) of Cholesky factors L (…,D,D): row by row, ln|S| (`whiten`)."""
    return np.asarray(2.0 * np.log(np.diagonal(lower, axis1=-2, axis2=-1)), dtype=np.float64)


def cholesky_lower(s: FloatArray) -> FloatArray:
    """The Cholesky factors L (P,D,D) of covariances S (P,D,D) (`whiten`), a covariance rounding
    has left not positive definite replaced by the nearest positive definite one."""
    try:
        return np.asarray(np.linalg.cholesky(s), dtype=np.float64)
    except np.linalg.LinAlgError:
        pass
    # The nearest positive definite matrices for those that are not (the others factorised as
    # they are: a batch mixes pairs of every track), factorised as the others: rows stay rows
    # (the IMM weighs a radar's range-rate row apart, `imm.RANGE_RATE_EVIDENCE`).
    lam, vec = np.linalg.eigh(s)
    floor = 1e-9 * np.maximum(np.abs(lam).max(axis=1, keepdims=True), 1e-300)
    bad = lam[:, 0] <= 0.0  # (ascending): not positive definite
    lower = np.zeros_like(s)
    try:
        lower[~bad] = np.linalg.cholesky(s[~bad])
    except np.linalg.LinAlgError:  # positive eigenvalues, yet too ill-conditioned to factorise
        bad[:] = True
    fixed = (vec[bad] * np.maximum(lam[bad], floor[bad])[:, None, :]) @ vec[bad].swapaxes(1, 2)
    lower[bad] = np.linalg.cholesky(fixed)
    return lower


def forward_substitute(lower: FloatArray, b: FloatArray) -> FloatArray:
    """L⁻¹ b (P,D,M) for lower triangular L (P,D,D), row by row over the D rows."""
    y = np.empty_like(b)
    y[:, 0] = b[:, 0] / lower[:, 0, 0, None]
    for i in range(1, b.shape[1]):
        y[:, i] = (b[:, i] - np.einsum("pj,pjm->pm", lower[:, i, :i], y[:, :i])) / lower[:, i, i, None]
    return y


def mahalanobis_logdet(nu: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """νᵀ S⁻¹ ν and ln|S| of innovations ν (P,D) with covariances S (P,D,D) (`whiten`)."""
    y, logdet = whiten(s, nu[:, :, None])
    return np.einsum("pi,pi->p", y[:, :, 0], y[:, :, 0]), logdet.sum(axis=1)


def wrap_angle(a: FloatArray) -> FloatArray:
    return wrap(a)


def radar_innovation(z_meas: FloatArray, z_pred: FloatArray) -> FloatArray:
    """z_meas (..., D) − z_pred (..., D) with the azimuth (row 1) wrapped to (−π, π]."""
    nu = z_meas - z_pred
    nu[..., 1] = wrap_angle(nu[..., 1])
    return nu


def diagonal_covariance(sigmas: FloatArray) -> FloatArray:
    """Diagonal covariances (M,D,D) from per-measurement sigmas (M,D)."""
    m, d = sigmas.shape
    r = np.zeros((m, d, d))
    idx = np.arange(d)
    r[:, idx, idx] = sigmas**2
    return r


def radar_to_state(
    z: FloatArray, sigmas: FloatArray, pose: Pose, sigma_v: float, radial_known: bool = False
) -> tuple[FloatArray, FloatArray]:
    """Initial states (M,6) and covariances (M,6,6) from radar measurements.

    Position covariance is the measurement covariance mapped through the spherical→Cartesian
    Jacobian. A single detection says nothing about the tangential motion, so velocity starts
    under a broad prior (`velocity_prior`). With `radial_known` the measured radial speed
    (z row 3, sigma row 3) conditions that prior (`radial_posterior`): the line of sight's speed is
    then known to the radar's accuracy, and a hovering drone's next plot at 1 Hz is looked for a
    few decimetres in range from the first, not tens of metres (docs/architecture.md, Birth
    state). Else velocity starts along the line of sight at z row 3 (0: at rest) under the prior
    alone: a radar whose radial speed wraps (a TI board past ±10 m/s) may report an alias.
    """
    r, az, el = z[:, 0], z[:, 1], z[:, 2]
    ce, se, ca, sa = np.cos(el), np.sin(el), np.cos(az), np.sin(az)
    m = z.shape[0]
    # J = d(x,y,z)/d(r,az,el) in the sensor frame; its first column is the line of sight. Rotated
    # into ENU once (R J), the position covariance is (R J) diag(σ²) (R J)ᵀ.
    j = np.empty((m, 3, 3))
    j[:, 0, 0] = ce * sa
    j[:, 1, 0] = ce * ca
    j[:, 2, 0] = se
    j[:, 0, 1] = r * ce * ca
    j[:, 1, 1] = -r * ce * sa
    j[:, 2, 1] = 0.0
    j[:, 0, 2] = -r * se * sa
    j[:, 1, 2] = -r * se * ca
    j[:, 2, 2] = r * ce
    # R J for all rows by one 2-D product (3,3)·(3,3M), not a stack of small ones.
    rj = (pose.rotation @ j.transpose(1, 0, 2).reshape(3, 3 * m)).reshape(3, m, 3).transpose(1, 0, 2)
    los = rj[:, :, 0]
    x = np.zeros((m, STATE_DIM))
    x[:, :3] = r[:, None] * los + pose.offset_enu_m
    p = np.zeros((m, STATE_DIM, STATE_DIM))
    p[:, :3, :3] = (rj * sigmas[:, None, :3] ** 2) @ rj.transpose(0, 2, 1)
    if radial_known:
        x[:, 3:], p[:, 3:, 3:] = radial_posterior(los, z[:, 3], sigmas[:, 3], velocity_prior(sigma_v))
    else:
        x[:, 3:] = los * z[:, 3:4]
        p[:, 3:, 3:] = velocity_prior(sigma_v)
    return x, p


def radial_posterior(
    los: FloatArray, radial: FloatArray, sigma: FloatArray, prior: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Velocity means (M,3) and covariances (M,3,3): the zero-mean `prior` (3,3) updated by one
    measurement of the speed along each unit line of sight `los` (M,3), `radial` (M,) with
    1-sigma `sigma` (M,). With the vertical prior narrower than the horizontal, the radial speed
    of an elevated plot is read as mostly level flight."""
    pl = los @ prior  # (M,3): P l (P symmetric)
    s = np.einsum("mi,mi->m", pl, los) + sigma * sigma
    gain = pl / s[:, None]
    return gain * radial[:, None], prior[None] - gain[:, :, None] * pl[:, None, :]


def largest_eigenvalue(a: FloatArray) -> FloatArray:
    """Largest eigenvalue of symmetric 3×3 matrices (K,3,3), in closed form (Smith, 1961): the
    per-step uncertainty tests ask it of every track, where a batched `eigvalsh` costs more than
    the filter's own update."""
    a00, a11, a22 = a[:, 0, 0], a[:, 1, 1], a[:, 2, 2]
    a01, a02, a12 = a[:, 0, 1], a[:, 0, 2], a[:, 1, 2]
    q = (a00 + a11 + a22) / 3.0
    b00, b11, b22 = a00 - q, a11 - q, a22 - q
    p = np.sqrt((b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * (a01 * a01 + a02 * a02 + a12 * a12)) / 6.0)
    det = b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02) + a02 * (a01 * a12 - b11 * a02)
    p3 = p * p * p
    half_det = det / np.where(p3 > 0.0, 2.0 * p3, 1.0)  # p = 0: a multiple of the identity
    phi = np.arccos(np.clip(half_det, -1.0, 1.0)) / 3.0
    return np.asarray(q + 2.0 * p * np.cos(phi), dtype=np.float64)
