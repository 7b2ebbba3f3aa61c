"""Fast-HaMeR students: build, forward shapes, checkpoints, batch equivalence, CLI."""

from __future__ import annotations

import pytest
import torch

from fasthmr_ros import load_hand_regressor
from fasthmr_ros.cli.main import main
from fasthmr_ros.models.checkpoint import CheckpointError
from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.mano_files import find_mano_file, load_mano_file
from fasthmr_ros.models.registry import save_regressor
from fasthmr_ros.models.students import (
    SMALL_STUDENT_HEAD,
    STUDENT_BACKBONES,
    StudentConfig,
    build_student,
    write_student_asset,
)

# Feature channels of the last stage at 256x192 (Fast-HaMeR's table: 960, 640, 2048, 1536).
CHANNELS = {
    "mobilenetv3_large_100": 960,
    "mobilevit_s": 640,
    "resnet50": 2048,
    "convnext_large": 1536,
}


@pytest.fixture(scope="module")
def mano(test_assets):
    return ManoLayer(load_mano_file(find_mano_file(test_assets.mano_dir)))


def crops(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, 256, 256, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "convnext_large" else n
     for n in STUDENT_BACKBONES],
)
def test_named_student_builds_with_hamer_head(name, mano):
    student = build_student(name, mano).eval()
    assert student.config["kind"] == "timm"
    assert student.mano_head.cfg.context_dim == CHANNELS[name]
    assert student.mano_head.cfg.dim == 1024 and student.mano_head.cfg.depth == 6
    with torch.inference_mode():
        features = student.backbone(torch.zeros(1, 3, 256, 192))
        out = student(crops(1, seed=0))
    assert features.shape == (1, CHANNELS[name], 8, 6)  # 48 tokens from the 256x192 window
    assert out["vertices"].shape == (1, 778, 3) and out["joints"].shape == (1, 21, 3)
    assert out["hand_pose"].shape == (1, 15, 3, 3) and out["cam"].shape == (1, 3)


def test_student_sees_the_teachers_window(mano):
    """Only the central 256x192 window matters, as for the ViT teacher."""
    student = build_student("mobilenetv3_large_100", mano, SMALL_STUDENT_HEAD).eval()
    x = crops(2, seed=1)
    y = x.clone()
    y[..., :32] = 5.0
    y[..., -32:] = -5.0
    with torch.inference_mode():
        a, b = student(x), student(y)
    assert torch.equal(a["vertices"], b["vertices"])
    z = x.clone()
    z[..., 100:140] += 1.0
    with torch.inference_mode():
        assert not torch.equal(student(z)["vertices"], a["vertices"])


def test_student_checkpoint_round_trip(mano, tmp_path):
    torch.manual_seed(3)
    student = build_student("mobilevit_s", mano, SMALL_STUDENT_HEAD).eval()
    path = save_regressor(student, tmp_path / "student.ckpt")
    data = torch.load(path, weights_only=True)
    assert data["config"] == StudentConfig.from_dict(data["config"]).to_dict()
    prefixes = {key.split(".")[0] for key in data["state_dict"]}
    assert prefixes == {"backbone", "mano_head", "mano"}  # never a teacher
    loaded = load_hand_regressor(path)
    assert not loaded.training and loaded.config == student.config
    x = crops(3, seed=4)
    with torch.inference_mode():
        expected, got = student(x), loaded(x)
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_student_batch_equivalence(mano):
    student = build_student("resnet18", mano, SMALL_STUDENT_HEAD).eval()
    x = crops(3, seed=5)
    with torch.inference_mode():
        whole = student(x)
        for i in range(3):
            single = student(x[i : i + 1])
            for key in whole:
                assert torch.allclose(whole[key][i : i + 1], single[key], atol=1e-5), key


def test_unknown_backbone_is_a_clear_error(mano):
    with pytest.raises(ValueError, match="timm cannot build backbone 'not_a_net'"):
        build_student("not_a_net", mano)


def test_checkpoint_with_wrong_context_dim_is_rejected(mano, tmp_path):
    student = build_student("mobilenetv3_large_100", mano, SMALL_STUDENT_HEAD)
    config = dict(student.config, head={**student.config["head"], "context_dim": 7})
    torch.save(
        {"fasthmr_format": "fasthmr_ros.hand_regressor/1", "config": config,
         "state_dict": student.state_dict()},
        tmp_path / "bad.ckpt",
    )
    with pytest.raises((ValueError, CheckpointError), match="context_dim 7"):
        load_hand_regressor(tmp_path / "bad.ckpt")


def test_write_student_asset_is_marked(mano, tmp_path):
    path = write_student_asset(tmp_path / "s.ckpt", "mobilenetv3_large_100", mano,
                               SMALL_STUDENT_HEAD)
    model = load_hand_regressor(path)
    assert model.is_test_asset is True


def test_cli_make_test_assets_with_students(tmp_path, capsys):
    code = main(["make-test-assets", str(tmp_path), "--student", "mobilenetv3_large_100",
                 "--student", "mobilevit_s", "--student-head", "small"])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("mobilenetv3_large_100", "mobilevit_s"):
        path = tmp_path / "students" / f"{name}.ckpt"
        assert f"student {name}: {path}" in printed
        model = load_hand_regressor(path)
        assert model.config["backbone"]["name"] == name
        assert model(crops(1, seed=0))["vertices"].shape == (1, 778, 3)


def test_cli_make_test_assets_unknown_student(tmp_path, capsys):
    assert main(["make-test-assets", str(tmp_path), "--student", "nope_net"]) == 2
    assert "timm cannot build backbone 'nope_net'" in capsys.readouterr().err
