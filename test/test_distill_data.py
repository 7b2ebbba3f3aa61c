"""Distillation data: labelled crops agree with MANO, crop caches of footage, labelled runs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from fasthmr_ros import load_hand_regressor
from fasthmr_ros.cli.main import main
from fasthmr_ros.pipeline.augmentation import AugmentationConfig
from fasthmr_ros.pipeline.box_sources import FullFrameBoxes, JsonBoxes
from fasthmr_ros.pipeline.crop import crop_hand
from fasthmr_ros.pipeline.datasets import FreiHAND, HandSample, ManoParameters
from fasthmr_ros.pipeline.datasets.media import MediaFolder
from fasthmr_ros.pipeline.datasets.sample import OPENGL_FRAME, labelled_geometry
from fasthmr_ros.pipeline.results import CameraIntrinsics, HandBox
from fasthmr_ros.training.data import (
    CachedCrops,
    CropCache,
    LabelledCrops,
    denormalize_crop,
    detector_boxes,
    file_boxes,
    item_rng,
    stack_items,
    validation_batch,
)
from fasthmr_ros.training.distiller import DistillConfig, Distiller, seed_everything
from fasthmr_ros.training.student_specs import student_for_teacher

pytestmark = pytest.mark.usefixtures("distill_single_thread")
#: Every augmentation on, strongly (rotations always), to exercise the label transforms.
STRONG = AugmentationConfig(rotation_rate=1.0, translation_rate=1.0, rotation_factor_deg=40.0)
FLIP_OPENGL = np.diag([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def teacher(test_assets):
    return load_hand_regressor(test_assets.checkpoint)


def _mano_hands(mano, rng: np.random.Generator, count: int):
    """Random absolute MANO rotations, shapes, and the joints MANO gives them (root-relative)."""
    global_rotvec = rng.normal(scale=0.6, size=(count, 3))
    hand_rotvec = rng.normal(scale=0.3, size=(count, 15, 3))
    betas = rng.normal(scale=0.5, size=(count, 10))
    global_r = Rotation.from_rotvec(global_rotvec).as_matrix()[:, None]
    hand_r = Rotation.from_rotvec(hand_rotvec.reshape(-1, 3)).as_matrix().reshape(count, 15, 3, 3)
    with torch.no_grad():
        _, joints = mano(torch.tensor(global_r).float(), torch.tensor(hand_r).float(),
                         torch.tensor(betas).float())
    joints = joints.double().numpy()
    return global_rotvec, hand_rotvec, betas, joints - joints[:, :1]


def _write_rgb(path: Path, rng: np.random.Generator, size: tuple[int, int] = (224, 224)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


@pytest.fixture(scope="module")
def freihand_root(tmp_path_factory, teacher) -> Path:
    """A 3-sample FreiHAND training layout whose joints are MANO of its MANO parameters."""
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("FreiHAND_pub_v2")
    count = 3
    global_rotvec, hand_rotvec, betas, joints_rel = _mano_hands(teacher.mano, rng, count)
    xyz = joints_rel + np.array([0.0, 0.0, 0.6])
    hand_mean = teacher.mano.hand_mean.numpy().reshape(15, 3)
    pose = np.concatenate([global_rotvec[:, None], hand_rotvec - hand_mean], axis=1)
    mano = np.concatenate([pose.reshape(count, 48), betas, np.zeros((count, 3))], axis=1)
    K = np.array([[[600.0, 0, 112], [0, 600.0, 112], [0, 0, 1]]] * count)
    for name, value in (("K", K), ("xyz", xyz), ("mano", mano[:, None, :])):
        (root / f"training_{name}.json").write_text(json.dumps(value.tolist()))
    for image_id in range(4 * count):
        _write_rgb(root / "training" / "rgb" / f"{image_id:08d}.jpg", rng)
    for unique in range(count):
        _write_rgb(root / "training" / "mask" / f"{unique:08d}.jpg", rng)
    return root


def _mano_joints_rel(mano, item) -> np.ndarray:
    with torch.no_grad():
        _, joints = mano(torch.from_numpy(item["global_orient"])[None],
                         torch.from_numpy(item["hand_pose"])[None],
                         torch.from_numpy(item["betas"])[None])
    joints = joints[0].double().numpy()
    return joints - joints[:1]


def test_freihand_labels_after_augmentation_agree_with_mano(freihand_root, teacher):
    reader = FreiHAND(freihand_root, "training")
    crops = LabelledCrops(reader, teacher.mano.hand_mean.numpy(), STRONG, seed=1)
    for step, index in ((0, 0), (3, 4), (7, 11)):
        item = crops[(step, 0, index)]
        assert item["crops"].shape == (3, 256, 256) and item["crops"].dtype == np.float32
        assert (float(item["has_joints"]), float(item["has_mano"])) == (1.0, 1.0)
        # The rotated 3D labels are what MANO makes of the rotated MANO labels.
        np.testing.assert_allclose(_mano_joints_rel(teacher.mano, item), item["joints_rel"],
                                   atol=2e-5)
        assert np.abs(item["keypoints_2d"]).max() < 0.5  # the hand is inside the crop
    unaugmented = LabelledCrops(reader, teacher.mano.hand_mean.numpy(), augment=False)
    plain = unaugmented[(5, 0, 1)]
    expected = reader[1].joints - reader[1].joints[:1]
    np.testing.assert_allclose(plain["joints_rel"], expected, atol=1e-6)
    # Augmentation draws depend on (seed, step, slot) only.
    np.testing.assert_array_equal(crops[(3, 1, 2)]["crops"], crops[(3, 1, 2)]["crops"])
    assert not np.array_equal(crops[(3, 1, 2)]["crops"], crops[(4, 1, 2)]["crops"])


def test_opengl_absolute_mano_labels_agree_with_mano(tmp_path, teacher):
    # HO3D's convention: MANO parameters in the OpenGL camera frame, absolute finger pose.
    rng = np.random.default_rng(5)
    global_rotvec, hand_rotvec, betas, joints_rel = _mano_hands(teacher.mano, rng, 1)
    # The same hand in OpenGL coordinates: global rotation F R, joints F J.
    gl_global = Rotation.from_matrix(FLIP_OPENGL @ Rotation.from_rotvec(global_rotvec[0])
                                     .as_matrix()).as_rotvec()
    joints = joints_rel[0] + np.array([0.02, -0.01, 0.5])  # optical frame
    camera = CameraIntrinsics(500.0, 500.0, 160.0, 120.0)
    _write_rgb(tmp_path / "rgb.png", rng, (240, 320))
    sample = HandSample(dataset="ho3d_v3", key="seq/0000", image_path=tmp_path / "rgb.png",
                        side="right", camera=camera, joints=joints)
    sample.keypoints_2d, sample.box = labelled_geometry(joints, camera)
    sample.mano = ManoParameters(
        pose=np.concatenate([gl_global, hand_rotvec[0].reshape(45)]), betas=betas[0],
        translation=None, flat_hand_mean=True, frame=OPENGL_FRAME,
    )
    crops = LabelledCrops([sample], teacher.mano.hand_mean.numpy(), STRONG, seed=2)
    for step in range(3):
        item = crops[(step, 0, 0)]
        np.testing.assert_allclose(_mano_joints_rel(teacher.mano, item), item["joints_rel"],
                                   atol=2e-5)


def test_samples_without_a_box_are_replaced_by_the_next_labelled_one(tmp_path, teacher):
    rng = np.random.default_rng(6)
    _write_rgb(tmp_path / "a.png", rng)
    unlabelled = HandSample(dataset="ho3d_v2", key="a", image_path=tmp_path / "a.png",
                            side="right")
    camera = CameraIntrinsics(600.0, 600.0, 112.0, 112.0)
    joints = _mano_hands(teacher.mano, rng, 1)[3][0] + np.array([0.0, 0.0, 0.6])
    labelled = HandSample(dataset="ho3d_v2", key="b", image_path=tmp_path / "a.png",
                          side="right", camera=camera, joints=joints)
    labelled.keypoints_2d, labelled.box = labelled_geometry(joints, camera)
    crops = LabelledCrops([unlabelled, labelled], np.zeros(45), augment=False)
    item = crops[(0, 0, 0)]
    assert float(item["has_joints"]) == 1.0 and float(item["has_mano"]) == 0.0
    np.testing.assert_allclose(item["joints_rel"], joints - joints[:1], atol=1e-6)


def test_labelled_distillation_adds_ground_truth_terms(freihand_root, teacher, distill_tiny_vit):
    reader = FreiHAND(freihand_root, "training", versions=("gs",))
    dataset = LabelledCrops(reader, teacher.mano.hand_mean.numpy(), seed=0)
    seed_everything(0)
    student = student_for_teacher(distill_tiny_vit, teacher)
    config = DistillConfig(kd="output", steps=2, batch_size=2, warmup_steps=0)
    distiller = Distiller(student, teacher, config)
    metrics = distiller.train_step(stack_items([dataset[(0, 0, 0)], dataset[(0, 1, 2)]]))
    gt_terms = {k for k in metrics if k.startswith("gt/")}
    assert gt_terms == {"gt/keypoints_2d", "gt/joints_rel", "gt/global_orient",
                        "gt/hand_pose", "gt/betas"}
    assert all(np.isfinite(metrics[k]) and metrics[k] > 0 for k in gt_terms)
    results = distiller.evaluate(validation_batch(dataset, range(3)))
    assert {"gt_pa_mpjpe_mm", "teacher_gt_pa_mpjpe_mm", "teacher_pa_mpjpe_mm"} <= set(results)
    assert all(np.isfinite(v) for v in results.values())


@pytest.fixture()
def footage(tmp_path) -> Path:
    """Two images and a short video (MJPG .avi)."""
    folder = tmp_path / "footage"
    folder.mkdir()
    rng = np.random.default_rng(8)
    for name in ("a.png", "b.png"):
        assert cv2.imwrite(str(folder / name), rng.integers(0, 255, (120, 160, 3), np.uint8))
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (160, 120))
    assert writer.isOpened(), "this OpenCV cannot write MJPG video"
    for _ in range(3):
        writer.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    writer.release()
    return folder


def test_crop_cache_from_a_box_file_names_images_and_video_frames(footage, tmp_path):
    boxes = JsonBoxes.from_dict({
        "a.png": [{"box": [20, 30, 70, 90], "side": "right"},
                  {"box": [90, 20, 150, 100], "side": "left", "score": 0.4}],
        "clip_000002": [{"box": [40, 40, 100, 110], "side": "left"}],
    })
    recipe = {"boxes": "test"}
    cache = CropCache.build(MediaFolder(footage), file_boxes(boxes), tmp_path / "c", recipe)
    assert [(Path(e["source"]).name, e["frame"], e["side"]) for e in cache.entries] == [
        ("a.png", 0, "right"), ("a.png", 0, "left"), ("clip.avi", 2, "left"),
    ]
    image = cv2.cvtColor(cv2.imread(str(footage / "a.png")), cv2.COLOR_BGR2RGB)
    expected = denormalize_crop(crop_hand(image, HandBox(90, 20, 150, 100, side="left")).image)
    np.testing.assert_array_equal(cache.image(1), expected)  # the left hand, mirrored
    assert CachedCrops(cache, augment=False).load(0, None)["crops"].shape == (3, 256, 256)

    index = tmp_path / "c" / "index.json"
    written = index.stat().st_mtime_ns
    again = CropCache.build(MediaFolder(footage), file_boxes(boxes), tmp_path / "c", recipe)
    assert len(again) == 3 and index.stat().st_mtime_ns == written  # re-used
    scored = CropCache.build(MediaFolder(footage), file_boxes(boxes), tmp_path / "c", recipe,
                             min_score=0.5)
    assert len(scored) == 2  # another recipe: rebuilt without the low-score hand
    with pytest.raises(ValueError, match="no hands were found"):
        CropCache.build(MediaFolder(footage), file_boxes(JsonBoxes.from_dict({})),
                        tmp_path / "empty", recipe)


def test_cached_crops_augment_deterministically(footage, tmp_path):
    cache = CropCache.build(MediaFolder(footage), detector_boxes(FullFrameBoxes("right")),
                            tmp_path / "c", {})
    assert len(cache) == 5  # two images and three video frames
    plain = CachedCrops(cache, augment=False)
    augmented = CachedCrops(cache, seed=4)
    np.testing.assert_array_equal(denormalize_crop(plain[(0, 0, 1)]["crops"]), cache.image(1))
    first = augmented.load(1, item_rng(4, 9, 0))["crops"]
    np.testing.assert_array_equal(first, augmented[(9, 0, 1)]["crops"])
    assert not np.array_equal(first, plain[(9, 0, 1)]["crops"])


def test_cli_distills_on_a_freihand_layout(
    freihand_root, test_assets, tmp_path, capsys, distill_tiny_vit
):
    student = tmp_path / "student.json"
    student.write_text(json.dumps(distill_tiny_vit))
    out = tmp_path / "run"
    code = main(["distill", "--teacher", str(test_assets.checkpoint), "--student", str(student),
                 "--dataset", "freihand", "--data", str(freihand_root), "--out", str(out),
                 "--steps", "2", "--batch-size", "2", "--val-size", "2", "--eval-every", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "10 training crops, 2 held out" in printed
    assert "vs labels: student" in printed
    assert (out / "student.ckpt").is_file() and not (out / "crops").exists()
