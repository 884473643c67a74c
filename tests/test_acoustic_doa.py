"""SRP-PHAT accuracy on simulated far-field sources with known direction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cuas_node.drivers.acoustic.doa import SrpPhat, unit_vectors
from cuas_node.drivers.acoustic.geometry import circular, preset, resolve
from cuas_node.drivers.sim.acoustic import synth_array_block
from cuas_node.kernel.pose import Pose

DIRECTIONS_DEG = [(0.0, 30.0), (45.0, 20.0), (-120.0, 45.0), (170.0, 60.0), (-60.0, 35.0)]


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip(a @ b, -1.0, 1.0))))


@pytest.mark.parametrize("name", ["respeaker-4", "respeaker-6"])
def test_doa_error_below_3_degrees_at_10_db(name: str) -> None:
    geo = preset(name)
    srp = SrpPhat(geo, 16000)
    for k, (az, el) in enumerate(DIRECTIONS_DEG):
        x = synth_array_block(geo, 16000, math.radians(az), math.radians(el), 1.0, snr_db=10.0, seed=k)
        peaks = srp.localise(x)
        assert peaks, "no source found"
        truth = unit_vectors(math.radians(az), math.radians(el))
        err = _angle_deg(peaks[0].unit, truth)
        assert err < 3.0, f"{name} az={az} el={el}: error {err:.2f} deg"
        daz = math.degrees((peaks[0].az_rad - math.radians(az) + math.pi) % (2 * math.pi) - math.pi)
        assert abs(daz) * math.cos(math.radians(el)) < 3.0
        assert 0 < peaks[0].sigma_az_rad < math.radians(30)


def test_uncertainty_grows_as_snr_falls() -> None:
    geo = preset("respeaker-4")
    srp = SrpPhat(geo, 16000)
    hi = srp.localise(synth_array_block(geo, 16000, 0.5, 0.5, 1.0, snr_db=20.0, seed=3))[0]
    lo = srp.localise(synth_array_block(geo, 16000, 0.5, 0.5, 1.0, snr_db=-5.0, seed=3))[0]
    assert lo.sigma_az_rad > hi.sigma_az_rad
    assert lo.snr_db < hi.snr_db


def test_two_sources_are_both_found() -> None:
    geo = preset("respeaker-6")
    srp = SrpPhat(geo, 16000)
    a = synth_array_block(
        geo, 16000, math.radians(-60), math.radians(30), 1.0, snr_db=30.0, seed=1, f0_hz=170
    )
    b = synth_array_block(geo, 16000, math.radians(80), math.radians(25), 1.0, snr_db=30.0, seed=2, f0_hz=310)
    peaks = srp.localise(a + b)
    assert len(peaks) >= 2
    found = sorted(math.degrees(p.az_rad) for p in peaks[:2])
    assert abs(found[0] + 60) < 6 and abs(found[1] - 80) < 6


def test_48k_and_uma8() -> None:
    geo = preset("minidsp-uma8")
    srp = SrpPhat(geo, 48000)
    x = synth_array_block(geo, 48000, math.radians(100), math.radians(40), 0.5, snr_db=10.0, seed=5)
    truth = unit_vectors(math.radians(100), math.radians(40))
    assert _angle_deg(srp.localise(x)[0].unit, truth) < 3.0


def test_planar_array_keeps_sky_hemisphere_from_pose() -> None:
    geo = preset("respeaker-4")
    upside_down = Pose.from_angles(0.0, 0.0, 180.0, (0.0, 0.0, 0.0))
    srp = SrpPhat(geo, 16000, pose=upside_down)
    assert np.all(srp.grid[:, 2] <= 1e-9)  # the sky is below the board's own plane
    x = synth_array_block(geo, 16000, math.radians(30), math.radians(-40), 1.0, snr_db=20.0, seed=2)
    assert srp.localise(x)[0].el_rad < 0


def test_geometry_presets_and_explicit() -> None:
    assert preset("respeaker-4").aperture_m == pytest.approx(0.081, abs=1e-3)
    assert preset("respeaker-6").n_mics == 6 and preset("minidsp-uma8").n_mics == 7
    assert preset("respeaker-4").planar
    geo = resolve([[0, 0, 0], [0.05, 0, 0], [0, 0.05, 0], [0, 0, 0.05]])
    assert not geo.planar and geo.min_channels == 4
    assert circular(8, 0.05).n_mics == 8
    with pytest.raises(ValueError):
        preset("no-such-array")


def test_an_explicit_array_with_a_microphone_listed_twice_is_refused_by_name() -> None:
    """A copied line in a config's positions (an outside user's JSON) was accepted: two
    microphones in one place give the array's evidence a pair that says nothing. Refused, with
    the microphones named; also non-finite positions and one wire channel for two microphones."""
    with pytest.raises(ValueError, match="microphones 2 and 3 are at the same place"):
        resolve([[0, 0, 0], [0.04, 0, 0], [0.04, 0, 0.0002], [0, 0.04, 0]])
    with pytest.raises(ValueError, match="finite"):
        resolve([[0, 0, 0], [float("nan"), 0, 0]])
    with pytest.raises(ValueError, match="one wire channel to two microphones"):
        resolve([[0, 0, 0], [0.04, 0, 0]], [1, 1])
    assert resolve([[0, 0, 0], [0.002, 0, 0]]).n_mics == 2  # close, but two places
