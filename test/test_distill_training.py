"""Distillation mechanics on synthetic footage with the small random-weights teacher."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from fasthmr_ros import load_hand_regressor
from fasthmr_ros.pipeline.box_sources import FullFrameBoxes
from fasthmr_ros.pipeline.datasets.media import MediaFolder
from fasthmr_ros.training.data import (
    CachedCrops,
    CropCache,
    StepBatchSampler,
    detector_boxes,
    stack_items,
    validation_batch,
)
from fasthmr_ros.training.distiller import (
    DistillConfig,
    Distiller,
    TrainingStateError,
    read_training_state,
    seed_everything,
)
from fasthmr_ros.training.student_specs import HEAD_MEAN_BUFFERS, student_for_teacher
from fasthmr_ros.training.teacher_targets import TeacherTargets, WithTeacherTargets

pytestmark = pytest.mark.usefixtures("distill_single_thread")


@pytest.fixture(scope="module")
def teacher(test_assets):
    """This module's own teacher (distillers freeze it)."""
    return load_hand_regressor(test_assets.checkpoint)


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> CropCache:
    """Crops of eight synthetic 'hand' images (coloured blobs on noise), full-frame boxes."""
    folder = tmp_path_factory.mktemp("footage")
    rng = np.random.default_rng(7)
    for i in range(8):
        image = rng.integers(0, 60, size=(96, 80, 3), dtype=np.uint8)
        centre = (int(rng.integers(25, 55)), int(rng.integers(30, 66)))
        colour = tuple(int(c) for c in rng.integers(80, 255, size=3))
        cv2.ellipse(image, centre, (18, 28), float(rng.uniform(0, 180)), 0, 360, colour, -1)
        cv2.imwrite(str(folder / f"frame{i}.png"), image)
    return CropCache.build(
        MediaFolder(folder), detector_boxes(FullFrameBoxes("right")), folder / "cache",
        {"test": "footage"},
    )


@pytest.fixture()
def make_student(teacher, distill_tiny_vit):
    """``make_student(seed=0, config=None)``: a fresh student (the tiny ViT by default)."""

    def make(seed: int = 0, config: dict | None = None):
        seed_everything(seed)
        return student_for_teacher(config or distill_tiny_vit, teacher)

    return make


def _batch(dataset, config: DistillConfig, step: int) -> dict[str, torch.Tensor]:
    sampler = StepBatchSampler(len(dataset), config.batch_size, config.seed, 0, config.steps)
    return stack_items([dataset[key] for key in sampler.keys(step)])


def test_output_distillation_halves_the_error_to_the_teacher(teacher, footage, make_student):
    crops = CachedCrops(footage, augment=False)
    targets = TeacherTargets(_teacher_outputs(teacher, crops), "test")
    config = DistillConfig(kd="output", steps=200, batch_size=4, lr=3e-3, warmup_steps=20,
                           eval_every=0)
    distiller = Distiller(make_student(), teacher, config)
    validation = validation_batch(crops, range(len(crops)))
    before = distiller.evaluate(validation)["teacher_pa_mpjpe_mm"]
    distiller.fit(WithTeacherTargets(crops, targets), progress=False)
    after = distiller.evaluate(validation)["teacher_pa_mpjpe_mm"]
    assert before > 5.0  # a fresh student is far from the teacher
    assert after <= 0.5 * before, (before, after)


def _teacher_outputs(teacher, dataset) -> dict[str, np.ndarray]:
    from fasthmr_ros.training.teacher_targets import compute_teacher_outputs

    return compute_teacher_outputs(teacher, dataset, batch_size=8, device="cpu")


