"""``fasthmr distill`` end to end on a tiny unlabelled folder, and ``hands --freihand-pred``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from fasthmr_ros import load_hand_regressor
from fasthmr_ros.cli.main import main
from fasthmr_ros.training.distiller import read_training_state

pytestmark = pytest.mark.usefixtures("distill_single_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, distill_tiny_vit):
    """Six synthetic 'hand' crops (blobs on noise) and a tiny student configuration."""
    root = tmp_path_factory.mktemp("distill_cli")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        image = rng.integers(0, 80, size=(120, 100, 3), dtype=np.uint8)
        cv2.circle(image, (50, 60), 30, (int(rng.integers(100, 255)), 120, 200), -1)
        cv2.imwrite(str(images / f"hand{i}.png"), image)
    student = root / "student.json"
    student.write_text(json.dumps(distill_tiny_vit))
    return {"images": images, "student": student}


def _distill(test_assets, folder, out, *extra: str) -> int:
    return main(["distill", "--teacher", str(test_assets.root / "_DATA"),
                 "--data", str(folder["images"]), "--full-frame", "--side", "right",
                 "--out", str(out), *extra])


def test_distill_a_folder_then_resume_then_use_the_student(test_assets, folder, tmp_path,
                                                           capsys):
    out = tmp_path / "run"
    code = _distill(test_assets, folder, out, "--student", str(folder["student"]),
                    "--steps", "4", "--batch-size", "2", "--kd", "both", "--eval-every", "2",
                    "--val-size", "1")
    assert code == 0
    printed = capsys.readouterr()
    assert "6 hand crops" in printed.out and "5 training crops, 1 held out" in printed.out
    assert "student vs teacher PA-MPJPE" in printed.out
    assert "RANDOM" in printed.out + printed.err
    assert (out / "crops" / "index.json").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*")) or not _has_tensorboard()
    state = read_training_state(out / "train_state.pt")
    assert state["step"] == 4 and state["config"]["kd"] == "both"
    student = load_hand_regressor(out / "student.ckpt")
    assert student.is_test_asset and student.config["backbone"]["embed_dim"] == 32

    # Resume: the saved settings are kept; only --steps grows.
    assert _distill(test_assets, folder, out, "--steps", "6", "--resume") == 0
    assert read_training_state(out / "train_state.pt")["step"] == 6
    assert "steps 4 -> 6" in capsys.readouterr().out

    # The student and the teacher write FreiHAND-format predictions; eval compares them.
    preds = {}
    for name, checkpoint in (("student", out / "student.ckpt"),
                             ("teacher", test_assets.checkpoint)):
        preds[name] = tmp_path / f"{name}_pred.json"
        assert main(["hands", str(folder["images"]), "--checkpoint", str(checkpoint),
                     "--full-frame", "--side", "right", "--out", str(tmp_path / name),
                     "--freihand-pred", str(preds[name])]) == 0
    joints, vertices = json.loads(preds["student"].read_text())
    assert np.asarray(joints).shape == (6, 21, 3) and np.asarray(vertices).shape == (6, 778, 3)
    saved = np.load(tmp_path / "student" / "hand0.npz")
    np.testing.assert_allclose(np.asarray(joints[0]), saved["joints"][0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(vertices[0]), saved["vertices"][0], atol=1e-6)
    scores = tmp_path / "agreement.json"
    assert main(["eval", "--dataset", "teacher", "--teacher", str(preds["teacher"]),
                 "--pred", str(preds["student"]), "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["pa_mpjpe_mm"] > 0


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_cached_teacher_targets_and_init_from_a_student(test_assets, folder, tmp_path, capsys):
    first = tmp_path / "cached"
    assert _distill(test_assets, folder, first, "--student", str(folder["student"]),
                    "--steps", "2", "--batch-size", "2", "--targets", "cached",
                    "--val-size", "0") == 0
    with np.load(first / "crops" / "teacher_targets.npz") as targets:
        assert targets["joints"].shape == (6, 21, 3)
    second = tmp_path / "adapted"
    assert _distill(test_assets, folder, second, "--init", str(first / "student.ckpt"),
                    "--steps", "1", "--batch-size", "2", "--lr", "1e-9", "--warmup", "0") == 0
    assert f"student starts from {first / 'student.ckpt'}" in capsys.readouterr().out
    start = torch.load(first / "student.ckpt", weights_only=True)["state_dict"]
    adapted = torch.load(second / "student.ckpt", weights_only=True)["state_dict"]
    assert set(start) == set(adapted)
    drift = max(float((start[k] - adapted[k]).abs().max()) for k in start
                if start[k].is_floating_point())
    assert drift < 1e-6  # started from --init's weights (the tiny lr barely moved them)


def test_user_errors_name_the_problem(test_assets, folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert _distill(test_assets, folder, out, "--student", str(folder["student"]),
                    "--steps", "1", "--val-size", "0") == 0
    capsys.readouterr()
    cases = [
        ([], "already holds a distillation run"),
        (["--resume", "--lr", "0.5"], "lr: saved 0.0001, now 0.5"),
        (["--resume", "--student", "vit-tiny"], "differs from the student"),
    ]
    for extra, message in cases:
        assert _distill(test_assets, folder, out, "--steps", "2", *extra) == 2
        assert message in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    cases = [
        (["--student", "vit-tiny", "--kd", "feature"], "--kd feature trains only the backbone"),
        (["--student", "vit-tiny", "--targets", "cached", "--kd", "both"], "feature maps"),
        (["--student", "bad/name"], "unknown student"),
        ([], "--student is required"),
        (["--resume"], "cannot resume"),
        (["--student", "vit-tiny", "--warmup", "9", "--steps", "5"], "--warmup must be in"),
    ]
    for extra, message in cases:
        assert _distill(test_assets, folder, fresh, *extra) == 2
        assert message in capsys.readouterr().err
    assert main(["distill", "--teacher", str(test_assets.checkpoint), "--data",
                 str(folder["images"]), "--full-frame", "--out", str(fresh), "--student",
                 "vit-tiny"]) == 2
    assert "--full-frame needs --side" in capsys.readouterr().err
    assert not (fresh / "train_state.pt").exists()


def test_pretrained_backbone_weights_load_from_a_local_file(
    test_assets, tmp_path, distill_tiny_vit
):
    import timm

    from fasthmr_ros.models.students import SMALL_STUDENT_HEAD, StudentConfig
    from fasthmr_ros.training.student_specs import load_pretrained_backbone, student_for_teacher

    teacher = load_hand_regressor(test_assets.checkpoint)
    reference = timm.create_model("mobilenetv3_small_050", pretrained=False)
    torch.nn.init.normal_(reference.conv_stem.weight)
    weights = tmp_path / "mobilenet.pth"
    torch.save(reference.state_dict(), weights)
    config = StudentConfig(backbone="mobilenetv3_small_050", head=SMALL_STUDENT_HEAD).to_dict()
    student = student_for_teacher(config, teacher)
    assert not torch.equal(student.backbone.body.conv_stem.weight, reference.conv_stem.weight)
    load_pretrained_backbone(student, weights)
    body = student.backbone.body.state_dict()
    for name, value in body.items():
        torch.testing.assert_close(value, reference.state_dict()[name], rtol=0, atol=0)
    vit = student_for_teacher(distill_tiny_vit, teacher)
    with pytest.raises(ValueError, match="timm students only"):
        load_pretrained_backbone(vit, weights)
    with pytest.raises(FileNotFoundError):
        load_pretrained_backbone(student, tmp_path / "missing.pth")
