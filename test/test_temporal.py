"""HandStream: ids from the tracker reach the results, and tracked hands are smoothed."""

from __future__ import annotations

import numpy as np

from fasthmr_ros.pipeline.results import HandBox, HandResult
from fasthmr_ros.pipeline.temporal import HandStream


def _result(box: HandBox, offset: float) -> HandResult:
    joints = np.full((21, 3), offset, dtype=np.float32)
    return HandResult(
        side=box.side, score=box.score, box=box.xyxy, keypoints_2d=np.zeros((21, 2)),
        joints=joints, vertices=np.full((778, 3), offset, dtype=np.float32),
        global_orient=np.eye(3), hand_pose=np.tile(np.eye(3), (15, 1, 1)), betas=np.zeros(10),
        cam_t=np.array([0.0, 0.0, 0.5 + offset]), wrist_rotation=np.eye(3),
    )


def _frames(stream: HandStream, noise: np.ndarray) -> list[list[HandResult]]:
    out = []
    for i, n in enumerate(noise):
        boxes = [HandBox(100 + i, 100, 160 + i, 170, side="right"),
                 HandBox(400 - i, 120, 460 - i, 190, side="left")]
        boxes, ids = stream.assign(boxes)
        results = [_result(b, float(n)) for b in boxes]
        out.append(stream.finish(results, ids, stamp=i / 30.0))
    return out


def test_ids_are_stable_and_distinct() -> None:
    frames = _frames(HandStream(smoothing=False), np.zeros(10))
    ids = [[r.track_id for r in frame] for frame in frames]
    assert all(frame == ids[0] for frame in ids)
    assert ids[0][0] != ids[0][1] and None not in ids[0]


def test_smoothing_reduces_jitter_of_tracked_hands() -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.01, 60)
    raw = _frames(HandStream(smoothing=False), noise)
    smooth = _frames(HandStream(smoothing=True), noise)
    raw_z = np.array([f[0].cam_t[2] for f in raw])
    smooth_z = np.array([f[0].cam_t[2] for f in smooth])
    assert smooth_z[0] == raw_z[0]  # the first sample passes through: no added latency
    assert np.std(np.diff(smooth_z)) < 0.5 * np.std(np.diff(raw_z))


def test_without_tracking_nothing_is_smoothed() -> None:
    noise = np.random.default_rng(1).normal(0.0, 0.01, 10)
    frames = _frames(HandStream(tracking=False), noise)
    assert all(r.track_id is None for f in frames for r in f)
    np.testing.assert_allclose([f[0].cam_t[2] for f in frames], 0.5 + noise)


def test_reset_starts_new_tracks() -> None:
    stream = HandStream()
    first = _frames(stream, np.zeros(3))[-1][0].track_id
    stream.reset()
    second = _frames(stream, np.zeros(1))[0][0].track_id
    assert second != first


def test_non_finite_hands_are_dropped_before_smoothing() -> None:
    stream = HandStream()
    _frames(stream, np.zeros(2))
    boxes, ids = stream.assign([HandBox(102, 100, 162, 170, side="right"),
                                HandBox(398, 120, 458, 190, side="left")])
    broken = _result(boxes[0], 0.0)
    broken.joints[3, 1] = np.nan
    results = stream.finish([broken, _result(boxes[1], 0.0)], ids, stamp=2 / 30.0)
    assert stream.dropped == 1
    assert [r.track_id for r in results] == [ids[1]]
    # The broken hand never reached its filter: the next good frame still smooths normally.
    boxes, ids = stream.assign([HandBox(103, 100, 163, 170, side="right")])
    (again,) = stream.finish([_result(boxes[0], 0.0)], ids, stamp=3 / 30.0)
    assert np.isfinite(again.joints).all() and stream.dropped == 0


def test_smoothed_keypoints_are_the_smoothed_joints_projected() -> None:
    from fasthmr_ros.pipeline.camera import project_points
    from fasthmr_ros.pipeline.results import CameraIntrinsics

    camera = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)
    stream = HandStream()
    noise = np.random.default_rng(2).normal(0.0, 0.01, 5)
    for i, n in enumerate(noise):
        boxes, ids = stream.assign([HandBox(100, 100, 160, 170, side="right")])
        hand = _result(boxes[0], float(n))
        hand.joints = hand.joints + np.linspace(-0.05, 0.05, 63).reshape(21, 3) + [0, 0, 0.5]
        (out,) = stream.finish([hand], ids, stamp=i / 30.0, intrinsics=camera)
    np.testing.assert_allclose(out.keypoints_2d, project_points(out.joints, camera))