def test_a_step_keeps_the_teacher_frozen_in_eval_mode_and_trains_the_projection(
    teacher, footage, make_student
):
    config = DistillConfig(kd="both", steps=10, batch_size=2, lr=1e-3, warmup_steps=0)
    distiller = Distiller(make_student(), teacher, config)
    teacher_before = copy.deepcopy(teacher.state_dict())
    projection_before = distiller.projection.proj.weight.detach().clone()
    assert distiller.projection.proj.weight.shape[:2] == (32, 160)  # teacher 160 -> student 32
    optimised = {id(p) for group in distiller.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in distiller.projection.parameters())
    assert not any(id(p) in optimised for p in teacher.parameters())

    seen_modes = []
    ran: set[int] = set()

    def record(module, _inputs):
        seen_modes.append(module.training)
        ran.add(id(module))

    hooks = [module.register_forward_pre_hook(record) for module in teacher.modules()]
    teacher.train()  # what a Lightning-style outer .train() does to a registered teacher
    try:
        dataset = CachedCrops(footage, seed=3)
        for step in range(2):
            metrics = distiller.train_step(_batch(dataset, config, step))
    finally:
        for hook in hooks:
            hook.remove()
    layers = [m for m in teacher.modules()
              if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.LayerNorm))]
    assert layers and all(id(m) in ran for m in layers)  # the whole teacher network ran
    assert not any(seen_modes), "a teacher module ran in training mode"
    assert {"kd/feature", "kd/joints_rel", "kd/keypoints_2d"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert not torch.equal(distiller.projection.proj.weight, projection_before)
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_student_checkpoint_holds_the_student_only(teacher, footage, tmp_path, make_student):
    config = DistillConfig(kd="both", steps=4, batch_size=2, warmup_steps=0, eval_every=0)
    student = make_student()
    distiller = Distiller(student, teacher, config, teacher_source="teacher.ckpt")
    distiller.fit(CachedCrops(footage), out_dir=tmp_path, progress=False, test_asset=True)

    saved = torch.load(tmp_path / "student.ckpt", map_location="cpu", weights_only=True)
    assert set(saved) == {"fasthmr_format", "config", "state_dict", "distillation",
                          "fasthmr_test_asset"}
    assert saved["distillation"]["step"] == 4
    assert set(saved["state_dict"]) == set(student.state_dict())
    teacher_tensors = [v for k, v in teacher.state_dict().items() if not k.startswith("mano.")]
    for name, value in saved["state_dict"].items():
        assert torch.equal(value, student.state_dict()[name])
        shared = name.startswith("mano.") or name.split(".")[-1] in HEAD_MEAN_BUFFERS
        if not shared:  # MANO and the head's mean parameters are copied by design
            assert not any(
                t.shape == value.shape and torch.equal(t, value) for t in teacher_tensors
            ), name
    size_mb = (tmp_path / "student.ckpt").stat().st_size / 1e6
    assert size_mb < 3.0  # the student (0.1 M parameters) and MANO buffers, no teacher

    reloaded = load_hand_regressor(tmp_path / "student.ckpt")
    assert reloaded.is_test_asset
    crops = validation_batch(CachedCrops(footage), range(3))["crops"]
    student.eval()
    with torch.no_grad():
        expected, actual = student(crops), reloaded(crops)
    for key in ("vertices", "joints", "cam"):
        torch.testing.assert_close(actual[key], expected[key])
    state = read_training_state(tmp_path / "train_state.pt")
    assert state["step"] == 4 and state["projection"] is not None
    assert "teacher" in state and set(state["teacher"]) == {"source", "fingerprint"}


def _run(make_student, teacher, dataset, config, steps, seed=0):
    distiller = Distiller(make_student(seed), teacher, config)
    losses = [distiller.train_step(_batch(dataset, config, s))["loss"] for s in steps]
    return distiller, losses


def test_resuming_reproduces_the_next_steps_exactly(teacher, footage, tmp_path, make_student):
    config = DistillConfig(kd="both", steps=6, batch_size=2, lr=2e-3, warmup_steps=2)
    dataset = CachedCrops(footage, seed=11)  # augmented: the augmentation must repeat too
    straight, straight_losses = _run(make_student, teacher, dataset, config, range(4))
    first, _ = _run(make_student, teacher, dataset, config, range(2))
    first.save(tmp_path)

    resumed = Distiller(make_student(seed=123), teacher, config)  # other initial weights
    resumed.resume(tmp_path / "train_state.pt")
    assert resumed.step == 2
    resumed_losses = [resumed.train_step(_batch(dataset, config, s))["loss"] for s in (2, 3)]
    assert resumed_losses == straight_losses[2:]
    for name, value in straight.student.state_dict().items():
        assert torch.equal(resumed.student.state_dict()[name], value), name
    torch.testing.assert_close(
        resumed.projection.state_dict(), straight.projection.state_dict(), rtol=0, atol=0
    )
    assert resumed.lr == straight.lr

    # fit() continues from the restored step and stops at config.steps.
    resumed.fit(dataset, progress=False)
    assert resumed.step == config.steps


def test_resume_refuses_other_settings_students_and_teachers(
    teacher, footage, tmp_path, make_student, distill_tiny_vit
):
    config = DistillConfig(kd="output", steps=4, batch_size=2, warmup_steps=0)
    first, _ = _run(make_student, teacher, CachedCrops(footage), config, range(1))
    first.save(tmp_path)
    state = read_training_state(tmp_path / "train_state.pt")

    other_lr = Distiller(make_student(), teacher, DistillConfig(
        kd="output", steps=4, batch_size=2, warmup_steps=0, lr=5e-4))
    with pytest.raises(TrainingStateError, match="lr: saved 0.0001, now 0.0005"):
        other_lr.resume(state)
    wider = dict(distill_tiny_vit,
                 backbone=dict(distill_tiny_vit["backbone"], embed_dim=64, num_heads=2),
                 head=dict(distill_tiny_vit["head"], context_dim=64))
    with pytest.raises(TrainingStateError, match="another student"):
        Distiller(make_student(config=wider), teacher, config).resume(state)
    other_teacher = copy.deepcopy(teacher)
    with torch.no_grad():
        other_teacher.mano_head.deccam.bias.add_(0.1)
    with pytest.raises(TrainingStateError, match="another teacher"):
        Distiller(make_student(), other_teacher, config).resume(state)
    longer = DistillConfig(kd="output", steps=8, batch_size=2, warmup_steps=0)
    Distiller(make_student(), teacher, longer).resume(state)  # more steps: allowed


def test_a_timm_student_distils_with_aligned_features(teacher, footage, make_student):
    from fasthmr_ros.models.students import SMALL_STUDENT_HEAD, StudentConfig

    config = StudentConfig(backbone="mobilenetv3_small_050", head=SMALL_STUDENT_HEAD)
    student = make_student(config=config.to_dict())
    channels = student.mano_head.cfg.context_dim
    config = DistillConfig(kd="both", steps=3, batch_size=2, lr=1e-3, warmup_steps=0)
    distiller = Distiller(student, teacher, config)
    assert distiller.projection.proj.weight.shape[:2] == (channels, 160)
    before = copy.deepcopy(student.state_dict())
    metrics = distiller.train_step(_batch(CachedCrops(footage), config, 0))
    assert np.isfinite(metrics["kd/feature"]) and metrics["kd/feature"] > 0
    changed = [k for k, v in student.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed)
    assert any(k.startswith("mano_head.") for k in changed)
    assert all(m.training for m in student.backbone.modules())


def test_stored_teacher_targets_equal_online_targets(teacher, footage, tmp_path, make_student):
    crops = CachedCrops(footage, augment=False)
    path = tmp_path / "targets.npz"
    stored = TeacherTargets.for_dataset(path, teacher, crops, batch_size=3, device="cpu")
    written = path.stat().st_mtime_ns
    again = TeacherTargets.for_dataset(path, teacher, crops, batch_size=3, device="cpu")
    assert path.stat().st_mtime_ns == written  # re-used, not recomputed
    np.testing.assert_array_equal(again.outputs["joints"], stored.outputs["joints"])
    with pytest.raises(ValueError, match="un-augmented"):
        WithTeacherTargets(CachedCrops(footage, augment=True), stored)

    config = DistillConfig(kd="output", steps=2, batch_size=4, warmup_steps=0)
    distiller = Distiller(make_student(), teacher, config)
    with_targets = WithTeacherTargets(crops, stored)
    keys = [(0, slot, index) for slot, index in enumerate((0, 3, 5, 7))]
    online, _ = distiller.compute_losses(stack_items([crops[k] for k in keys]))
    offline, _ = distiller.compute_losses(stack_items([with_targets[k] for k in keys]))
    torch.testing.assert_close(offline, online, rtol=1e-5, atol=1e-7)

    feature = Distiller(make_student(), teacher, DistillConfig(
        kd="both", steps=2, batch_size=4, warmup_steps=0))
    with pytest.raises(ValueError, match="feature maps"):
        feature.compute_losses(stack_items([with_targets[k] for k in keys]))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_mixed_precision_step(teacher, footage, device, make_student):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA float16 autocast with a gradient scaler needs a GPU; none here")
    config = DistillConfig(kd="both", steps=3, batch_size=2, lr=1e-3, warmup_steps=0, amp=True)
    student = make_student()
    distiller = Distiller(student, copy.deepcopy(teacher), config, device=device)
    assert distiller.autocast_dtype == (torch.float16 if device == "cuda" else torch.bfloat16)
    assert distiller.scaler.is_enabled() == (device == "cuda")
    before = copy.deepcopy(student.state_dict())
    batch = _batch(CachedCrops(footage), config, 0)
    total, parts = distiller.compute_losses(batch)
    assert total.dtype == torch.float32 and all(p.dtype == torch.float32 for p in parts.values())
    metrics = distiller.train_step(batch)
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())
    assert all(p.dtype == torch.float32 for p in student.parameters())  # master weights


def test_loader_workers_serve_the_same_batches(teacher, footage, make_student):
    results = []
    for workers in (0, 1):
        config = DistillConfig(kd="output", steps=2, batch_size=2, warmup_steps=0,
                               workers=workers, eval_every=0)
        distiller = Distiller(make_student(), teacher, config)
        results.append(distiller.fit(CachedCrops(footage, seed=2), progress=False)["loss"])
    assert results[0] == results[1]
