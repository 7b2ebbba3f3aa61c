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
