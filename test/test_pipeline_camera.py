"""Crop camera -> image camera translation, default intrinsics, projection."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_ros.pipeline.camera import (
    crop_camera_translation,
    crop_to_camera_translation,
    default_intrinsics,
    project_points,
    resolve_intrinsics,
)
from fasthmr_ros.pipeline.results import CameraIntrinsics


def hamer_cam_crop_to_full(cam, center, size, width, height, focal):
    """HaMeR's formula for a centred principal point and square pixels."""
    bs = size * cam[:, 0] + 1e-9
    return np.stack(
        [
            2 * (center[:, 0] - width / 2.0) / bs + cam[:, 1],
            2 * (center[:, 1] - height / 2.0) / bs + cam[:, 2],
            2 * focal / bs,
        ],
        axis=-1,
    )


def test_default_intrinsics_is_hamers_demo_camera():
    k = default_intrinsics(640, 480)
    assert k.fx == k.fy == pytest.approx(5000 / 256 * 640)
    assert (k.cx, k.cy) == (320.0, 240.0)
    assert default_intrinsics(480, 640).fx == pytest.approx(5000 / 256 * 640)
    with pytest.raises(ValueError, match="positive"):
        default_intrinsics(0, 10)


def test_special_case_equals_hamer_cam_crop_to_full():
    rng = np.random.default_rng(0)
    cam = np.column_stack([rng.uniform(2, 12, 5), rng.normal(0, 0.05, 5), rng.normal(0, 0.05, 5)])
    center = rng.uniform(0, 600, size=(5, 2))
    size = rng.uniform(80, 900, 5)
    k = default_intrinsics(1280, 720)
    ours = crop_to_camera_translation(cam, center, size, k)
    np.testing.assert_allclose(
        ours, hamer_cam_crop_to_full(cam, center, size, 1280, 720, k.fx), rtol=1e-12
    )


def test_general_intrinsics_keep_centre_ray_and_magnification():
    """The crop centre ray hits the box centre; metric size maps to the crop's pixel scale."""
    k = CameraIntrinsics(fx=910.0, fy=905.0, cx=301.7, cy=255.2)
    cam = np.array([[6.5, 0.013, -0.021]])
    center = np.array([[420.0, 170.0]])
    size = np.array([300.0])
    t = crop_to_camera_translation(cam, center, size, k)[0]
    origin = np.array([-cam[0, 1], -cam[0, 2], 0.0])  # what the crop camera sees at its centre
    np.testing.assert_allclose(project_points(origin + t, k), center[0], atol=1e-9)
    # one centimetre sideways at the hand spans as many image pixels as the crop says
    crop_t = crop_camera_translation(cam)[0]
    crop_px_per_m = 5000.0 / crop_t[2] * size[0] / 256.0
    focal = (k.fx + k.fy) / 2
    assert focal / t[2] == pytest.approx(crop_px_per_m, rel=1e-9)


def test_crop_camera_translation():
    t = crop_camera_translation(np.array([[10.0, 0.1, -0.2]]))
    np.testing.assert_allclose(t, [[0.1, -0.2, 2 * 5000 / 2560]])


def test_translation_input_lengths_must_agree():
    with pytest.raises(ValueError, match="one box per camera"):
        crop_to_camera_translation(
            np.zeros((2, 3)), np.zeros((1, 2)), np.ones(2), default_intrinsics(10, 10)
        )


def test_project_points():
    k = CameraIntrinsics(fx=100.0, fy=200.0, cx=10.0, cy=20.0)
    pts = np.array([[0.1, -0.2, 2.0], [0.0, 0.0, -1.0]])
    uv = project_points(pts, k)
    np.testing.assert_allclose(uv[0], [10 + 100 * 0.05, 20 - 200 * 0.1])
    assert np.isnan(uv[1]).all()


def test_resolve_intrinsics():
    k = CameraIntrinsics(fx=500.0, fy=510.0, cx=320.0, cy=240.0)
    assert resolve_intrinsics(k, 640, 480) is k
    assert resolve_intrinsics(k.matrix(), 640, 480) == k
    assert resolve_intrinsics(list(k.matrix().ravel()), 640, 480) == k
    assert resolve_intrinsics(None, 640, 480) == default_intrinsics(640, 480)
    bad = k.matrix()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        resolve_intrinsics(bad, 640, 480)
    with pytest.raises(ValueError, match="3x3"):
        resolve_intrinsics(np.eye(2), 640, 480)
