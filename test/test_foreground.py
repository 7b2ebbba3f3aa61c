"""Foreground masks for mask-guided token merging: crop warp, token rule, pipeline flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fasthmr_ros.models.merge_plan import PLAN_FORMAT, apply_merge_plan
from fasthmr_ros.pipeline.crop import crop_hand
from fasthmr_ros.pipeline.foreground import (
    MIN_COVERAGE,
    crop_mask_to_tokens,
    hand_crop_mask,
    hand_foreground_tokens,
    image_mask_to_crop,
    mask_foreground_tokens,
)
from fasthmr_ros.pipeline.hand_pipeline import HandMeshPipeline
from fasthmr_ros.pipeline.results import LEFT, RIGHT, HandBox


def _patch_pixels(i: int, j: int) -> tuple[slice, slice]:
    """Crop pixels token (i, j) sees: window rows/columns 16k-2 .. 16k+13, window at column 32."""
    return slice(max(0, 16 * i - 2), 16 * i + 14), slice(32 + max(0, 16 * j - 2), 32 + 16 * j + 14)


def test_token_rule_follows_the_patch_embedding() -> None:
    mask = np.zeros((256, 256), bool)
    rows, cols = _patch_pixels(5, 7)
    mask[rows, cols] = True
    flags = crop_mask_to_tokens(mask).reshape(16, 12)
    assert flags.sum() == 1 and flags[5, 7]
    # Just under / at the coverage threshold of one patch (256 pixels).
    needed = int(np.ceil(MIN_COVERAGE * 256))
    for count, expected in ((needed - 1, False), (needed, True)):
        mask = np.zeros((256, 256), bool)
        rows, cols = _patch_pixels(3, 4)
        block = np.zeros((16, 16), bool).reshape(-1)
        block[:count] = True
        mask[rows, cols] = block.reshape(16, 16)
        assert crop_mask_to_tokens(mask).reshape(16, 12)[3, 4] == expected
    # The margins outside the 256x192 window are never seen.
    mask = np.zeros((256, 256), bool)
    mask[:, :32] = mask[:, 224:] = True
    assert not crop_mask_to_tokens(mask).any()


@pytest.mark.parametrize("side", [RIGHT, LEFT])
def test_image_mask_is_cropped_like_the_image(side: str) -> None:
    frame_mask = np.zeros((480, 640), np.float32)
    frame_mask[200:260, 300:330] = 1.0
    image = np.repeat((frame_mask * 255).astype(np.uint8)[..., None], 3, axis=2)
    box = HandBox(250.0, 170.0, 378.0, 298.0, side=side)  # region 256 px: no anti-alias blur
    crop = crop_hand(image, box)
    red = crop.image[0] * 0.229 * 255 + 0.485 * 255  # undo ImageNet normalisation
    warped = image_mask_to_crop(frame_mask, crop.transform) * 255
    assert np.abs(red - warped).max() < 1.0  # grey levels (OpenCV rounds uint8 warps)
    tokens = mask_foreground_tokens(frame_mask, [crop.transform])
    assert tokens.shape == (1, 192) and 0 < tokens.sum() < 20


def test_hand_mask_is_the_dilated_landmark_hull_and_mirrors_for_left_hands() -> None:
    points = np.array([[300, 220], [340, 200], [360, 260], [310, 280]], np.float64)
    right = HandBox(290, 190, 370, 290, side=RIGHT, keypoints_2d=points)
    left = HandBox(290, 190, 370, 290, side=LEFT, keypoints_2d=points)
    image = np.zeros((480, 640, 3), np.uint8)
    t_right = crop_hand(image, right).transform
    t_left = crop_hand(image, left).transform
    mask = hand_crop_mask(right, t_right, dilation_px=0)
    for point in t_right.image_to_crop(points.mean(axis=0)[None]):
        assert mask[int(point[1]), int(point[0])]
    assert hand_crop_mask(right, t_right).sum() > mask.sum()  # dilation grows it
    assert not mask[:20].any() and not mask[-20:].any()
    flags_r = hand_foreground_tokens([right], [t_right])[0].reshape(16, 12)
    flags_l = hand_foreground_tokens([left], [t_left])[0].reshape(16, 12)
    assert 10 < flags_r.sum() < 150
    # The left crop is the mirrored image; its tokens mirror across the window (up to the
    # patch embedding's 2-pixel shift).
    assert abs(int(flags_l.sum()) - int(flags_r.sum())) <= 16


def test_pipeline_passes_landmark_foreground_to_a_masked_model(hand_regressor) -> None:
    import copy

    model = copy.deepcopy(hand_regressor)
    apply_merge_plan(model, {"format": PLAN_FORMAT,
                             "tokens": {"keep": 90, "per_layer": 60, "layers": 2}})
    seen = []

    def regressor(crops, foreground=None):
        seen.append(foreground)
        return model(crops, foreground)

    regressor.faces = model.faces
    regressor.uses_foreground = model.uses_foreground
    pipeline = HandMeshPipeline(regressor)
    assert pipeline.uses_foreground
    image = np.full((480, 640, 3), 90, np.uint8)
    points = np.array([[300, 220], [340, 200], [360, 260], [310, 280]], np.float64)
    results = pipeline.process(image, [HandBox(290, 190, 370, 290, keypoints_2d=points)])
    assert len(results) == 1 and np.isfinite(results[0].vertices).all()
    assert seen[0].shape == (1, 192) and 0 < float(seen[0].sum()) < 192
    # The unmerged model's pipeline sends crops only.
    assert not HandMeshPipeline(hand_regressor).uses_foreground


def test_masked_model_rejects_foreground_of_the_wrong_size(hand_regressor) -> None:
    import copy

    model = copy.deepcopy(hand_regressor)
    apply_merge_plan(model, {"format": PLAN_FORMAT,
                             "tokens": {"keep": 90, "per_layer": 60, "layers": 2}})
    with pytest.raises(ValueError, match="one flag per token"):
        model(torch.zeros(1, 3, 256, 256), torch.zeros(1, 100))


def test_pose_segmentation_gives_the_person_mask_for_bodies() -> None:
    pytest.importorskip("mediapipe")
    cv2 = pytest.importorskip("cv2")
    from test_detect_real_images import PHOTO_DIR

    from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

    photo = PHOTO_DIR / "test1.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} is absent (real photographs are not part of the repository)")
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    with pytest.raises(ValueError, match="needs the pose model"):
        MediaPipeHandDetector(use_pose=False, person_segmentation=True)
    with MediaPipeHandDetector(person_segmentation=True) as detector:
        detector.detect(rgb)
        mask = detector.person_mask
    assert mask is not None and mask.shape == rgb.shape[:2]
    assert 0.02 < float((mask >= 0.5).mean()) < 0.9  # a person, not the whole frame
    height, width = rgb.shape[:2]
    side = min(height, width) / 2
    box = HandBox(width / 2 - side / 2, height / 2 - side / 2, width / 2 + side / 2,
                  height / 2 + side / 2)
    transform = crop_hand(rgb, box).transform
    flags = mask_foreground_tokens(mask, [transform])
    assert flags.shape == (1, 192) and flags.sum() > 0
