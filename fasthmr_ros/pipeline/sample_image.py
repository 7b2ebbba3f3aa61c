"""A drawn (not photographed) image of an open right hand, for first runs without a camera."""

from __future__ import annotations

import math

import cv2
import numpy as np

SKIN_BGR = (120, 160, 215)


def draw_sample_hand(width: int = 640, height: int = 480) -> np.ndarray:
    """Return a BGR image of a stylised open right hand (palm towards the camera).

    The drawing is only a placeholder input: real hands come from a camera or photographs.
    """
    ramp = np.linspace(60, 140, height, dtype=np.float32)[:, None]
    image = np.empty((height, width, 3), np.uint8)
    image[...] = np.stack([ramp + 40, ramp + 20, ramp], axis=-1).astype(np.uint8)
    scale = min(width, height) / 480.0
    cx, cy = width / 2, height * 0.62
    palm = (int(cx), int(cy))
    cv2.ellipse(image, palm, (int(70 * scale), int(85 * scale)), 0, 0, 360, SKIN_BGR, -1)
    cv2.rectangle(
        image,
        (int(cx - 45 * scale), int(cy + 60 * scale)),
        (int(cx + 45 * scale), int(height)),
        SKIN_BGR,
        -1,
    )
    # Four fingers fanned out above the palm, then the thumb on the image's left side.
    fingers = ((-50, -14, 95), (-17, -4, 115), (17, 4, 110), (50, 14, 90))
    for offset, tilt, length in fingers:
        base = (cx + offset * scale, cy - 55 * scale)
        angle = math.radians(tilt)
        reach = length * scale
        tip = (base[0] + math.sin(angle) * reach, base[1] - math.cos(angle) * reach)
        _capsule(image, base, tip, 15 * scale)
    _capsule(image, (cx - 55 * scale, cy + 10 * scale), (cx - 130 * scale, cy - 50 * scale),
             17 * scale)
    return cv2.GaussianBlur(image, (3, 3), 0)


def _capsule(image: np.ndarray, a: tuple[float, float], b: tuple[float, float], r: float) -> None:
    pa = (int(round(a[0])), int(round(a[1])))
    pb = (int(round(b[0])), int(round(b[1])))
    cv2.line(image, pa, pb, SKIN_BGR, int(round(2 * r)), cv2.LINE_AA)
    for p in (pa, pb):
        cv2.circle(image, p, int(round(r)), SKIN_BGR, -1, cv2.LINE_AA)
