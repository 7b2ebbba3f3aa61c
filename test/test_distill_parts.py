"""Distillation building blocks: loss geometry, feature alignment, schedule, sampler, logging."""

from __future__ import annotations

import logging
import math
import sys

import numpy as np
import pytest
import torch

from fasthmr_ros.models.constants import CROP_FOCAL_LENGTH, CROP_SIZE
from fasthmr_ros.pipeline.camera import crop_camera_translation, project_points
from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.training import scalar_log
from fasthmr_ros.training.data import StepBatchSampler, TensorCrops
from fasthmr_ros.training.feature_alignment import (
    FeatureProjection,
    alignment_grid,
    backbone_window,
    feature_distillation_loss,
)
from fasthmr_ros.training.losses import (
    LossWeights,
    crop_keypoints,
    hand_targets,
    output_terms,
    weighted_sum,
)
from fasthmr_ros.training.scalar_log import ScalarLog
from fasthmr_ros.training.schedule import warmup_cosine_factor


def _outputs(rng: np.random.Generator, batch: int = 3) -> dict[str, torch.Tensor]:
    def rotations(count: int) -> torch.Tensor:
        q, _ = np.linalg.qr(rng.normal(size=(batch, count, 3, 3)))
        return torch.from_numpy(q * np.sign(np.linalg.det(q))[..., None, None]).float()

    joints = rng.normal(scale=0.04, size=(batch, 21, 3))
    cam = np.stack([rng.uniform(5, 9, batch), rng.normal(0, 0.02, batch),
                    rng.normal(0, 0.02, batch)], axis=1)
    return {
        "joints": torch.from_numpy(joints).float(),
        "cam": torch.from_numpy(cam).float(),
        "global_orient": rotations(1),
        "hand_pose": rotations(15),
        "betas": torch.from_numpy(rng.normal(size=(batch, 10))).float(),
    }


def test_crop_keypoints_match_the_pipeline_camera_on_a_crop_sized_image():
    # An image that IS the 256 crop, seen with HaMeR's crop camera (focal 5000, centred):
    # the pipeline's lift + projection must land on the normalised keypoints * 256 + 128.
    outputs = _outputs(np.random.default_rng(0))
    normalised = crop_keypoints(outputs["joints"], outputs["cam"]).numpy()
    camera = CameraIntrinsics(CROP_FOCAL_LENGTH, CROP_FOCAL_LENGTH, CROP_SIZE / 2, CROP_SIZE / 2)
    cam_t = crop_camera_translation(outputs["cam"].numpy())
    pixels = project_points(outputs["joints"].numpy() + cam_t[:, None, :], camera)
    np.testing.assert_allclose((normalised + 0.5) * CROP_SIZE, pixels, atol=1e-3)
    # A hand within the crop lands within [-0.5, 0.5].
    assert np.abs(normalised).max() < 0.5


def test_output_terms_are_zero_for_identical_outputs_and_follow_the_weights():
    rng = np.random.default_rng(1)
    student, teacher = _outputs(rng), _outputs(rng)
    same = output_terms(hand_targets(teacher), hand_targets(teacher))
    assert set(same) == {"keypoints_2d", "joints_rel", "global_orient", "hand_pose", "betas"}
    assert all(float(v) == 0.0 for v in same.values())

    terms = output_terms(hand_targets(student), hand_targets(teacher))
    # Betas: mean over the batch of the per-sample sum of squares.
    expected = ((student["betas"] - teacher["betas"]) ** 2).sum(1).mean()
    torch.testing.assert_close(terms["betas"], expected)
    # Joints: root-relative L1 (a translation of the student changes nothing).
    shifted = dict(student, joints=student["joints"] + torch.tensor([0.1, -0.2, 0.3]))
    moved = output_terms(hand_targets(shifted), hand_targets(teacher))
    torch.testing.assert_close(moved["joints_rel"], terms["joints_rel"])
    assert not torch.allclose(moved["keypoints_2d"], terms["keypoints_2d"])
    weights = LossWeights()
    total = weighted_sum(terms, weights)
    manual = sum(getattr(weights, key) * value for key, value in terms.items())
    torch.testing.assert_close(total, manual)
    assert (weights.joints_rel, weights.keypoints_2d, weights.global_orient,
            weights.hand_pose, weights.betas) == (0.05, 0.01, 0.001, 0.001, 0.0005)


def test_masks_drop_samples_but_keep_the_batch_mean():
    rng = np.random.default_rng(2)
    student, teacher = _outputs(rng), _outputs(rng)
    masks = {"has_joints": torch.tensor([1.0, 0.0, 0.0]), "has_mano": torch.zeros(3)}
    terms = output_terms(hand_targets(student), hand_targets(teacher), masks)
    per_sample = (hand_targets(student)["joints_rel"] - hand_targets(teacher)["joints_rel"])
    torch.testing.assert_close(terms["joints_rel"], per_sample[0].abs().sum() / 3)
    assert float(terms["betas"]) == 0.0


def test_windows_follow_the_backbone_input_size():
    window = backbone_window(256, 192)
    assert (window.x0, window.x1, window.y0, window.y1) == (32.0, 224.0, 0.0, 256.0)
    full = backbone_window(256, 256)
    assert (full.x0, full.x1) == (0.0, 256.0)
    with pytest.raises(ValueError, match="centred window"):
        backbone_window(256, 300)


