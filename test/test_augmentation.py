"""HaMeR-style augmentation: crops, 2D and 3D labels stay consistent; flips swap the side."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fasthmr_ros.pipeline.augmentation import (
    AugmentationConfig,
    AugmentationParams,
    apply_affine,
    augment_sample,
    crop_affine,
    rotation_about_optical_axis,
    sample_augmentation,
)
from fasthmr_ros.pipeline.crop import crop_hand, normalize_crop
from fasthmr_ros.pipeline.datasets.sample import (
    HandSample,
    ManoParameters,
    labelled_geometry,
    project_points,
)
from fasthmr_ros.pipeline.results import CameraIntrinsics, HandBox

CAMERA = CameraIntrinsics(fx=500.0, fy=500.0, cx=160.0, cy=120.0)


def _sample(frame: str = "opencv") -> HandSample:
    rng = np.random.default_rng(0)
    joints = rng.normal(scale=0.03, size=(21, 3)) + np.array([0.02, -0.01, 0.5])
    keypoints, box = labelled_geometry(joints, CAMERA)
    pose = rng.normal(scale=0.3, size=48)
    return HandSample(
        dataset="synthetic",
        key="s0",
        image_path=Path("unused.jpg"),
        side="right",
        camera=CAMERA,
        joints=joints,
        keypoints_2d=keypoints,
        box=box,
        mano=ManoParameters(
            pose=pose,
            betas=np.zeros(10),
            translation=np.zeros(3),
            flat_hand_mean=False,
            frame=frame,
        ),
    )


def _dot_image(points: np.ndarray) -> np.ndarray:
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 2, (255, 255, 255), -1)
    return image


def _bright_centroid(crop: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    x0, y0 = int(round(near[0])), int(round(near[1]))
    patch = crop[max(y0 - radius, 0) : y0 + radius + 1, max(x0 - radius, 0) : x0 + radius + 1, 0]
    ys, xs = np.nonzero(patch > 100)
    assert xs.size > 0, "the dot did not land near its transformed position"
    weights = patch[ys, xs].astype(np.float64)
    return np.array(
        [
            np.average(xs, weights=weights) + max(x0 - radius, 0),
            np.average(ys, weights=weights) + max(y0 - radius, 0),
        ]
    )


@pytest.mark.parametrize(
    "params",
    [
        AugmentationParams(),
        AugmentationParams(scale=1.2, rotation_deg=35.0, shift=(0.02, -0.02)),
        AugmentationParams(scale=0.8, rotation_deg=-50.0, flip=True),
    ],
)
def test_crop_and_keypoints_agree(params):
    sample = _sample()
    # Dots at a few well separated keypoints; each must appear at its transformed position.
    chosen = [0, 4, 12, 20]
    image = _dot_image(sample.keypoints_2d[chosen])
    out = augment_sample(image, sample, params)
    assert out.image.shape == (256, 256, 3)
    for k, point in zip(chosen, out.keypoints_2d[chosen], strict=True):
        found = _bright_centroid(out.image, point)
        # OpenCV samples pixel centres at integer coordinates, as the affine map assumes.
        assert np.linalg.norm(found - point) < 1.5, (k, found, point)


def test_box_centre_lands_on_crop_centre_and_size_follows_scale():
    box = np.array([100.0, 50.0, 140.0, 70.0])
    config = AugmentationConfig()
    affine = crop_affine(box, AugmentationParams(scale=1.25), config)
    np.testing.assert_allclose(apply_affine(np.array([[120.0, 60.0]]), affine), [[128.0, 128.0]])
    # Side = 2.0 * 40 px * 1.25 = 100 image px -> 256 crop px.
    assert np.linalg.norm(affine[:, 0]) == pytest.approx(256.0 / 100.0)


@pytest.mark.parametrize("flip", [False, True])
def test_3d_rotation_matches_the_image_rotation(flip):
    sample = _sample()
    params = AugmentationParams(rotation_deg=25.0, flip=flip)
    out = augment_sample(np.zeros((240, 320, 3), np.uint8), sample, params)
    # For fx == fy, rotating points about the optical axis rotates their projections about
    # the principal point, and an x-mirror of the points mirrors their projections about it;
    # the crop applies the same rotation and mirror (about its own centre), so bone vectors in
    # the crop are the zoomed bone vectors of the projected augmented joints.
    zoom = np.linalg.norm(out.affine[:, 0])
    projected = project_points(out.joints, CAMERA)
    np.testing.assert_allclose(
        out.keypoints_2d - out.keypoints_2d[0], zoom * (projected - projected[0]), atol=1e-9
    )
    assert out.side == ("left" if flip else "right")
    root_relative = sample.joints - sample.joints[0]
    out_relative = out.joints - out.joints[0]
    np.testing.assert_allclose(
        np.linalg.norm(out_relative, axis=1), np.linalg.norm(root_relative, axis=1)
    )


def test_mano_global_orientation_follows_the_rotation_and_flip():
    for frame, to_optical in (("opencv", np.eye(3)), ("opengl", np.diag([1.0, -1.0, -1.0]))):
        sample = _sample(frame)
        image = np.zeros((240, 320, 3), np.uint8)
        rot = rotation_about_optical_axis(40.0)
        before = Rotation.from_rotvec(sample.mano.pose[:3]).as_matrix()
        out = augment_sample(image, sample, AugmentationParams(rotation_deg=40.0))
        after = Rotation.from_rotvec(out.mano.pose[:3]).as_matrix()
        # In the optical frame the hand turned with the camera points.
        np.testing.assert_allclose(to_optical @ after, rot @ to_optical @ before, atol=1e-9)
        np.testing.assert_allclose(out.mano.pose[3:], sample.mano.pose[3:])
        assert out.mano.translation is None

        flipped = augment_sample(image, sample, AugmentationParams(flip=True))
        mirror = np.diag([-1.0, 1.0, 1.0])
        flip_after = Rotation.from_rotvec(flipped.mano.pose[:3]).as_matrix()
        np.testing.assert_allclose(flip_after, mirror @ before @ mirror, atol=1e-9)
        np.testing.assert_allclose(
            flipped.mano.pose[3:].reshape(15, 3),
            sample.mano.pose[3:].reshape(15, 3) * np.array([1.0, -1.0, -1.0]),
        )
    unchanged = augment_sample(image, sample, AugmentationParams())
    np.testing.assert_allclose(unchanged.mano.pose, sample.mano.pose, atol=1e-12)
    assert unchanged.mano.translation is not None


def test_colour_gains_multiply_channels_and_clip():
    sample = _sample()
    image = np.full((240, 320, 3), 100, np.uint8)
    box = sample.box
    sample.box = np.array([150.0, 110.0, 170.0, 130.0])  # keep the crop inside the image
    out = augment_sample(image, sample, AugmentationParams(color_scale=(1.2, 0.8, 3.0)))
    sample.box = box
    np.testing.assert_array_equal(out.image[128, 128], [120, 80, 255])


def test_sampled_parameters_stay_within_hamer_ranges():
    config = AugmentationConfig()
    rng = np.random.default_rng(0)
    draws = [sample_augmentation(config, rng) for _ in range(2000)]
    scales = np.array([d.scale for d in draws])
    rotations = np.array([d.rotation_deg for d in draws])
    shifts = np.array([d.shift for d in draws])
    colours = np.array([d.color_scale for d in draws])
    assert scales.min() >= 0.7 and scales.max() <= 1.3
    assert np.abs(rotations).max() <= 60.0
    assert 0.55 < np.mean(rotations != 0.0) < 0.65  # rotation rate 0.6
    assert 0.45 < np.mean(np.any(shifts != 0.0, axis=1)) < 0.55  # translation rate 0.5
    assert np.abs(shifts).max() <= 0.02
    assert colours.min() >= 0.8 and colours.max() <= 1.2
    assert not any(d.flip for d in draws)  # HaMeR does not flip
    flips = [sample_augmentation(AugmentationConfig(flip_rate=0.5), rng).flip for _ in range(400)]
    assert 0.4 < np.mean(flips) < 0.6
    with pytest.raises(ValueError, match="probability"):
        AugmentationConfig(flip_rate=1.5)


def test_sample_without_box_is_refused():
    sample = _sample()
    sample.box = None
    with pytest.raises(ValueError, match="no hand box"):
        augment_sample(np.zeros((8, 8, 3), np.uint8), sample, AugmentationParams())


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize(
    "box", [(140.0, 60.0, 180.0, 160.0), (130.0, 70.0, 190.0, 130.0), (120.0, 95.0, 200.0, 125.0)]
)
def test_unaugmented_crop_is_the_inference_crop(side, box):
    """Without augmentation a training crop shows what crop_hand shows the network."""
    rng = np.random.default_rng(7)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 3.0)
    sample = _sample()
    sample.side = side
    sample.box = np.array(box)
    out = augment_sample(image, sample, AugmentationParams(flip=side == "left"))
    inference = crop_hand(image, HandBox(*box, side=side))
    difference = np.abs(normalize_crop(out.image) - inference.image) * 255.0 * 0.229
    assert difference.max() <= 2.0 and difference.mean() < 0.3
