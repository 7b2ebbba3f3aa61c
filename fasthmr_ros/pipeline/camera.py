"""Camera model: HaMeR's weak-perspective crop camera lifted into the real image camera.

The network predicts ``(s, tx, ty)`` for a 256 px crop seen by a camera of focal 5000 px whose
optical axis goes through the crop centre: the hand (in MANO coordinates) sits at
``t_crop = (tx, ty, 2 * 5000 / (256 * s))``. The crop is a square of ``b`` image pixels centred
on ``(u_b, v_b)``, so near the hand one metre at depth ``t_crop.z`` covers
``5000 * b / 256 / t_crop.z`` image pixels and the crop centre ray lands on ``(u_b, v_b)``.

In the image camera (focal ``fx, fy``, principal point ``cx, cy``) we pick the translation
``T`` that reproduces both:

* magnification: ``f / T_z = 5000 * b / (256 * t_z)``, i.e. ``T_z = 2 f / (b s)``, with
  ``f = (fx + fy) / 2`` (the crop is square in pixels; for square pixels ``f = fx = fy``);
* the crop centre ray: the MANO point ``(-tx, -ty, 0)`` must project to ``(u_b, v_b)``:
  ``fx (T_x - tx) / T_z + cx = u_b``, i.e. ``T_x = tx + (u_b - cx) T_z / fx`` and likewise
  ``T_y = ty + (v_b - cy) T_z / fy``.

With ``fx = fy = f`` and the principal point at the image centre this is exactly HaMeR's
``cam_crop_to_full``: ``T_x = tx + 2 (u_b - W/2) / (b s)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fasthmr_ros.models.constants import CROP_FOCAL_LENGTH, CROP_SIZE
from fasthmr_ros.pipeline.results import CameraIntrinsics

# HaMeR guards the division by the predicted scale with this epsilon.
_SCALE_EPS = 1e-9


def default_intrinsics(width: int, height: int) -> CameraIntrinsics:
    """HaMeR's demo camera for an unknown lens: ``f = 5000 / 256 * max(W, H)``, centred.

    The focal length is a long-lens guess (about 15 degrees field of view), so depths are only
    plausible; pass real intrinsics for metric positions.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    focal = CROP_FOCAL_LENGTH / CROP_SIZE * max(width, height)
    return CameraIntrinsics(fx=focal, fy=focal, cx=width / 2.0, cy=height / 2.0)


def resolve_intrinsics(
    intrinsics: CameraIntrinsics | np.ndarray | list[float] | None, width: int, height: int
) -> CameraIntrinsics:
    """Return ``intrinsics`` as :class:`CameraIntrinsics`, or HaMeR's default when ``None``.

    A 3x3 matrix (or its 9 row-major values) is accepted; non-finite or non-positive focal
    lengths raise ``ValueError``.
    """
    if intrinsics is None:
        return default_intrinsics(width, height)
    if isinstance(intrinsics, CameraIntrinsics):
        return intrinsics
    values = np.asarray(intrinsics, dtype=np.float64)
    if values.size != 9:
        raise ValueError(
            f"intrinsics must be a CameraIntrinsics, a 3x3 matrix or 9 values, got shape "
            f"{values.shape}"
        )
    return CameraIntrinsics.from_matrix(values)


def crop_camera_translation(cam: np.ndarray) -> np.ndarray:
    """Translation ``(tx, ty, 2 * 5000 / (256 * s))`` of the crop camera, ``(N, 3)``."""
    cam = np.asarray(cam, dtype=np.float64).reshape(-1, 3)
    tz = 2.0 * CROP_FOCAL_LENGTH / (CROP_SIZE * cam[:, 0] + _SCALE_EPS)
    return np.stack([cam[:, 1], cam[:, 2], tz], axis=-1)


