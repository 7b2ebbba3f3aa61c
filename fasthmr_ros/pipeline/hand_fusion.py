"""Hand boxes from keypoints and from arm landmarks, and fusion of the sources of hands.

Pure numpy geometry shared by the MediaPipe detector and the tracker: boxes from hand keypoints
or arm landmarks, duplicate suppression, palm/arm fusion, and the rule that admits hands found
by an extra search pass. Boxes follow HaMeR's convention: tight around the hand (min/max of
the hand keypoints); the crop stage enlarges them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from fasthmr_ros.pipeline.results import HandBox

SOURCE_PALM = "palm"
SOURCE_POSE = "pose"
SOURCE_FUSED = "fused"


def boxes_to_array(boxes: Sequence[HandBox]) -> np.ndarray:
    """Stack boxes into an ``(N, 4)`` float64 array of ``x1, y1, x2, y2``."""
    if not boxes:
        return np.zeros((0, 4), dtype=np.float64)
    return np.stack([box.xyxy for box in boxes])


def _pairwise_areas(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Intersection areas (N, M) and the areas of ``a`` (N,) and ``b`` (M,)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area_a, area_b


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    inter, area_a, area_b = _pairwise_areas(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def containment_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area, for every pair of ``a`` (N, 4), ``b`` (M, 4).

    1 when one box lies inside the other: the right overlap measure between an exact box and a
    rough estimate of a different size.
    """
    inter, area_a, area_b = _pairwise_areas(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def hand_box_from_keypoints(
    keypoints: np.ndarray,
    side: str,
    score: float,
    source: str = SOURCE_PALM,
    world_landmarks: np.ndarray | None = None,
) -> HandBox | None:
    """Tight box (min/max) around 21 hand keypoints in pixels; ``None`` if they span no area.

    ``world_landmarks`` (the detector's 21 metric landmarks, metres) are kept on the box.
    """
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (21, 2):
        raise ValueError(f"hand keypoints must have shape (21, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    if np.any(high - low <= 0.0):
        return None
    return HandBox(
        x1=float(low[0]), y1=float(low[1]), x2=float(high[0]), y2=float(high[1]),
        side=side, score=float(score), keypoints_2d=points.astype(np.float32), source=source,
        world_landmarks=None if world_landmarks is None else np.asarray(
            world_landmarks, dtype=np.float32),
    )


def hand_box_from_arm(
    wrist: np.ndarray,
    index: np.ndarray,
    pinky: np.ndarray,
    thumb: np.ndarray,
    side: str,
    score: float,
    image_size: tuple[int, int],
    scale: float = 1.0,
    min_inside_fraction: float = 0.5,
) -> HandBox | None:
    """Estimate a tight hand box from the hand landmarks of a body pose (pixels).

    Body pose models place the wrist and the index, pinky and thumb knuckles. The knuckles lie
    about halfway from the wrist to the fingertips, so the hand is a square centred on the
    knuckles' midpoint with a half side of ``scale`` times the wrist-knuckle distance, grown to
    contain the wrist and thumb. The box is clipped to the image (``image_size`` is
    ``(height, width)``); ``None`` when the landmarks span no length or less than
    ``min_inside_fraction`` of the box lies in the image.
    """
    points = [np.asarray(p, dtype=np.float64).reshape(2) for p in (wrist, index, pinky, thumb)]
    if not all(np.all(np.isfinite(p)) for p in points):
        return None
    wrist_xy, index_xy, pinky_xy, thumb_xy = points
    knuckles = 0.5 * (index_xy + pinky_xy)
    reach = float(np.linalg.norm(knuckles - wrist_xy))
    if reach <= 1e-6:
        return None
    half = scale * reach
    low = np.minimum.reduce([knuckles - half, wrist_xy, thumb_xy])
    high = np.maximum.reduce([knuckles + half, wrist_xy, thumb_xy])
    height, width = image_size
    clipped_low = np.maximum(low, 0.0)
    clipped_high = np.minimum(high, [float(width), float(height)])
    if np.any(clipped_high - clipped_low <= 1.0):
        return None
    inside = float(np.prod(clipped_high - clipped_low)) / float(np.prod(high - low))
    if inside < min_inside_fraction:
        return None
    return HandBox(
        x1=float(clipped_low[0]), y1=float(clipped_low[1]),
        x2=float(clipped_high[0]), y2=float(clipped_high[1]),
        side=side, score=float(score), keypoints_2d=None, source=SOURCE_POSE,
    )


def suppress_duplicates(boxes: Sequence[HandBox], iou_threshold: float) -> list[HandBox]:
    """Greedy non-maximum suppression: keep the highest-scoring box of every overlapping group."""
    order = sorted(range(len(boxes)), key=lambda i: -boxes[i].score)
    kept: list[HandBox] = []
    for i in order:
        if kept and iou_matrix(boxes[i].xyxy, boxes_to_array(kept)).max() > iou_threshold:
            continue
        kept.append(boxes[i])
    return kept


def add_unseen_hands(
    found: Sequence[HandBox],
    candidates: Sequence[HandBox],
    min_score: float,
    max_overlap: float,
) -> list[HandBox]:
    """Add the hands of an extra search pass that are confident and new, to ``found``.

    ``candidates`` are taken best score first. One is admitted when its score (for hand
    landmark boxes, the hand classifier's confidence) reaches ``min_score`` and no box kept so
    far overlaps it by ``max_overlap`` or more of the smaller box's area
    (:func:`containment_matrix`). Keep ``max_overlap`` low: the overlap test drops the same
    hand found again through another window, a part of a hand read as a small hand, and a hand
    interlaced with one already found, whose fingers the landmark model mixes with the other
    hand's (its side is then a guess). ``found`` is returned first and unchanged.
    """
    kept = list(found)
    for candidate in sorted(candidates, key=lambda box: -box.score):
        if candidate.score < min_score:
            continue
        if kept and containment_matrix(candidate.xyxy, boxes_to_array(kept)).max() >= max_overlap:
            continue
        kept.append(candidate)
    return kept


def match_boxes(
    a: Sequence[HandBox], b: Sequence[HandBox], min_overlap: float
) -> list[tuple[int, int]]:
    """Match ``a`` to ``b`` one-to-one, maximising the total :func:`containment_matrix` overlap.

    Uses the Hungarian method; returns index pairs ``(i, j)``, dropping pairs whose overlap is
    below ``min_overlap``.
    """
    if not a or not b:
        return []
    overlap = containment_matrix(boxes_to_array(a), boxes_to_array(b))
    rows, cols = linear_sum_assignment(-overlap)
    pairs = zip(rows.tolist(), cols.tolist(), strict=True)
    return [(i, j) for i, j in pairs if overlap[i, j] >= min_overlap]


def fuse_hand_boxes(
    palm_boxes: Sequence[HandBox],
    pose_boxes: Sequence[HandBox],
    min_overlap: float = 0.5,
    palm_side_min_score: float = 0.9,
) -> list[HandBox]:
    """Merge hand-landmark boxes with pose-derived boxes of the same hands.

    A palm box and a pose box whose intersection covers at least ``min_overlap`` of the smaller
    one are one hand (pose boxes are rough estimates, often smaller or larger than the hand):
    it keeps the palm box and keypoints (more precise) and is marked ``"fused"``.

    When the two disagree on the side, the hand classifier's side is kept if its score reaches
    ``palm_side_min_score``, otherwise the side of the arm the pose model hangs the hand on.
    The classifier looks at the hand itself, while the single-person pose model can hang
    another person's hand on its arm (seen on a real two-person photo); a low classifier score
    marks a hand it cannot read, and then the arm decides. Unmatched boxes of either source are
    kept. The result is sorted by score, best first.
    """
    fused: list[HandBox] = []
    matches = match_boxes(palm_boxes, pose_boxes, min_overlap)
    matched_palm = {i for i, _ in matches}
    matched_pose = {j for _, j in matches}
    for i, j in matches:
        palm, pose = palm_boxes[i], pose_boxes[j]
        side = palm.side
        if palm.side != pose.side and palm.score < palm_side_min_score:
            side = pose.side
        fused.append(
            dataclasses.replace(
                palm, side=side, score=max(palm.score, pose.score), source=SOURCE_FUSED
            )
        )
    fused.extend(box for i, box in enumerate(palm_boxes) if i not in matched_palm)
    fused.extend(box for j, box in enumerate(pose_boxes) if j not in matched_pose)
    return sorted(fused, key=lambda box: -box.score)
