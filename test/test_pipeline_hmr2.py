"""HMR2.0 bodies in the pipeline: 4D-Humans' crops, one batch, camera-frame metres."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fasthmr_ros import load_body_regressor
from fasthmr_ros.pipeline.camera import default_intrinsics
from fasthmr_ros.pipeline.crop import crop_region
from fasthmr_ros.pipeline.hmr2_estimator import PERSON_INDEX, Hmr2BodyEstimator
from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.pipeline.sample_image import draw_sample_hand


class Person:
    def __init__(self, *xyxy: float, score: float = 0.8) -> None:
        self.xyxy = np.array(xyxy, dtype=np.float64)
        self.score = score


@pytest.fixture(scope="module")
def estimator(body_assets):
    return Hmr2BodyEstimator(load_body_regressor(body_assets.yacs_checkpoint))


def test_crop_region_is_hmr2s(estimator) -> None:
    """4D-Humans: centre of the box, (w, h) grown to 3:4 (W:H), side = the larger, no rescale."""
    center, size = crop_region(Person(100, 50, 200, 450), 1.0)  # 100 x 400: too tall -> w 300
    np.testing.assert_allclose(center, [150, 250])
    assert size == pytest.approx(400.0)
    center, size = crop_region(Person(0, 0, 300, 100), 1.0)  # too wide -> h 400
    assert size == pytest.approx(400.0)


def test_bodies_in_the_camera_frame(estimator) -> None:
    image = draw_sample_hand(640, 480)
    people = [Person(20, 30, 260, 470), Person(330, 10, 600, 400, score=0.5)]
    camera = CameraIntrinsics(fx=600.0, fy=620.0, cx=330.0, cy=235.0)
    results = estimator.estimate(image, people, camera)
    assert len(results) == 2 and estimator.skipped == []
    batch, transforms = estimator.make_batch(image, people)
    with torch.no_grad():
        raw = estimator.regressor(torch.from_numpy(batch))
    for i, (result, person) in enumerate(zip(results, people)):
        assert result.model == "smpl" and result.extras[PERSON_INDEX][0] == i
        assert result.score == person.score and result.vertices.shape == (6890, 3)
        # HMR2.0's cam_crop_to_full, restated for a general pinhole camera.
        s, tx, ty = raw["cam"][i].double().numpy()
        (bx, by), b = transforms[i].center, transforms[i].size
        f = (camera.fx + camera.fy) / 2
        tz = 2 * f / (b * s + 1e-9)
        expected = [tx + (bx - camera.cx) * tz / camera.fx, ty + (by - camera.cy) * tz / camera.fy,
                    tz]
        np.testing.assert_allclose(result.cam_t, expected, rtol=1e-9)
        np.testing.assert_allclose(
            result.vertices, raw["vertices"][i].numpy() + result.cam_t, atol=1e-4
        )
        np.testing.assert_allclose(result.body_pose, raw["body_pose"][i].numpy())
        # Projected joints: the pinhole camera applied to the camera-frame joints.
        j = result.joints.astype(np.float64)
        u = camera.fx * j[:, 0] / j[:, 2] + camera.cx
        np.testing.assert_allclose(result.keypoints_2d[:, 0], u, rtol=1e-5)
        # The body sits in its box: a near-mean random network puts the pelvis near the centre.
        assert abs(result.keypoints_2d[39, 0] - (person.xyxy[0] + person.xyxy[2]) / 2) < 60


def test_batches_larger_than_max_batch_run_in_chunks(body_assets) -> None:
    model = load_body_regressor(body_assets.yacs_checkpoint)
    image = draw_sample_hand(320, 240)
    people = [Person(10 + 20 * i, 10, 120 + 20 * i, 230) for i in range(5)]
    camera = default_intrinsics(320, 240)
    chunked = Hmr2BodyEstimator(model, max_batch=2).estimate(image, people, camera)
    whole = Hmr2BodyEstimator(model).estimate(image, people, camera)
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-5)
    assert Hmr2BodyEstimator(model).estimate(image, [], camera) == []


def test_estimator_needs_a_body_regressor(estimator) -> None:
    with pytest.raises(ValueError, match="load_body_regressor"):
        Hmr2BodyEstimator(lambda crops: {})
    with pytest.raises(ValueError, match="max_batch"):
        Hmr2BodyEstimator(estimator.regressor, max_batch=0)


def test_hmr2_behind_the_body_pipeline_interface(body_assets) -> None:
    """``create_body_estimator("hmr2", checkpoint=...)`` plugs into BodyPipeline with PersonBox."""
    from fasthmr_ros.pipeline.body_estimator import (
        BodyEstimator,
        body_estimator_names,
        create_body_estimator,
    )
    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline
    from fasthmr_ros.pipeline.results import PersonBox

    assert "hmr2" in body_estimator_names()
    hmr2 = create_body_estimator("hmr2", checkpoint=str(body_assets.root),
                                 smpl_dir=str(body_assets.data_dir))
    assert isinstance(hmr2, BodyEstimator) and hmr2.is_test_asset
    pipeline = BodyPipeline(hmr2)
    image = draw_sample_hand(640, 480)
    people = [PersonBox(20, 30, 260, 470, score=0.9), PersonBox(330, 10, 600, 400, score=0.7)]
    camera = default_intrinsics(640, 480)
    first = pipeline.run(image, camera, stamp=0.0, people=people)
    second = pipeline.run(image, camera, stamp=0.1, people=people)
    assert len(first) == len(second) == 2 and pipeline.info.name == "smpl"
    assert [r.track_id for r in first] == [r.track_id for r in second]
    assert all(r.track_id is not None for r in second)
    assert second[0].vertices.shape == (6890, 3) and second[0].keypoints_2d.shape == (44, 2)


def test_masked_merge_plan_takes_each_persons_mask(body_assets, tmp_path) -> None:
    """With a masked token plan the estimator feeds each person's mask to the network."""
    import json

    from fasthmr_ros.pipeline.results import PersonBox

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "fasthmr-merge-plan/1", "tokens": {
        "keep": 150, "per_layer": 42, "layers": 1, "mask": "foreground"}}))
    estimator = Hmr2BodyEstimator(load_body_regressor(body_assets.root, merge_plan=plan))
    assert estimator.uses_foreground
    image = draw_sample_hand(640, 480)
    mask = np.zeros((480, 640), np.float32)
    mask[60:420, 250:390] = 1.0
    people = [PersonBox(230, 40, 410, 440, mask=mask), PersonBox(20, 30, 200, 400)]
    batch, transforms = estimator.make_batch(image, people)
    flags = estimator.make_foreground(people, transforms)
    assert flags.shape == (2, 192) and flags[0].sum() > 20 and not flags[1].any()
    results = estimator.estimate(image, people, default_intrinsics(640, 480))
    assert all(r.vertices.shape == (6890, 3) for r in results)
    plain = [Person(20, 30, 200, 400)]  # a box object without a mask attribute
    assert not estimator.make_foreground(plain, estimator.make_batch(image, plain)[1]).any()
    unmasked = Hmr2BodyEstimator(load_body_regressor(body_assets.root))
    assert unmasked.make_foreground(people, transforms) is None