def test_teacher_map_is_sampled_where_the_student_cells_are():
    # Fast-HaMeR's case: teacher on the central 256x192 window (16x12 grid), student on the
    # full 256x256 crop (8x8 grid). Fill the teacher map with each cell's crop x coordinate:
    # aligned sampling must return each student cell's own x coordinate.
    teacher_window, student_window = backbone_window(256, 192), backbone_window(256, 256)
    x_centres = 32.0 + (torch.arange(12) + 0.5) * 16.0
    teacher = x_centres.expand(1, 1, 16, 12).clone()
    projection = FeatureProjection(1, 1)
    with torch.no_grad():
        projection.proj.weight.fill_(1.0)
        projection.proj.bias.zero_()
    sampled, valid = projection(teacher, teacher_window, student_window, (8, 8))
    student_x = (torch.arange(8) + 0.5) * 32.0
    # Cells centred at x = 16 and 240 lie outside the teacher's view.
    assert valid.tolist() == [[False] + [True] * 6 + [False]] * 8
    torch.testing.assert_close(sampled[0, 0][valid], student_x.expand(8, 8)[valid])


def test_identical_views_and_grids_sample_the_teacher_map_unchanged():
    window = backbone_window(256, 192)
    grid, valid = alignment_grid(window, window, (16, 12))
    assert bool(valid.all())
    features = torch.randn(2, 5, 16, 12)
    sampled = torch.nn.functional.grid_sample(
        features, grid.expand(2, -1, -1, -1), align_corners=False
    )
    torch.testing.assert_close(sampled, features, atol=1e-5, rtol=0)


def test_feature_loss_is_scale_free_and_trains_the_projection():
    torch.manual_seed(0)
    teacher = torch.randn(4, 6, 16, 12)
    projection = FeatureProjection(6, 3)
    window = backbone_window(256, 192)
    projected, valid = projection(teacher, window, window, (8, 6))
    assert feature_distillation_loss(projected, projected, valid) < 1e-6
    # Standardised per channel: scaling or shifting the student changes nothing, so
    # shrinking both sides towards zero cannot lower the loss.
    student = torch.randn(4, 3, 8, 6)
    loss = feature_distillation_loss(student, projected, valid)
    torch.testing.assert_close(
        feature_distillation_loss(10.0 * student + 3.0, projected, valid), loss, rtol=1e-4,
        atol=1e-5,
    )
    torch.testing.assert_close(
        feature_distillation_loss(student, 0.01 * projected, valid), loss, rtol=1e-3, atol=1e-4
    )
    assert 1.0 < float(loss.detach()) < 3.0  # unrelated maps: about 2 (1 - r) with r near 0
    loss.backward()
    assert projection.proj.weight.grad is not None
    assert float(projection.proj.weight.grad.abs().sum()) > 0.0


def test_warmup_then_cosine():
    factors = [warmup_cosine_factor(s, 100, 10, 0.01) for s in range(101)]
    assert factors[0] == pytest.approx(1 / 11)
    assert factors[9] == pytest.approx(10 / 11)
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.01 + 0.99 * 0.5)
    assert factors[100] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine_factor(0, 10, 10)


def test_batches_depend_on_the_step_only():
    full = StepBatchSampler(7, 3, seed=5, start_step=0, total_steps=10)
    resumed = StepBatchSampler(7, 3, seed=5, start_step=4, total_steps=10)
    assert list(full)[4:] == list(resumed)
    keys = [key for batch in full for key in batch]
    assert [k[:2] for k in keys[:3]] == [(0, 0), (0, 1), (0, 2)]
    indices = [index for _, _, index in keys]
    assert sorted(indices[:7]) == list(range(7))  # each epoch visits every sample once
    assert sorted(indices[7:14]) == list(range(7))
    assert indices[:7] != indices[7:14]  # reshuffled per epoch
    assert list(StepBatchSampler(7, 3, seed=6, start_step=0, total_steps=10)) != list(full)


def test_scalar_log_writes_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = ScalarLog(tmp_path / "tb")
    assert log.active
    log.scalars(3, {"loss": 0.5, "lr": 1e-4}, "train")
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/lr"}
    (event,) = events.Scalars("train/loss")
    assert (event.step, event.value) == (3, 0.5)


def test_scalar_log_without_tensorboard_warns_once_and_continues(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setattr(scalar_log, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="fasthmr_ros.training.scalar_log"):
        first, second = ScalarLog(tmp_path / "a"), ScalarLog(tmp_path / "b")
    assert not first.active and not second.active
    first.scalars(1, {"loss": math.pi})
    first.close()
    warnings = [r for r in caplog.records if "TensorBoard is not installed" in r.getMessage()]
    assert len(warnings) == 1
    assert "pip install" in warnings[0].getMessage()
    assert not (tmp_path / "a").exists()


def test_tensor_crops_serve_normalised_crops_as_they_are():
    crops = torch.randn(3, 3, 256, 256)
    dataset = TensorCrops(crops)
    item = dataset[(7, 1, 2)]
    np.testing.assert_array_equal(item["crops"], crops[2].numpy())
    assert len(dataset) == 3 and not dataset.labelled
    with pytest.raises(ValueError, match=r"\(N, 3, 256, 256\)"):
        TensorCrops(torch.zeros(2, 3, 128, 128))


def _imported_packages(path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name.split(".")[1] for name in names
            if name.startswith("fasthmr_ros.") and name.count(".") >= 1}


def test_training_layer_imports_only_downwards_and_only_the_cli_imports_it():
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "fasthmr_ros"
    for module in (package / "training").glob("*.py"):
        assert _imported_packages(module) <= {"models", "pipeline", "training"}, module.name
    for layer in ("models", "pipeline", "engines", "ros"):
        for module in (package / layer).rglob("*.py"):
            assert "training" not in _imported_packages(module), module
