"""HandMeshPipeline with a real regressor: un-mirroring, batching, camera placement."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_ros.pipeline.camera import (
    crop_camera_translation,
    default_intrinsics,
    project_points,
)
from fasthmr_ros.pipeline.crop import crop_region
from fasthmr_ros.pipeline.hand_pipeline import (
    HandMeshPipeline,
    faces_for_side,
    left_hand_faces,
    mirror_rotations,
)
from fasthmr_ros.pipeline.results import CameraIntrinsics, HandBox

M = np.diag([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def regressor(hand_regressor):
    """The random-weights test-asset model through load_hand_regressor (conftest)."""
    return hand_regressor


@pytest.fixture(scope="module")
def pipeline(regressor):
    return HandMeshPipeline(regressor)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(7)
    height, width = 360, 480
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, 128 + 0 * xx], axis=-1)
    blob = 120 * np.exp(-((xx - 170) ** 2 + (yy - 160) ** 2) / (2 * 40.0**2))
    noisy = base + blob[..., None] + rng.normal(0, 25, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def test_no_boxes_no_results(pipeline, image):
    assert pipeline.process(image, []) == []
    assert pipeline.timings.hands == 0


def test_mirrored_image_with_swapped_side_mirrors_the_hand(pipeline, image):
    """A left hand is the mirror image of a right hand: the outputs must be mirrored too."""
    height, width = image.shape[:2]
    # pixel-centre convention: mirroring maps x -> W - 1 - x, so the camera centre is (W-1)/2
    k = CameraIntrinsics(fx=520.0, fy=520.0, cx=(width - 1) / 2, cy=170.0)
    right_box = HandBox(110.0, 90.0, 230.0, 250.0, side="right", score=0.9)
    left_box = HandBox(width - 1 - 230.0, 90.0, width - 1 - 110.0, 250.0, side="left")
    right = pipeline.process(image, [right_box], k)[0]
    left = pipeline.process(np.ascontiguousarray(image[:, ::-1]), [left_box], k)[0]
    assert (right.side, left.side) == ("right", "left")
    np.testing.assert_allclose(left.joints, right.joints @ M, atol=1e-4)
    np.testing.assert_allclose(left.vertices, right.vertices @ M, atol=1e-4)
    np.testing.assert_allclose(left.cam_t, right.cam_t @ M, atol=1e-4)
    np.testing.assert_allclose(left.keypoints_2d[:, 0], width - 1 - right.keypoints_2d[:, 0],
                               atol=1e-2)
    np.testing.assert_allclose(left.wrist_rotation, M @ right.wrist_rotation @ M, atol=1e-5)
    # MANO parameters stay in right-hand model space: identical for the mirrored pair
    np.testing.assert_allclose(left.global_orient, right.global_orient, atol=1e-5)
    np.testing.assert_allclose(left.hand_pose, right.hand_pose, atol=1e-5)
    # the hand is really mirrored (not trivially symmetric)
    assert np.abs(left.joints - right.joints).max() > 1e-3


def test_batch_equals_single_runs(pipeline, image):
    boxes = [
        HandBox(110.0, 90.0, 230.0, 250.0, side="right", score=0.9),
        HandBox(260.0, 60.0, 330.0, 150.0, side="left", score=0.8),
        HandBox(-20.0, 200.0, 90.0, 370.0, side="left", score=0.7),
    ]
    batched = pipeline.process(image, boxes)
    assert pipeline.timings.hands == 3
    assert len(batched) == 3
    # different crops give different outputs, so a batch mix-up could not go unnoticed
    assert np.abs(batched[0].hand_pose - batched[1].hand_pose).max() > 1e-4
    for box, hand in zip(boxes, batched, strict=True):
        single = pipeline.process(image, [box])[0]
        assert (hand.side, hand.score) == (box.side, box.score)
        np.testing.assert_array_equal(hand.box, box.xyxy)
        for name in ("joints", "vertices", "keypoints_2d", "cam_t", "wrist_rotation",
                     "global_orient", "hand_pose", "betas"):
            np.testing.assert_allclose(getattr(hand, name), getattr(single, name),
                                       rtol=1e-5, atol=1e-5, err_msg=name)


def test_result_shapes_and_proper_rotations(pipeline, image):
    boxes = [HandBox(110, 90, 230, 250, side="right"), HandBox(260, 60, 330, 150, side="left")]
    for hand in pipeline.process(image, boxes):
        assert hand.joints.shape == (21, 3)
        assert hand.vertices.shape == (778, 3)
        assert hand.keypoints_2d.shape == (21, 2)
        assert hand.global_orient.shape == (3, 3)
        assert hand.hand_pose.shape == (15, 3, 3)
        assert hand.betas.shape == (10,)
        assert hand.cam_t.shape == (3,)
        r = hand.wrist_rotation
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)


def test_keypoints_are_projected_with_the_given_intrinsics(pipeline, image):
    k = CameraIntrinsics(fx=610.0, fy=590.0, cx=250.3, cy=171.9)
    boxes = [HandBox(110, 90, 230, 250, side="right"), HandBox(260, 60, 330, 150, side="left")]
    for hand in pipeline.process(image, boxes, k):
        np.testing.assert_allclose(project_points(hand.joints, k), hand.keypoints_2d, atol=0.5)
    default = pipeline.process(image, boxes)
    explicit = pipeline.process(image, boxes, default_intrinsics(480, 360))
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_allclose(a.joints, b.joints)


@pytest.mark.parametrize("side", ["right", "left"])
def test_full_camera_agrees_with_the_crop_camera(pipeline, regressor, image, side):
    """When the image camera *is* the crop camera, 2D keypoints equal the network's own
    crop-space projection mapped back through the crop transform."""
    box = HandBox(180.0, 120.0, 300.0, 240.0, side=side)
    center, size = crop_region(box)
    focal = 5000.0 * size / 256.0  # the crop's focal length in image pixels
    k = CameraIntrinsics(fx=focal, fy=focal, cx=center[0], cy=center[1])
    hand = pipeline.process(image, [box], k)[0]

    batch, transforms = pipeline.make_batch(image, [box])
    raw = pipeline.run_network(batch)
    t_crop = crop_camera_translation(raw["cam"])[0]
    pts = raw["joints"][0].astype(np.float64) + t_crop
    crop_px = 5000.0 * pts[:, :2] / pts[:, 2:] + 128.0
    expected = transforms[0].crop_to_image(crop_px)
    np.testing.assert_allclose(hand.keypoints_2d, expected, atol=0.5)


def test_nan_intrinsics_are_rejected(pipeline, image):
    k = np.array([[np.nan, 0, 240], [0, 500, 180], [0, 0, 1]])
    with pytest.raises(ValueError, match="finite"):
        pipeline.process(image, [HandBox(110, 90, 230, 250)], k)


def test_timings_are_recorded(pipeline, image):
    pipeline.process(image, [HandBox(110, 90, 230, 250)])
    t = pipeline.timings
    assert t.hands == 1
    assert t.crop_ms > 0 and t.network_ms > 0 and t.post_ms > 0
    assert t.total_ms == pytest.approx(t.crop_ms + t.network_ms + t.post_ms)


def test_faces_helpers(pipeline):
    faces = pipeline.faces
    np.testing.assert_array_equal(left_hand_faces(faces)[:, 0], faces[:, 0])
    np.testing.assert_array_equal(left_hand_faces(faces)[:, 1], faces[:, 2])
    np.testing.assert_array_equal(faces_for_side(faces, "right"), faces)
    np.testing.assert_array_equal(pipeline.faces_for_side("left"), left_hand_faces(faces))


def test_mirrored_faces_keep_outward_normals():
    """Mirroring flips handedness of triangles; reversing the winding restores it."""
    tri = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    faces = np.array([[0, 1, 2]])
    normal = np.cross(tri[1] - tri[0], tri[2] - tri[0])
    mirrored = tri @ M
    f = left_hand_faces(faces)[0]
    mirrored_normal = np.cross(mirrored[f[1]] - mirrored[f[0]], mirrored[f[2]] - mirrored[f[0]])
    np.testing.assert_allclose(mirrored_normal, normal @ M)


def test_mirror_rotations_is_proper():
    angle = 0.7
    c, s = np.cos(angle), np.sin(angle)
    r = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    mr = mirror_rotations(r)
    assert np.linalg.det(mr) == pytest.approx(1.0)
    np.testing.assert_allclose(mirror_rotations(mr), r)


def test_constructor_and_output_errors(regressor, image):
    with pytest.raises(ValueError, match="faces"):
        HandMeshPipeline(lambda x: regressor(x))
    with pytest.raises(TypeError, match="callable"):
        HandMeshPipeline(object(), faces=regressor.faces)

    def drops_betas(crops):
        out = dict(regressor(crops))
        del out["betas"]
        return out

    broken = HandMeshPipeline(drops_betas, faces=regressor.faces)
    with pytest.raises(ValueError, match="betas"):
        broken.process(image, [HandBox(110, 90, 230, 250)])


def test_bad_image_is_rejected(pipeline):
    with pytest.raises(ValueError, match="uint8"):
        pipeline.process(np.zeros((10, 10, 3), np.float64), [])
