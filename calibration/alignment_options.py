"""The vocabulary of the alignment fit: its parameters, knobs and acceptance limits, the starting
mount, and the error raised when no alignment is possible at all.

Separate from `cuas_node.calibration.alignment` so that the matching code (`alignment_matching`) and the
conditioning checks (`alignment_conditioning`) can share it without importing the solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.kernel.physics import SPEED_OF_SOUND_MPS

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
PARAMS = ("yaw_deg", "pitch_deg", "roll_deg", "time_offset_s", "range_bias_m")


class AlignmentError(ValueError):
    """The inputs cannot give an alignment at all (no measurements of the sensor, no overlap, ...)."""


@dataclass(frozen=True, slots=True)
class AlignmentOptions:
    """Knobs of the fit and the acceptance limits (1-sigma) that decide whether it is refused.

    The defaults aim at the issue's requirement (yaw within 0.5°, time within 20 ms) with margin:
    a result is accepted only if its standard deviations are half of that or better."""

    fit: tuple[str, ...] | None = None  # parameter names (PARAMS); None: chosen from the sensor
    max_time_offset_s: float = 1.0  # search window around the configured time offset
    time_step_s: float = 0.02
    gate_deg: float = 10.0  # first association gate around the azimuth histogram's peak
    gate_range_m: float = 5.0  # plus 3 % of range
    gate_sigma: float = 5.0  # re-gating after each fit, in normalised residuals
    loss: str = "soft_l1"
    f_scale: float = 2.0
    iterations: int = 3
    max_sigma_yaw_deg: float = 0.25
    max_sigma_tilt_deg: float = 0.5
    max_sigma_time_s: float = 0.01
    max_sigma_range_bias_m: float = 0.5
    max_correlation: float = 0.98
    min_measurements: int = 30
    min_az_span_deg: float = 15.0
    max_reference_gap_s: float = 3.0
    speed_of_sound_mps: float = SPEED_OF_SOUND_MPS


@dataclass(frozen=True, slots=True)
class InitialMount:
    """What the config says today: the starting point, and the 'before' of the report."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    time_offset_s: float = 0.0
