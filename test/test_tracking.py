"""Hand tracker: stable ids, crossing hands, birth/death hysteresis, side consistency."""

from __future__ import annotations

import numpy as np
import pytest

from fasthmr_ros.pipeline.results import LEFT, RIGHT, HandBox
from fasthmr_ros.pipeline.tracking import HandTracker


def hand_template(side: str) -> np.ndarray:
    """21 keypoints of an open hand (OpenPose order) in a unit box, fingers up."""
    points = [(0.5, 1.0)]
    for finger in range(5):
        base_x = 0.15 + 0.175 * finger
        length = 0.35 if finger == 0 else 0.6
        for joint in range(1, 5):
            y = 0.75 - length * joint / 4
            x = base_x - (0.1 * joint if finger == 0 else 0.0)
            points.append((x, y))
    kp = np.array(points)
    if side == LEFT:
        kp[:, 0] = 1.0 - kp[:, 0]
    return kp


def hand(cx: float, cy: float, side: str = RIGHT, size: float = 80.0, score: float = 0.95,
         keypoints: bool = True, rng: np.random.Generator | None = None) -> HandBox:
    kp = hand_template(side) * size + np.array([cx - size / 2, cy - size / 2])
    if rng is not None:
        kp = kp + rng.normal(0.0, 1.5, size=kp.shape)
    x1, y1 = kp.min(axis=0)
    x2, y2 = kp.max(axis=0)
    return HandBox(x1, y1, x2, y2, side=side, score=score,
                   keypoints_2d=kp.astype(np.float32) if keypoints else None, source="palm")


def test_output_is_aligned_with_the_input_order():
    tracker = HandTracker(min_hits=1)
    out = tracker.update([hand(100, 100), hand(400, 100, LEFT)])
    assert [t.detection_index for t in out] == [0, 1]
    assert out[0].track_id != out[1].track_id
    again = tracker.update([hand(402, 101, LEFT), hand(101, 99)])
    assert [t.track_id for t in again] == [out[1].track_id, out[0].track_id]
    assert tracker.update([]) == []


@pytest.mark.parametrize("speed", [5.0, 30.0, 60.0])
def test_id_is_stable_under_motion(speed):
    rng = np.random.default_rng(3)
    tracker = HandTracker()
    ids = set()
    for frame in range(40):
        (tracked,) = tracker.update([hand(50 + speed * frame, 200 + 20 * np.sin(frame / 5),
                                          rng=rng)])
        ids.add(tracked.track_id)
    assert len(ids) == 1
    assert tracked.confirmed


def test_boxes_without_keypoints_are_tracked_by_centre_distance():
    tracker = HandTracker(min_hits=2)
    ids = {tracker.update([hand(100 + 15 * f, 100, keypoints=False)])[0].track_id
           for f in range(20)}
    assert len(ids) == 1


@pytest.mark.parametrize(("side_a", "side_b"), [(LEFT, RIGHT), (RIGHT, RIGHT)])
@pytest.mark.parametrize("vertical_offset", [0.0, 15.0])
def test_no_swap_when_two_hands_cross_slowly(side_a, side_b, vertical_offset):
    rng = np.random.default_rng(7)
    tracker = HandTracker()
    track_of: dict[str, set[int]] = {"a": set(), "b": set()}
    for frame in range(60):
        xa, xb = 100 + 8 * frame, 580 - 8 * frame  # they meet at frame 30
        dets = [("a", hand(xa, 240, side_a, rng=rng)),
                ("b", hand(xb, 240 + vertical_offset, side_b, rng=rng))]
        order = rng.permutation(2)  # detectors give no stable order
        dets = [dets[i] for i in order]
        out = tracker.update([d for _, d in dets])
        for (name, _), tracked in zip(dets, out, strict=True):
            track_of[name].add(tracked.track_id)
    assert len(track_of["a"]) == 1 and len(track_of["b"]) == 1
    assert track_of["a"] != track_of["b"]


def test_birth_needs_consecutive_hits_and_flicker_never_confirms():
    tracker = HandTracker(min_hits=3, max_misses=5)
    first = tracker.update([hand(100, 100)])[0]
    assert not first.confirmed
    assert tracker.update([]) == []  # a tentative track dies at its first miss
    assert tracker.tracks == []
    states = [tracker.update([hand(100, 100)])[0] for _ in range(3)]
    assert [s.confirmed for s in states] == [False, False, True]
    assert states[0].track_id != first.track_id
    assert len({s.track_id for s in states}) == 1


@pytest.mark.parametrize(("gap", "same_id"), [(1, True), (5, True), (6, False)])
def test_death_after_max_misses(gap, same_id):
    tracker = HandTracker(min_hits=2, max_misses=5)
    for frame in range(5):
        before = tracker.update([hand(100 + 10 * frame, 100)])[0]
    for _ in range(gap):
        tracker.update([])
    # The hand kept moving while unseen: it reappears where the velocity predicts.
    after = tracker.update([hand(100 + 10 * (5 + gap), 100)])[0]
    assert (after.track_id == before.track_id) is same_id
    assert after.confirmed is same_id


def test_a_far_away_detection_does_not_steal_a_track():
    tracker = HandTracker(min_hits=1)
    a = tracker.update([hand(100, 100)])[0]
    b = tracker.update([hand(500, 400)])[0]
    assert b.track_id != a.track_id


def test_side_is_stable_against_single_frame_flips_and_follows_persistent_change():
    tracker = HandTracker(min_hits=1)
    sides = []
    for frame in range(30):
        detected = LEFT if frame in (10, 15, 16) or frame >= 22 else RIGHT
        sides.append(tracker.update([hand(100 + frame, 100, detected)])[0].box.side)
    assert sides[:22] == [RIGHT] * 22
    switched = sides.index(LEFT)
    assert 22 < switched <= 27
    assert sides[switched:] == [LEFT] * (30 - switched)


def test_reported_box_is_the_detection_with_the_track_side():
    tracker = HandTracker(min_hits=1)
    tracker.update([hand(100, 100, RIGHT)])
    flipped = hand(101, 100, LEFT)
    (out,) = tracker.update([flipped])
    assert out.box.side == RIGHT and flipped.side == LEFT
    np.testing.assert_array_equal(out.box.xyxy, flipped.xyxy)
    np.testing.assert_array_equal(out.box.keypoints_2d, flipped.keypoints_2d)


def test_reset_forgets_tracks_but_never_reuses_ids():
    tracker = HandTracker(min_hits=1)
    first = tracker.update([hand(100, 100)])[0].track_id
    tracker.reset()
    assert tracker.tracks == []
    assert tracker.update([hand(100, 100)])[0].track_id != first


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_hits": 0}, "min_hits"), ({"max_misses": -1}, "max_misses"),
     ({"side_evidence_decay": 1.5}, "side_evidence_decay"), ({"min_iou": -0.1}, "min_iou")],
)
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HandTracker(**kwargs)
