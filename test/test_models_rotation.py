"""Rotation matrices to quaternions and rotation vectors (numpy), against scipy's Rotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fasthmr_ros.models.rotation import (
    matrix_to_quaternion,
    matrix_to_rotvec,
    quaternion_to_rotvec,
)


def _random_axes(count: int, seed: int) -> np.ndarray:
    axes = np.random.default_rng(seed).normal(size=(count, 3))
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


def test_quaternions_and_rotvecs_equal_scipy_for_random_rotations() -> None:
    rotations = Rotation.random(5000, random_state=0)
    quaternions = matrix_to_quaternion(rotations.as_matrix())
    np.testing.assert_allclose(quaternions, rotations.as_quat(canonical=True), atol=1e-12)
    assert (quaternions[:, 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(quaternions, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(matrix_to_rotvec(rotations.as_matrix()), rotations.as_rotvec(),
                               atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-5, 1e-3 * 0.999, 1e-3, 0.5, 3.0])
def test_rotvec_angles_from_identity_to_large(angle: float) -> None:
    """Below the series threshold, at it and far above: the rotation vector is exact."""
    rotvecs = _random_axes(200, seed=1) * angle
    matrices = Rotation.from_rotvec(rotvecs).as_matrix()
    np.testing.assert_allclose(matrix_to_rotvec(matrices), rotvecs, rtol=1e-9, atol=1e-15)


def test_half_turns_pick_a_stable_candidate() -> None:
    """Near 180 degrees (trace near -1) the x, y or z candidate is used; the axis may flip."""
    for angle in (np.pi, np.pi - 1e-7):
        rotvecs = _random_axes(500, seed=2) * angle
        # Half turns about each coordinate axis too, where two diagonal terms are -1.
        rotvecs = np.concatenate([rotvecs, np.eye(3) * angle])
        ours = matrix_to_rotvec(Rotation.from_rotvec(rotvecs).as_matrix())
        same = np.minimum(np.abs(ours - rotvecs).max(axis=1), np.abs(ours + rotvecs).max(axis=1))
        assert same.max() < 1e-7
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), angle, atol=1e-7)


def test_float32_network_rotations_round_like_scipy() -> None:
    """Nearly orthonormal float32 input: within float32 rounding of the float64 answer."""
    rotations = Rotation.random(1000, random_state=3)
    ours = matrix_to_quaternion(rotations.as_matrix().astype(np.float32))
    np.testing.assert_allclose(ours, rotations.as_quat(canonical=True), atol=1e-6)


def test_batch_shapes_are_kept() -> None:
    matrices = Rotation.random(6, random_state=4).as_matrix().reshape(2, 3, 3, 3)
    assert matrix_to_quaternion(matrices).shape == (2, 3, 4)
    assert matrix_to_rotvec(matrices).shape == (2, 3, 3)
    assert matrix_to_quaternion(np.eye(3)).shape == (4,)
    np.testing.assert_array_equal(matrix_to_quaternion(np.eye(3)), [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(matrix_to_rotvec(np.eye(3)), [0.0, 0.0, 0.0])


def test_quaternion_sign_does_not_change_the_rotvec() -> None:
    quaternions = Rotation.random(100, random_state=5).as_quat()
    np.testing.assert_allclose(quaternion_to_rotvec(-quaternions),
                               quaternion_to_rotvec(quaternions), atol=1e-12)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.diag([np.nan, 1.0, 1.0]), "non-finite"),
        (np.diag([-1.0, 1.0, 1.0]), "determinant -1"),
        (np.zeros((3, 3)), "determinant 0"),
        (np.eye(4), r"shape \(\.\.\., 3, 3\)"),
    ],
)
def test_what_is_no_rotation_is_refused(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        matrix_to_quaternion(matrix)


def test_refused_rotation_is_named_by_its_index() -> None:
    matrices = np.stack([np.eye(3), np.eye(3), -np.eye(3)])
    with pytest.raises(ValueError, match="rotation matrix 2 is not a rotation"):
        matrix_to_quaternion(matrices)


def test_quaternions_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        quaternion_to_rotvec(np.zeros(3))
