"""Foreground masks for mask-guided token merging, cropped like the image and cut into tokens.

A masked merge plan (:mod:`fasthmr_ros.models.merge_plan`) never merges foreground tokens. Their
flags come from a mask in crop pixels:

* **hands:** the convex hull of the detector's 21 landmarks, drawn in crop coordinates through
  the crop's own transform (:meth:`CropTransform.image_to_crop`, mirroring included) and dilated
  by :data:`HAND_DILATION_PX` crop pixels (fingertip landmarks sit inside the fingertips, and
  the hand's outline matters to the mesh). A box without landmarks (from the pose model) marks
  its tight box instead.
* **bodies:** a person segmentation of the frame (MediaPipe's pose segmentation, see
  :class:`~fasthmr_ros.pipeline.mediapipe_detector.MediaPipeHandDetector`'s
  ``person_segmentation``) warped into the crop with the crop's affine
  (:func:`image_mask_to_crop`), foreground where the warped mask is at least 0.5.

**Rule for a foreground token** (:func:`crop_mask_to_tokens`): token (row i, column j) of the
16x12 grid sees the pixels of its 16x16 patch in the 256x192 window the ViT reads (crop columns
32..223), shifted by the patch embedding's 2-pixel padding: window rows ``16 i - 2 .. 16 i + 13``
and columns ``16 j - 2 .. 16 j + 13``. The token is foreground when at least
:data:`MIN_COVERAGE` (1/8, i.e. 32 pixels) of that patch is foreground; padding counts as
background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from fasthmr_ros.models.constants import CROP_SIZE, CROP_WIDTH
from fasthmr_ros.pipeline.crop import CropTransform
from fasthmr_ros.pipeline.results import HandBox, PersonBox

#: Patch side of the ViT in pixels and the padding of its patch embedding.
PATCH_SIZE = 16
PATCH_PADDING = 2
#: Share of a token's patch that must be foreground for the token to be foreground.
MIN_COVERAGE = 1.0 / 8.0
#: Dilation of the landmark hull, in crop pixels (3/4 of a patch).
HAND_DILATION_PX = 12
#: Token grid of the 256x192 window.
TOKEN_GRID = (CROP_SIZE // PATCH_SIZE, CROP_WIDTH // PATCH_SIZE)


def crop_mask_to_tokens(mask: np.ndarray) -> np.ndarray:
    """Foreground flags ``(192,)`` bool (row-major 16x12) of a ``(256, 256)`` crop mask.

    See the module docstring for the rule; ``mask`` is bool or 0..1 float (>= 0.5 counts).
    """
    mask = np.asarray(mask)
    if mask.shape != (CROP_SIZE, CROP_SIZE):
        raise ValueError(f"crop mask must be {CROP_SIZE}x{CROP_SIZE}, got {mask.shape}")
    margin = (CROP_SIZE - CROP_WIDTH) // 2
    window = (mask[:, margin : CROP_SIZE - margin] >= 0.5).astype(np.float32)
    rows, cols = TOKEN_GRID
    # Shift by the padding: padded[y, x] is window[y - 2, x - 2] (zero above and left).
    padded = np.zeros((window.shape[0] + PATCH_PADDING, window.shape[1] + PATCH_PADDING),
                      dtype=np.float32)
    padded[PATCH_PADDING:, PATCH_PADDING:] = window
    patches = padded[: rows * PATCH_SIZE, : cols * PATCH_SIZE]
    coverage = patches.reshape(rows, PATCH_SIZE, cols, PATCH_SIZE).mean(axis=(1, 3))
    return (coverage >= MIN_COVERAGE).reshape(-1)


def hand_crop_mask(box: HandBox, transform: CropTransform,
                   dilation_px: int = HAND_DILATION_PX) -> np.ndarray:
    """``(256, 256)`` bool mask of the hand in its crop: dilated landmark hull (or the box)."""
    if box.keypoints_2d is not None and len(box.keypoints_2d) >= 3:
        points = np.asarray(box.keypoints_2d, dtype=np.float64)[:, :2]
    else:
        points = np.array([[box.x1, box.y1], [box.x2, box.y1], [box.x2, box.y2],
                           [box.x1, box.y2]], dtype=np.float64)
    in_crop = transform.image_to_crop(points)
    canvas = np.zeros((CROP_SIZE, CROP_SIZE), dtype=np.uint8)
    finite = in_crop[np.isfinite(in_crop).all(axis=1)]
    if len(finite) >= 3:
        hull = cv2.convexHull(np.round(finite).astype(np.int32))
        cv2.fillConvexPoly(canvas, hull, 1)
    if dilation_px > 0:
        side = 2 * int(dilation_px) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        canvas = cv2.dilate(canvas, kernel)
    return canvas.astype(bool)


def image_mask_to_crop(mask: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Warp a frame-sized mask (``H x W``, 0..1) into a crop exactly as the image is warped.

    The crop's affine (:meth:`CropTransform.warp_matrix`) applies to the mirrored frame for left
    hands, as in :func:`~fasthmr_ros.pipeline.crop.crop_hand`; outside the frame is background.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != (transform.image_height, transform.image_width):
        raise ValueError(f"mask must match the frame ({transform.image_height}x"
                         f"{transform.image_width}), got {mask.shape}")
    source = cv2.flip(mask, 1) if transform.flip else mask
    return cv2.warpAffine(source, transform.warp_matrix(), (CROP_SIZE, CROP_SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _no_tokens() -> np.ndarray:
    return np.zeros((0, TOKEN_GRID[0] * TOKEN_GRID[1]), np.float32)


def hand_foreground_tokens(boxes: Sequence[HandBox],
                           transforms: Sequence[CropTransform]) -> np.ndarray:
    """``(N, 192)`` float32 foreground flags of every hand crop (1 foreground, 0 background)."""
    rows = [crop_mask_to_tokens(hand_crop_mask(box, t)) for box, t in zip(boxes, transforms,
                                                                          strict=True)]
    return np.stack(rows).astype(np.float32) if rows else _no_tokens()


def mask_foreground_tokens(mask: np.ndarray,
                           transforms: Sequence[CropTransform]) -> np.ndarray:
    """``(N, 192)`` float32 foreground flags of every crop of a frame-sized person mask."""
    rows = [crop_mask_to_tokens(image_mask_to_crop(mask, t)) for t in transforms]
    return np.stack(rows).astype(np.float32) if rows else _no_tokens()


def person_foreground_tokens(people: Sequence[PersonBox | Any],
                             transforms: Sequence[CropTransform]) -> np.ndarray:
    """``(N, 192)`` float32 foreground flags of every person crop, from each person's mask.

    A person without a mask (an external box, or any box object without a ``mask``) has no
    foreground tokens: its crop is merged as plain ToMe.
    """
    masks = [getattr(person, "mask", None) for person in people]
    rows = [
        crop_mask_to_tokens(image_mask_to_crop(mask, t)) if mask is not None
        else np.zeros(TOKEN_GRID[0] * TOKEN_GRID[1], np.float32)
        for mask, t in zip(masks, transforms, strict=True)
    ]
    return np.stack(rows).astype(np.float32) if rows else _no_tokens()
