"""Hands or bodies over time: stable ids from the tracker, then One-Euro smoothing.

One object per camera stream and kind. Before reconstruction it gives each detected box a
track id (and, for hands, the track's stable side, so a one-frame handedness flip does not
mirror the mesh); after reconstruction it stamps the results with those ids and smooths them.
``fasthmr hands``, ``fasthmr bodies`` and the ROS node run frames through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fasthmr_ros.pipeline.camera import project_points
from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.pipeline.smoothing import (
    DEFAULT_ARTICULATION,
    DEFAULT_TRANSLATION,
    MeshResult,
    MeshSmoother,
    OneEuroParameters,
)
from fasthmr_ros.pipeline.tracking import Detection, Tracker


class MeshStream:
    """Tracking and smoothing state of one camera stream (hands or bodies).

    Args:
        tracking: give hands (people) stable ids across frames (off: every one is new each
            frame, ``track_id`` stays ``None`` and nothing is smoothed).
        smoothing: One-Euro filter joints, vertices and translation of tracked results. The
            filter is causal and adds no latency.
        tracker: the tracker to use (default: :class:`Tracker` with its defaults).
        translation, articulation: One-Euro parameters for ``cam_t`` and for the
            root-relative joints and vertices.

    """

    def __init__(
        self,
        *,
        tracking: bool = True,
        smoothing: bool = True,
        tracker: Tracker | None = None,
        translation: OneEuroParameters = DEFAULT_TRANSLATION,
        articulation: OneEuroParameters = DEFAULT_ARTICULATION,
    ) -> None:
        self.tracking = tracking
        self.smoothing = smoothing
        self.tracker = tracker or Tracker()
        self.smoother = MeshSmoother(translation=translation, articulation=articulation)
        self.dropped = 0

    def assign(self, boxes: Sequence[Detection]) -> tuple[list[Detection], list[int | None]]:
        """Return the boxes (with their tracks' stable sides) and one id per box."""
        if not self.tracking:
            return list(boxes), [None] * len(boxes)
        tracked = self.tracker.update(boxes)
        return [t.box for t in tracked], [t.track_id for t in tracked]

    def finish(
        self,
        results: Sequence[MeshResult],
        track_ids: Sequence[int | None],
        stamp: float,
        intrinsics: CameraIntrinsics | None = None,
    ) -> list[MeshResult]:
        """Stamp ``results`` with ``track_ids`` and smooth them at time ``stamp`` (seconds).

        Hands with non-finite joints or vertices (a broken model or precision) are dropped
        before smoothing, so they never reach a filter; :attr:`dropped` counts them for the
        caller to report. With ``intrinsics`` the 2D keypoints of smoothed hands are projected
        again from the smoothed joints, so the two stay consistent.
        """
        kept = [
            (result, track_id)
            for result, track_id in zip(results, track_ids, strict=True)
            if np.isfinite(result.joints).all() and np.isfinite(result.vertices).all()
        ]
        self.dropped = len(results) - len(kept)
        for result, track_id in kept:
            result.track_id = track_id
        finished = [result for result, _ in kept]
        if not self.smoothing:
            return finished
        finished = self.smoother.smooth_all(finished, stamp)
        if intrinsics is not None:
            for result in finished:
                if result.track_id is not None:
                    result.keypoints_2d = project_points(result.joints, intrinsics)
        return finished

    def reset(self) -> None:
        """Forget all tracks and filters (a new, unrelated sequence starts)."""
        self.tracker.reset()
        for track_id in self.smoother.track_ids:
            self.smoother.forget(track_id)


#: The hand path's name for :class:`MeshStream`.
HandStream = MeshStream
