"""Mount pose and geodesy: the conventions every sensor and the fusion core share."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.pose import Pose, cartesian_to_spherical, rotation_sensor_to_enu, spherical_to_cartesian


def test_axes_conventions() -> None:
    north = Pose.from_angles(0, 0, 0, (0, 0, 0))
    assert np.allclose(north.sensor_to_enu([0, 1, 0]), [0, 1, 0])  # boresight north
    east = Pose.from_angles(90, 0, 0, (0, 0, 0))
    assert np.allclose(east.sensor_to_enu([0, 1, 0]), [1, 0, 0])  # yaw is a compass bearing
    assert np.allclose(east.sensor_to_enu([1, 0, 0]), [0, -1, 0])  # its right side faces south
    up = Pose.from_angles(0, 30, 0, (0, 0, 0))
    assert np.allclose(up.sensor_to_enu([0, 1, 0]), [0, np.cos(np.radians(30)), 0.5])
    rolled = Pose.from_angles(0, 0, 30, (0, 0, 0))
    assert rolled.sensor_to_enu([1, 0, 0])[2] < 0  # positive roll: right side down
    lever = Pose.from_angles(0, 0, 0, (1, 2, 3))
    assert np.allclose(lever.sensor_to_enu([0, 0, 0]), [1, 2, 3])


angles = st.floats(-180, 180)


@given(angles, st.floats(-89, 89), angles)
def test_rotation_is_orthonormal_and_inverts(yaw: float, pitch: float, roll: float) -> None:
    r = rotation_sensor_to_enu(yaw, pitch, roll)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0)
    pose = Pose(r, np.array([1.0, -2.0, 0.5]))
    p = np.array([[3.0, 40.0, -2.0], [0.1, 0.2, 0.3]])
    assert np.allclose(pose.enu_to_sensor(pose.sensor_to_enu(p)), p)


@given(st.floats(0.5, 5000), st.floats(-3.1, 3.1), st.floats(-1.5, 1.5))
def test_spherical_round_trip(r: float, az: float, el: float) -> None:
    back = cartesian_to_spherical(spherical_to_cartesian(r, az, el))
    assert np.allclose(back, (r, az, el), atol=1e-9)


def test_local_frame_round_trip_and_scale() -> None:
    frame = LocalFrame(52.0, 4.3, 40.0)
    enu = frame.to_enu(52.0 + 1 / 60.0, 4.3, 40.0)  # one arc-minute north ~ 1853 m at 52°
    assert abs(enu[1] - 1853.4) < 2.0 and abs(enu[0]) < 1e-6
    pts = np.array([[100.0, -250.0, 30.0], [0.0, 0.0, 0.0]])
    lat, lon, alt = frame.to_geodetic(pts)
    assert np.allclose(frame.to_enu(lat, lon, alt), pts, atol=1e-6)
