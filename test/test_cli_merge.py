"""``fasthmr merge calibrate`` end to end on a folder of rendered frames (tiny ViT)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fasthmr_ros.cli.main import main
from fasthmr_ros.models.decoder_head import HeadConfig
from fasthmr_ros.models.merge_plan import load_merge_plan
from fasthmr_ros.models.regressor import RegressorConfig
from fasthmr_ros.models.test_assets import write_test_assets
from fasthmr_ros.models.vit import ViTConfig
from fasthmr_ros.pipeline.sample_image import draw_sample_hand

TINY_DEEP = RegressorConfig(
    backbone=ViTConfig(embed_dim=64, depth=5, num_heads=2),
    head=HeadConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=32, context_dim=64),
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    assets = write_test_assets(root / "assets", config=TINY_DEEP)
    frames = root / "frames"
    frames.mkdir()
    for index in range(4):
        image = draw_sample_hand(192 + 16 * index, 256)
        cv2.imwrite(str(frames / f"frame{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return assets, frames, root


def _calibrate(setup, *extra: str, tau: str = "0.5") -> tuple[int, dict, object]:
    assets, frames, root = setup
    plan = root / f"plan-{tau}-{len(extra)}.json"
    code = main(["merge", "calibrate", "--checkpoint", str(assets.checkpoint), "--data",
                 str(frames), "--full-frame", "--tau-mm", tau, "--repeats", "1",
                 "--cache-dir", str(root / "cache"), "-o", str(plan), *extra])
    return code, json.loads(plan.read_text()) if plan.exists() else {}, plan


def test_calibrate_writes_a_plan_bound_to_the_checkpoint(setup, capsys) -> None:
    code, plan, path = _calibrate(setup, "--tokens", "96,96,1", tau="1000")
    out = capsys.readouterr().out
    assert code == 0, out
    # A huge budget folds every block into one (the final open window is committed).
    assert plan["layers"]["merge"] == [[0, 4]]
    assert plan["tokens"] == {"keep": 96, "per_layer": 96, "layers": 1, "mask": "foreground"}
    assert len(plan["checkpoint_sha256"]) == 64
    assert "blocks removed: 4" in out and "x, same run" in out and "mm root-aligned" in out
    assert load_merge_plan(path).blocks_removed == 4
    # The original model's outputs were cached for the next run.
    assert list((setup[2] / "cache").glob("original-joints-*.npy"))


def test_tiny_budget_merges_nothing_and_plan_loads(setup, capsys) -> None:
    from fasthmr_ros import load_hand_regressor

    code, plan, path = _calibrate(setup, tau="1e-9")
    assert code == 0
    assert "layers" not in plan
    assert "blocks removed: 0" in capsys.readouterr().out
    model = load_hand_regressor(setup[0].checkpoint, merge_plan=path)
    assert len(model.backbone.blocks) == 5


def test_plan_for_another_checkpoint_is_refused_by_the_cli(setup, tmp_path, capsys) -> None:
    other = write_test_assets(tmp_path / "other", seed=5)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "fasthmr-merge-plan/1",
                                "checkpoint_sha256": "0" * 64}))
    image = tmp_path / "hand.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    code = main(["hands", str(image), "--checkpoint", str(other.checkpoint), "--full-frame",
                 "--side", "right", "--merge-plan", str(plan), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "made for another checkpoint" in capsys.readouterr().err


def test_body_flag_refuses_hand_options(setup, capsys) -> None:
    code, _, _ = _calibrate(setup, "--body")  # _calibrate passes --full-frame
    assert code == 2
    assert "--body takes person frames" in capsys.readouterr().err


def test_calibrate_a_body_checkpoint_on_rendered_people(body_assets, tmp_path, capsys) -> None:
    """--body: people from MediaPipe Pose, HMR2.0 crops, their masks as the token foreground."""
    pytest.importorskip("mediapipe")
    from fasthmr_ros import load_body_regressor
    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.results import CameraIntrinsics
    from fasthmr_ros.pipeline.sample_image import render_people

    frames = tmp_path / "people"
    frames.mkdir()
    image, _ = render_people(AnnyBodyModel.default(), CameraIntrinsics(600, 600, 320, 240))
    cv2.imwrite(str(frames / "people.png"), image)
    plan_path = tmp_path / "body-plan.json"
    code = main(["merge", "calibrate", "--checkpoint", str(body_assets.root), "--body",
                 "--data", str(frames), "--tau-mm", "1e6", "--tokens", "96,96,1",
                 "--repeats", "1", "--cache-dir", str(tmp_path / "cache"),
                 "-o", str(plan_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    plan = json.loads(plan_path.read_text())
    assert plan["layers"]["merge"] == [[0, 1]]  # the small body ViT's two blocks, folded
    assert plan["tokens"]["mask"] == "foreground"
    model = load_body_regressor(body_assets.root, merge_plan=plan_path)
    assert len(model.backbone.blocks) == 1 and model.uses_foreground


def test_person_masks_become_foreground_tokens() -> None:
    from fasthmr_ros.pipeline.crop import BODY_RESCALE_FACTOR, crop_box
    from fasthmr_ros.pipeline.foreground import person_foreground_tokens
    from fasthmr_ros.pipeline.results import PersonBox

    rgb = np.zeros((480, 640, 3), np.uint8)
    mask = np.zeros((480, 640), np.float32)
    mask[100:400, 280:360] = 1.0  # a standing person, centred in its box
    person = PersonBox(260, 80, 380, 420, mask=mask)
    transform = crop_box(rgb, person, BODY_RESCALE_FACTOR).transform
    flags = person_foreground_tokens([person, PersonBox(260, 80, 380, 420)],
                                     [transform, transform])
    assert flags.shape == (2, 192)
    grid = flags[0].reshape(16, 12)
    assert grid[8, 6] == 1 and grid[8, 0] == 0  # centre column foreground, edge background
    assert not flags[1].any()  # no mask: no foreground (plain ToMe)


def test_calibrator_reports_pa_mpjpe_against_labels(setup) -> None:
    from fasthmr_ros import load_hand_regressor
    from fasthmr_ros.models.merge_plan import TokenPlan
    from fasthmr_ros.pipeline.box_sources import FullFrameBoxes
    from fasthmr_ros.training.merge_calibration import (
        MergeCalibrator,
        calibration_frames,
        collect_crops,
    )

    assets, frames, _ = setup
    model = load_hand_regressor(assets.checkpoint)
    data = collect_crops(calibration_frames([str(frames)]), FullFrameBoxes("right").detect, 3,
                         progress=False)
    assert data.crops.shape == (3, 3, 256, 256) and data.foreground.shape == (3, 192)
    data.labels = MergeCalibrator(model, data, progress=False).reference.astype(np.float64)
    calibrator = MergeCalibrator(model, data, progress=False)
    result = calibrator.calibrate(1e-9, tokens=TokenPlan(150, 42, 1, mask="none"), repeats=1)
    assert result.plan.merge == () and result.plan.tokens.keep == 150
    assert result.original_pa_mpjpe_mm < 1e-3  # labels are the original's own joints
    assert result.merged_pa_mpjpe_mm > 0 and result.plan_error_mm > 0
    assert "PA-MPJPE against the labels" in result.summary()
    # Trials of the search were recorded: every window of two blocks was tried and failed.
    assert [run for run, _, _ in result.trials] == [(3, 4), (2, 3), (1, 2), (0, 1)]
