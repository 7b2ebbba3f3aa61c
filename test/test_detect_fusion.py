"""Box geometry and palm/arm fusion (pure numpy, no MediaPipe needed)."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_ros.pipeline.hand_fusion import (
    add_unseen_hands,
    containment_matrix,
    fuse_hand_boxes,
    hand_box_from_arm,
    hand_box_from_keypoints,
    iou_matrix,
    match_boxes,
    suppress_duplicates,
)
from fasthmr_ros.pipeline.results import LEFT, RIGHT, HandBox


def box(x1, y1, x2, y2, side=RIGHT, score=0.9, source="palm"):
    return HandBox(x1, y1, x2, y2, side=side, score=score, source=source)


def test_iou_and_containment_of_known_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 4, 4]], dtype=float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    np.testing.assert_allclose(
        iou_matrix(a, b), [[50 / 150, 1.0, 0.0], [0.0, 16 / 100, 0.0]]
    )
    np.testing.assert_allclose(
        containment_matrix(a, b), [[0.5, 1.0, 0.0], [0.0, 1.0, 0.0]]
    )
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_keypoint_box_is_tight_and_keeps_the_keypoints():
    rng = np.random.default_rng(1)
    kp = rng.uniform([100, 50], [180, 160], size=(21, 2))
    hand = hand_box_from_keypoints(kp, LEFT, 0.7)
    assert hand is not None
    np.testing.assert_allclose(hand.xyxy, [*kp.min(0), *kp.max(0)])
    np.testing.assert_allclose(hand.keypoints_2d, kp, atol=1e-4)
    assert (hand.side, hand.source) == (LEFT, "palm")


def test_degenerate_keypoints_give_no_box():
    assert hand_box_from_keypoints(np.ones((21, 2)), RIGHT, 1.0) is None
    kp = np.ones((21, 2))
    kp[3] = np.nan
    assert hand_box_from_keypoints(kp, RIGHT, 1.0) is None
    with pytest.raises(ValueError, match=r"\(21, 2\)"):
        hand_box_from_keypoints(np.ones((20, 2)), RIGHT, 1.0)


def test_arm_box_is_centred_on_the_knuckles_and_contains_wrist_and_thumb():
    wrist, index, pinky, thumb = (
        np.array(p, float) for p in ([200, 300], [190, 220], [230, 230], [170, 250])
    )
    hand = hand_box_from_arm(wrist, index, pinky, thumb, LEFT, 0.8, image_size=(480, 640))
    assert hand is not None
    knuckles = (index + pinky) / 2
    reach = np.linalg.norm(knuckles - wrist)
    assert hand.x1 <= min(knuckles[0] - reach, thumb[0]) + 1e-9
    assert hand.y2 >= wrist[1] - 1e-9
    np.testing.assert_allclose(hand.y1, knuckles[1] - reach)
    assert (hand.side, hand.score, hand.source, hand.keypoints_2d) == (LEFT, 0.8, "pose", None)


def test_arm_box_outside_the_image_is_dropped_and_partial_one_clipped():
    args = dict(side=RIGHT, score=1.0, image_size=(100, 100))
    far = [np.array(p, float) for p in ([300, 300], [300, 260], [320, 260], [290, 280])]
    assert hand_box_from_arm(*far, **args) is None
    edge = [np.array(p, float) for p in ([95, 50], [95, 30], [99, 30], [92, 40])]
    clipped = hand_box_from_arm(*edge, **args)
    assert clipped is not None and clipped.x2 == 100.0
    same = [np.array([10.0, 10.0])] * 4
    assert hand_box_from_arm(*same, **args) is None


def test_duplicates_keep_the_best_score():
    kept = suppress_duplicates(
        [box(0, 0, 10, 10, score=0.6), box(1, 1, 11, 11, score=0.9), box(50, 50, 60, 60)], 0.5
    )
    assert [b.score for b in kept] == [0.9, 0.9]
    assert kept[0].x1 == 1 and kept[1].x1 == 50


def test_matching_is_one_to_one_and_maximises_overlap():
    a = [box(0, 0, 10, 10), box(8, 0, 18, 10)]
    b = [box(9, 0, 17, 10), box(1, 1, 9, 9), box(100, 100, 110, 110)]
    assert sorted(match_boxes(a, b, 0.5)) == [(0, 1), (1, 0)]
    assert match_boxes([], b, 0.5) == []


def test_fusion_merges_overlaps_and_keeps_both_sources_otherwise():
    palm = [box(100, 100, 160, 170, RIGHT, 0.95), box(300, 100, 350, 160, LEFT, 0.9)]
    pose = [box(110, 110, 150, 160, RIGHT, 0.8, "pose"), box(0, 300, 40, 340, LEFT, 0.7, "pose")]
    fused = fuse_hand_boxes(palm, pose)
    assert [(b.source, b.side) for b in fused] == [
        ("fused", RIGHT), ("palm", LEFT), ("pose", LEFT)
    ]
    np.testing.assert_allclose(fused[0].xyxy, palm[0].xyxy)


@pytest.mark.parametrize(("palm_score", "expected"), [(0.99, RIGHT), (0.6, LEFT)])
def test_side_conflict_trusts_a_confident_hand_classifier_else_the_arm(palm_score, expected):
    palm = [box(100, 100, 160, 170, RIGHT, palm_score)]
    pose = [box(105, 105, 165, 175, LEFT, 0.95, "pose")]
    (fused,) = fuse_hand_boxes(palm, pose, palm_side_min_score=0.9)
    assert fused.side == expected
    assert fused.score == pytest.approx(max(palm_score, 0.95))


def test_search_adds_only_confident_hands_that_overlap_no_known_hand():
    found = [box(100, 100, 200, 200, RIGHT, 0.6)]
    candidates = [
        box(102, 98, 198, 205, LEFT, 0.99),  # the same hand again, other side: dropped
        box(130, 120, 170, 160, RIGHT, 0.99),  # inside the known hand (a finger): dropped
        box(150, 130, 250, 230, LEFT, 0.98),  # interlaced, 35 % of it shared: dropped
        box(400, 100, 450, 160, LEFT, 0.85),  # new but not confident: dropped
        box(300, 300, 340, 350, LEFT, 0.95),  # new and confident: kept
        box(305, 305, 345, 352, RIGHT, 0.97),  # same new hand from another tile, better score
    ]
    kept = add_unseen_hands(found, candidates, min_score=0.9, max_overlap=0.25)
    assert kept[0] is found[0]
    assert [(b.x1, b.side) for b in kept[1:]] == [(305, RIGHT)]


def test_search_overlap_threshold_is_on_the_smaller_box():
    found = [box(0, 0, 100, 100)]
    edge = box(80, 0, 180, 100, score=0.95)  # 20 % of either box shared
    assert len(add_unseen_hands(found, [edge], 0.9, max_overlap=0.25)) == 2
    assert len(add_unseen_hands(found, [edge], 0.9, max_overlap=0.2)) == 1
    assert add_unseen_hands([], [], 0.9, 0.25) == []
    assert len(add_unseen_hands([], [edge], 0.9, 0.25)) == 1