def crop_to_camera_translation(
    cam: np.ndarray,
    box_center: np.ndarray,
    box_size: np.ndarray,
    intrinsics: CameraIntrinsics,
) -> np.ndarray:
    """Lift weak-perspective crop cameras into translations in the image camera frame.

    Args:
        cam: ``(N, 3)`` network cameras ``(s, tx, ty)``, already un-mirrored for left hands
            (``tx`` negated).
        box_center: ``(N, 2)`` centres of the cropped squares in image pixels.
        box_size: ``(N,)`` sides of the cropped squares in image pixels.
        intrinsics: the image camera.

    Returns:
        ``(N, 3)`` translations in metres (camera optical frame) to add to MANO points.

    """
    cam = np.asarray(cam, dtype=np.float64).reshape(-1, 3)
    center = np.asarray(box_center, dtype=np.float64).reshape(-1, 2)
    size = np.asarray(box_size, dtype=np.float64).reshape(-1)
    if not (len(cam) == len(center) == len(size)):
        raise ValueError(
            f"need one box per camera, got {len(cam)} cameras, {len(center)} centres, "
            f"{len(size)} sizes"
        )
    focal = 0.5 * (intrinsics.fx + intrinsics.fy)
    tz = 2.0 * focal / (size * cam[:, 0] + _SCALE_EPS)
    tx = cam[:, 1] + (center[:, 0] - intrinsics.cx) * tz / intrinsics.fx
    ty = cam[:, 2] + (center[:, 1] - intrinsics.cy) * tz / intrinsics.fy
    return np.stack([tx, ty, tz], axis=-1)


def crops_to_camera_translation(
    cam: np.ndarray, transforms: Sequence[Any], intrinsics: CameraIntrinsics
) -> np.ndarray:
    """:func:`crop_to_camera_translation` for crops given by their transforms.

    ``transforms`` are the crops' :class:`~fasthmr_ros.pipeline.crop.CropTransform` (anything
    with ``center`` and ``size``), one per row of ``cam``.
    """
    n = len(transforms)
    centers = np.array([t.center for t in transforms], dtype=np.float64).reshape(n, 2)
    sizes = np.array([t.size for t in transforms], dtype=np.float64)
    return crop_to_camera_translation(cam, centers, sizes, intrinsics)


def project_points(points: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Pinhole projection of ``(..., 3)`` camera-frame points to ``(..., 2)`` pixels.

    Points at or behind the camera (``z <= 0``) project to NaN.
    """
    pts = np.asarray(points, dtype=np.float64)
    z = pts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = np.where(z > 0, 1.0 / z, np.nan)
    u = intrinsics.fx * pts[..., 0] * inv_z + intrinsics.cx
    v = intrinsics.fy * pts[..., 1] * inv_z + intrinsics.cy
    return np.stack([u, v], axis=-1)


def solve_translation(
    points: np.ndarray, pixels: np.ndarray, intrinsics: CameraIntrinsics
) -> np.ndarray:
    """Translation ``t`` that best projects metric ``points + t`` onto ``pixels`` (pinhole).

    Closed form: ``u = fx (X + tx) / (Z + tz) + cx`` is linear in ``t`` once multiplied out,
    so all points give one ``(2N, 3)`` least-squares system (algebraic error; near-exact for
    objects small against their depth, like a hand or a body).

    Args:
        points: ``(N, 3)`` points in camera-aligned axes (metres), ``N >= 2``.
        pixels: ``(N, 2)`` their image positions.
        intrinsics: the camera.

    Raises:
        ValueError: on mismatched shapes, non-finite input, or when the solution puts the
            points behind the camera.

    """
    pts = np.asarray(points, dtype=np.float64)
    uv = np.asarray(pixels, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or uv.shape != (len(pts), 2) or len(pts) < 2:
        raise ValueError(f"need (N, 3) points and (N, 2) pixels with N >= 2, got {pts.shape} "
                         f"and {uv.shape}")
    if not (np.isfinite(pts).all() and np.isfinite(uv).all()):
        raise ValueError("points and pixels must be finite")
    du = uv[:, 0] - intrinsics.cx
    dv = uv[:, 1] - intrinsics.cy
    n = len(pts)
    a = np.zeros((2 * n, 3))
    b = np.empty(2 * n)
    a[:n, 0] = intrinsics.fx
    a[:n, 2] = -du
    b[:n] = du * pts[:, 2] - intrinsics.fx * pts[:, 0]
    a[n:, 1] = intrinsics.fy
    a[n:, 2] = -dv
    b[n:] = dv * pts[:, 2] - intrinsics.fy * pts[:, 1]
    t = np.linalg.lstsq(a, b, rcond=None)[0]
    if not np.all(pts[:, 2] + t[2] > 0):
        raise ValueError("the points would lie behind the camera; check the landmarks and "
                         "the intrinsics")
    return t