def test_pelvis_pose_and_tf_use_hmr2s_pelvis_joint(estimator) -> None:
    """HMR2.0's joint 0 is OpenPose's nose: the pelvis frame is joint 39 (its PELVIS_IND)."""
    pytest.importorskip("rosbags")
    from fasthmr_ros.models.constants import BODY_JOINT_NAMES, BODY_PELVIS_INDEX
    from fasthmr_ros.ros.mesh_messages import body_mesh_message
    from fasthmr_ros.ros.tf_frames import pelvis_transforms

    assert BODY_JOINT_NAMES[BODY_PELVIS_INDEX] == "mpii_pelvis"
    image = draw_sample_hand(640, 480)
    (result,) = estimator.estimate(image, [Person(20, 30, 260, 470)],
                                   default_intrinsics(640, 480))
    assert result.root_joint == BODY_PELVIS_INDEX
    np.testing.assert_array_equal(result.root_position, result.joints[BODY_PELVIS_INDEX])
    message = body_mesh_message(result, "body_0", num_vertices=estimator.info.num_vertices)
    position = message.root_pose.position
    np.testing.assert_allclose([position.x, position.y, position.z],
                               result.joints[BODY_PELVIS_INDEX], atol=1e-6)
    q = message.root_pose.orientation
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(),
                               result.root_rotation, atol=1e-5)
    tf = pelvis_transforms(None, [result], ["0"])
    moved = tf.transforms[0].transform.translation
    np.testing.assert_allclose([moved.x, moved.y, moved.z], result.joints[BODY_PELVIS_INDEX],
                               atol=1e-6)
