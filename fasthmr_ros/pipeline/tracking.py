"""Stable identities across frames, for hands and for people alike.

Each frame's detections are assigned to existing tracks with the Hungarian method on a cost
made of box overlap, keypoint (or centre) distance and side agreement, against where each track
is predicted to be (constant velocity). Tracks are born tentative and confirmed after
``min_hits`` consecutive detections; a confirmed track survives ``max_misses`` frames without a
detection before it dies (hysteresis on both ends). The side of a track changes only when the
detector insists on the other side for several frames, so one misread frame does not flip the
mesh of a hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from fasthmr_ros.pipeline.hand_fusion import iou_matrix
from fasthmr_ros.pipeline.results import LEFT, RIGHT, HandBox, PersonBox

#: What the tracker follows: hand boxes (with a side) or person boxes (without).
Detection = HandBox | PersonBox

#: Cost given to pairs the gate rejects; larger than any admissible cost.
_FORBIDDEN = 1e6


@dataclass
class TrackedHand:
    """A detection of the current frame with the identity the tracker gave it.

    ``box`` is the detection with the track's stable side (which may differ from the side the
    detector gave in this one frame; people have none). ``detection_index`` is the detection's
    position in the list passed to :meth:`Tracker.update`.
    """

    track_id: int
    box: Detection
    confirmed: bool
    detection_index: int


@dataclass
class HandTrack:
    """State of one track (read-only for users; :class:`Tracker` updates it)."""

    track_id: int
    box: Detection
    side: str | None
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    side_evidence: float = 0.0

    def predicted_shift(self) -> np.ndarray:
        """Pixel shift of the box expected at the next frame (constant velocity)."""
        return self.velocity * float(self.misses + 1)


def _centre(xyxy: np.ndarray) -> np.ndarray:
    return 0.5 * (xyxy[..., :2] + xyxy[..., 2:])


def _size(xyxy: np.ndarray) -> np.ndarray:
    return np.sqrt((xyxy[..., 2] - xyxy[..., 0]) * (xyxy[..., 3] - xyxy[..., 1]))


def _side(detection: Detection) -> str | None:
    return getattr(detection, "side", None)


class Tracker:
    """Assign stable ids to per-frame hand or person detections.

    Args:
        min_hits: consecutive detections that confirm a new track (1 confirms at once).
        max_misses: frames a confirmed track survives without a detection.
        min_iou: a detection may join a track if their boxes overlap by this much...
        max_centre_distance: ...or if their centres are closer than this many box sizes
            (square root of the box area), measured from the track's predicted position.
        keypoint_weight: weight of the mean keypoint distance (in box sizes) in the cost;
            when either side lacks keypoints the centre distance is used instead.
        side_mismatch_cost: cost added when the detection's side differs from the track's.
        side_switch_evidence: accumulated evidence for the other side needed to switch sides.
        side_evidence_decay: per-frame decay of the side evidence (0-1).
        velocity_smoothing: weight of the newest displacement in the velocity estimate (0-1).

    """

    def __init__(
        self,
        *,
        min_hits: int = 3,
        max_misses: int = 5,
        min_iou: float = 0.1,
        max_centre_distance: float = 1.0,
        keypoint_weight: float = 1.0,
        side_mismatch_cost: float = 0.5,
        side_switch_evidence: float = 1.5,
        side_evidence_decay: float = 0.8,
        velocity_smoothing: float = 0.5,
    ) -> None:
        if min_hits < 1:
            raise ValueError(f"min_hits must be at least 1, got {min_hits}")
        if max_misses < 0:
            raise ValueError(f"max_misses must be 0 or more, got {max_misses}")
        for name, value in (
            ("side_evidence_decay", side_evidence_decay),
            ("velocity_smoothing", velocity_smoothing),
            ("min_iou", min_iou),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.min_hits = int(min_hits)
        self.max_misses = int(max_misses)
        self.min_iou = float(min_iou)
        self.max_centre_distance = float(max_centre_distance)
        self.keypoint_weight = float(keypoint_weight)
        self.side_mismatch_cost = float(side_mismatch_cost)
        self.side_switch_evidence = float(side_switch_evidence)
        self.side_evidence_decay = float(side_evidence_decay)
        self.velocity_smoothing = float(velocity_smoothing)
        self._tracks: list[HandTrack] = []
        self._next_id = 0

    @property
    def tracks(self) -> list[HandTrack]:
        """Live tracks (tentative and confirmed, including those coasting through misses)."""
        return list(self._tracks)

    def reset(self) -> None:
        """Forget every track (e.g. after a camera switch); ids keep increasing."""
        self._tracks = []

    def update(self, detections: Sequence[Detection]) -> list[TrackedHand]:
        """Advance one frame; return one :class:`TrackedHand` per detection, in input order.

        Tentative tracks are included with ``confirmed=False``; publish only confirmed ones
        when flicker matters more than the first ``min_hits - 1`` frames of a new hand.
        """
        detections = list(detections)
        pairs = self._assign(detections)
        matched_tracks = {t for t, _ in pairs}
        matched_detections = {d for _, d in pairs}
        out: dict[int, TrackedHand] = {}
        for t, d in pairs:
            track = self._tracks[t]
            self._absorb(track, detections[d])
            out[d] = self._report(track, detections[d], d)
        survivors: list[HandTrack] = []
        for t, track in enumerate(self._tracks):
            if t not in matched_tracks:
                track.misses += 1
                track.hits = 0
                if not track.confirmed or track.misses > self.max_misses:
                    continue
            survivors.append(track)
        for d, detection in enumerate(detections):
            if d in matched_detections:
                continue
            track = self._birth(detection)
            survivors.append(track)
            out[d] = self._report(track, detection, d)
        self._tracks = survivors
        return [out[d] for d in range(len(detections))]

    # -- internals ----------------------------------------------------------------------------

    def _assign(self, detections: list[Detection]) -> list[tuple[int, int]]:
        if not self._tracks or not detections:
            return []
        cost = self._cost(detections)
        rows, cols = linear_sum_assignment(cost)
        pairs = zip(rows.tolist(), cols.tolist(), strict=True)
        return [(t, d) for t, d in pairs if cost[t, d] < _FORBIDDEN]

    def _cost(self, detections: list[Detection]) -> np.ndarray:
        predicted = np.stack(
            [t.box.xyxy + np.tile(t.predicted_shift(), 2) for t in self._tracks]
        )
        boxes = np.stack([d.xyxy for d in detections])
        overlap = iou_matrix(predicted, boxes)
        size = 0.5 * (_size(predicted)[:, None] + _size(boxes)[None, :])
        size = np.maximum(size, 1e-6)
        centre_distance = (
            np.linalg.norm(_centre(predicted)[:, None, :] - _centre(boxes)[None, :, :], axis=2)
            / size
        )
        cost = np.empty_like(overlap)
        for t, track in enumerate(self._tracks):
            for d, detection in enumerate(detections):
                distance = centre_distance[t, d]
                if (track.box.keypoints_2d is not None and detection.keypoints_2d is not None
                        and track.box.keypoints_2d.shape == detection.keypoints_2d.shape):
                    moved = track.box.keypoints_2d + track.predicted_shift()
                    gaps = np.linalg.norm(moved - detection.keypoints_2d, axis=1)
                    if np.isfinite(gaps).any():
                        distance = float(np.nanmean(gaps)) / size[t, d]
                cost[t, d] = 1.0 - overlap[t, d] + self.keypoint_weight * distance
                if _side(detection) != track.side:
                    cost[t, d] += self.side_mismatch_cost
        gate = (overlap >= self.min_iou) | (centre_distance <= self.max_centre_distance)
        return np.where(gate, cost, _FORBIDDEN)

    def _birth(self, detection: Detection) -> HandTrack:
        track = HandTrack(track_id=self._next_id, box=detection, side=_side(detection))
        track.side_evidence = self._vote(detection)
        track.confirmed = self.min_hits <= 1
        self._next_id += 1
        return track

    def _absorb(self, track: HandTrack, detection: Detection) -> None:
        frames = track.misses + 1
        shift = (_centre(detection.xyxy) - _centre(track.box.xyxy)) / frames
        a = self.velocity_smoothing
        track.velocity = (1.0 - a) * track.velocity + a * shift
        track.box = detection
        track.hits += 1
        track.misses = 0
        if track.hits >= self.min_hits:
            track.confirmed = True
        track.side_evidence = (
            self.side_evidence_decay * track.side_evidence + self._vote(detection)
        )
        if track.side == RIGHT and track.side_evidence <= -self.side_switch_evidence:
            track.side = LEFT
        elif track.side == LEFT and track.side_evidence >= self.side_switch_evidence:
            track.side = RIGHT

    @staticmethod
    def _vote(detection: Detection) -> float:
        side = _side(detection)
        if side is None:
            return 0.0
        weight = min(max(float(detection.score), 0.0), 1.0)
        return weight if side == RIGHT else -weight

    @staticmethod
    def _report(track: HandTrack, detection: Detection, index: int) -> TrackedHand:
        box = detection
        if track.side is not None and _side(detection) != track.side:
            box = dataclasses.replace(detection, side=track.side)
        return TrackedHand(
            track_id=track.track_id, box=box, confirmed=track.confirmed, detection_index=index
        )


#: The hand path's name for :class:`Tracker` (hands were tracked first).
HandTracker = Tracker
