"""``fasthmr hands`` end to end on a synthetic image with the random-weights test assets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from fasthmr_ros.cli.main import main


@pytest.fixture()
def scene(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8)
    cv2.circle(image, (100, 120), 40, (40, 120, 220), -1)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), image)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({
        "scene.png": [
            {"box": [60, 70, 140, 170], "side": "right", "score": 0.95},
            {"box": [190, 60, 260, 150], "side": "left", "score": 0.6},
        ]
    }))
    return path, boxes


def test_boxes_file_end_to_end(tmp_path, scene, test_assets, capsys):
    image_path, boxes = scene
    out = tmp_path / "out"
    code = main(["hands", str(image_path), "--checkpoint", str(test_assets.checkpoint),
                 "--boxes", str(boxes), "--fx", "400", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr()
    assert "RANDOM" in printed.out + printed.err

    record = json.loads((out / "scene.json").read_text())
    assert (record["image"], record["width"], record["height"]) == ("scene.png", 320, 240)
    assert record["camera"] == {"fx": 400.0, "fy": 400.0, "cx": 160.0, "cy": 120.0}
    assert record["random_weights"] is True
    hands = record["hands"]
    assert [h["side"] for h in hands] == ["right", "left"]
    assert [h["score"] for h in hands] == [0.95, 0.6]
    assert hands[0]["box"] == [60, 70, 140, 170]
    for hand in hands:
        assert np.array(hand["keypoints_2d"]).shape == (21, 2)
        assert np.array(hand["joints"]).shape == (21, 3)
        assert np.array(hand["cam_t"]).shape == (3,)
        joints = np.array(hand["joints"])
        projected = 400.0 * joints[:, :2] / joints[:, 2:] + [160.0, 120.0]
        np.testing.assert_allclose(projected, hand["keypoints_2d"], atol=0.5)

    arrays = np.load(out / "scene.npz")
    assert arrays["vertices"].shape == (2, 778, 3)
    assert arrays["joints"].shape == (2, 21, 3)
    assert arrays["faces"].shape == (1538, 3)
    np.testing.assert_array_equal(arrays["faces_left"], arrays["faces"][:, [0, 2, 1]])
    np.testing.assert_array_equal(arrays["is_right"], [True, False])
    np.testing.assert_allclose(arrays["joints"][0], hands[0]["joints"], atol=1e-6)

    overlay = cv2.imread(str(out / "scene_overlay.png"))
    assert overlay.shape == (240, 320, 3)
    original = cv2.imread(str(image_path))
    assert np.abs(overlay.astype(int) - original).sum() > 0  # something was drawn


def test_full_frame_mode(tmp_path, test_assets):
    crop = np.full((96, 80, 3), 128, np.uint8)
    path = tmp_path / "crop.jpg"
    cv2.imwrite(str(path), crop)
    out = tmp_path / "out"
    code = main(["hands", str(path), "--checkpoint", str(test_assets.checkpoint),
                 "--full-frame", "--side", "left", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "crop.json").read_text())
    (hand,) = record["hands"]
    assert hand["side"] == "left"
    assert hand["box"] == [-0.5, -0.5, 79.5, 95.5]
    assert (out / "crop_overlay.png").exists() and (out / "crop.npz").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--full-frame"], "--full-frame needs --side"),
        (["--boxes", "b.json", "--side", "left"], "--side only applies"),
        (["--boxes", "b.json", "--cx", "3"], "need --fx"),
        (["--boxes", "b.json", "--fx", "nan"], "finite"),
        (["--boxes", "b.json", "--fx", "-5"], "positive"),
    ],
)
def test_user_errors(tmp_path, scene, test_assets, capsys, extra, message):
    image_path, boxes = scene
    extra = [str(boxes) if e == "b.json" else e for e in extra]
    code = main(["hands", str(image_path), "--checkpoint", str(test_assets.checkpoint),
                 "--out", str(tmp_path / "out"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_unreadable_inputs_are_user_errors(tmp_path, scene, test_assets, capsys):
    image_path, boxes = scene
    base = ["--checkpoint", str(test_assets.checkpoint), "--boxes", str(boxes),
            "--out", str(tmp_path / "out")]
    assert main(["hands", str(tmp_path / "missing.png"), *base]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"junk")
    assert main(["hands", str(broken), *base]) == 2
    assert "cannot read image" in capsys.readouterr().err
    bad_boxes = tmp_path / "bad.json"
    bad_boxes.write_text("{")
    assert main(["hands", str(image_path), "--checkpoint", str(test_assets.checkpoint),
                 "--boxes", str(bad_boxes), "--out", str(tmp_path / "out")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["hands", str(image_path), "--checkpoint", str(tmp_path / "none.ckpt"),
                 "--boxes", str(boxes), "--out", str(tmp_path / "out")]) == 2
    assert "cannot load the model" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unusable_device_is_named_before_loading(tmp_path, scene, test_assets, capsys):
    image_path, boxes = scene
    code = main(["hands", str(image_path), "--checkpoint", str(test_assets.checkpoint),
                 "--boxes", str(boxes), "--out", str(tmp_path / "out"), "--device", "cuda"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--device cuda: CUDA is not available" in err and "--device cpu" in err
    assert main(["hands", str(image_path), "--checkpoint", str(test_assets.checkpoint),
                 "--boxes", str(boxes), "--out", str(tmp_path / "out"),
                 "--device", "nonsense"]) == 2
    assert "--device nonsense" in capsys.readouterr().err


def test_help_lists_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["hands", "--help"])
    text = capsys.readouterr().out
    assert "--boxes" in text and "keypoints_2d" in text and "--full-frame" in text
