"""The debug image: the input with hand boxes and 2D skeletons drawn on it."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fasthmr_ros.models.constants import HAND_SKELETON
from fasthmr_ros.pipeline.results import HandResult
from fasthmr_ros.ros.markers import SIDE_COLOURS


def draw_hands(
    rgb: np.ndarray, results: Sequence[HandResult], labels: Sequence[str]
) -> np.ndarray:
    """Return a copy of ``rgb`` with each hand's box, label and 2D skeleton drawn."""
    canvas = np.array(rgb, dtype=np.uint8, copy=True)
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for result, label in zip(results, labels, strict=True):
        colour = tuple(int(255 * c) for c in SIDE_COLOURS[result.side][:3])
        x1, y1, x2, y2 = (int(round(v)) for v in np.asarray(result.box, dtype=np.float64))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        cv2.putText(canvas, f"{label} {result.score:.2f}", (x1, max(0, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour, thickness)
        keypoints = np.asarray(result.keypoints_2d, dtype=np.float64)
        if not np.isfinite(keypoints).all():
            continue
        points = np.round(keypoints).astype(np.int32)
        for parent, child in HAND_SKELETON:
            cv2.line(canvas, tuple(points[parent]), tuple(points[child]), colour, thickness)
        for p in points:
            cv2.circle(canvas, tuple(p), thickness + 1, (255, 255, 255), -1)
    return canvas
