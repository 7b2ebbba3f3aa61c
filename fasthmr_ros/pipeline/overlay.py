"""Draw hand and body meshes, keypoints and skeletons onto BGR images with OpenCV.

Meshes are drawn with the painter's algorithm (far triangles first) and two-sided Lambert
shading from a light at the camera, so no OpenGL is needed; good enough to check a result by
eye.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fasthmr_ros.models.constants import HAND_SKELETON
from fasthmr_ros.pipeline.camera import project_points
from fasthmr_ros.pipeline.hand_pipeline import faces_for_side
from fasthmr_ros.pipeline.results import RIGHT, BodyResult, CameraIntrinsics, HandResult

#: BGR base colours per side.
SIDE_COLORS: dict[str, tuple[int, int, int]] = {
    "right": (230, 160, 60),  # blue-ish
    "left": (70, 170, 240),  # orange-ish
}
#: BGR base colour of bodies.
BODY_COLOR: tuple[int, int, int] = (115, 205, 90)
_AMBIENT = 0.3
# Fixed-point subpixel precision for cv2 drawing calls.
_SHIFT = 4
# Projections farther out than this (pixels) are treated as invalid: they would overflow the
# fixed-point coordinates and are far off any image anyway.
_MAX_COORD = 1e6


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def draw_mesh(
    image_bgr: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    intrinsics: CameraIntrinsics,
    color: tuple[int, int, int],
    alpha: float = 0.8,
    wireframe: bool = False,
) -> np.ndarray:
    """Draw one mesh (camera-frame metres) in place and return the image.

    Triangles touching points at or behind the camera (or projecting absurdly far away) are
    skipped. Shading is two-sided, so the winding of ``faces`` does not change the picture.
    """
    verts = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    uv = project_points(verts, intrinsics)
    uv[~(np.abs(uv) < _MAX_COORD).all(axis=-1)] = np.nan
    tri_uv = uv[faces]  # (F, 3, 2)
    valid = np.isfinite(tri_uv).all(axis=(1, 2))
    if not valid.any():
        return image_bgr
    tri_uv = tri_uv[valid]
    tri = verts[faces[valid]]  # (F', 3, 3)
    depth = tri[:, :, 2].mean(axis=1)
    order = np.argsort(-depth)  # far first
    canvas = image_bgr.copy()
    base = np.asarray(color, dtype=np.float64)
    if wireframe:
        cv2.polylines(canvas, list(_fixed(tri_uv[order])), True, tuple(int(c) for c in color),
                      1, cv2.LINE_AA, _SHIFT)
    else:
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        to_camera = -tri.mean(axis=1)
        to_camera /= np.linalg.norm(to_camera, axis=1, keepdims=True) + 1e-12
        lambert = np.abs((normals * to_camera).sum(axis=1))
        shades = base[None, :] * (_AMBIENT + (1.0 - _AMBIENT) * lambert[:, None])
        pts = _fixed(tri_uv)
        for i in order:  # one call per triangle: each has its own shade
            cv2.fillConvexPoly(canvas, pts[i], tuple(float(c) for c in shades[i]),
                               cv2.LINE_AA, _SHIFT)
    cv2.addWeighted(canvas, alpha, image_bgr, 1.0 - alpha, 0.0, dst=image_bgr)
    return image_bgr


def draw_skeleton(
    image_bgr: np.ndarray,
    keypoints_2d: np.ndarray,
    color: tuple[int, int, int],
    radius: int = 3,
    bones: Sequence[tuple[int, int]] = HAND_SKELETON,
) -> np.ndarray:
    """Draw keypoints and their ``bones`` (default: the 21-joint OpenPose hand) in place."""
    kp = np.asarray(keypoints_2d, dtype=np.float64)
    finite = (np.abs(kp) < _MAX_COORD).all(axis=1)  # False for NaN too
    pts = _fixed(np.where(finite[:, None], kp, 0.0))
    for parent, child in bones:
        if finite[parent] and finite[child]:
            cv2.line(image_bgr, tuple(pts[parent]), tuple(pts[child]), color, 2, cv2.LINE_AA,
                     _SHIFT)
    for i in np.flatnonzero(finite):
        cv2.circle(image_bgr, tuple(pts[i]), radius << _SHIFT, (255, 255, 255), -1, cv2.LINE_AA,
                   _SHIFT)
        cv2.circle(image_bgr, tuple(pts[i]), (radius - 1) << _SHIFT, color, -1, cv2.LINE_AA,
                   _SHIFT)
    return image_bgr


def draw_hands(
    image_bgr: np.ndarray,
    hands: Sequence[HandResult],
    faces: np.ndarray,
    intrinsics: CameraIntrinsics,
    wireframe: bool = False,
    draw_boxes: bool = True,
) -> np.ndarray:
    """Return a copy of ``image_bgr`` with every hand's mesh, skeleton and box drawn.

    Args:
        image_bgr: ``H x W x 3`` uint8 BGR image.
        hands: results of :meth:`HandMeshPipeline.process` for this image.
        faces: right-hand MANO faces (left hands get the reversed winding here).
        intrinsics: the camera the results were computed with.
        wireframe: draw triangle edges instead of shaded triangles.
        draw_boxes: also draw the detector boxes.

    """
    out = np.ascontiguousarray(image_bgr).copy()
    # far hands first so near ones cover them
    for hand in sorted(hands, key=lambda h: -float(np.mean(h.vertices[:, 2]))):
        color = SIDE_COLORS.get(hand.side, SIDE_COLORS[RIGHT])
        draw_mesh(out, hand.vertices, faces_for_side(faces, hand.side), intrinsics, color,
                  wireframe=wireframe)
    for hand in hands:
        color = SIDE_COLORS.get(hand.side, SIDE_COLORS[RIGHT])
        draw_skeleton(out, hand.keypoints_2d, color)
        if draw_boxes:
            box = np.clip(np.asarray(hand.box, dtype=np.float64), -_MAX_COORD, _MAX_COORD)
            x1, y1, x2, y2 = (int(v) for v in _fixed(box))
            cv2.rectangle(out, (x1, y1), (x2, y2), color, 1, cv2.LINE_AA, _SHIFT)
            label = f"{hand.side} {hand.score:.2f}"
            org = (int(hand.box[0]), max(12, int(hand.box[1]) - 4))
            cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out


def draw_bodies(
    image_bgr: np.ndarray,
    bodies: Sequence[BodyResult],
    faces: np.ndarray,
    bones: Sequence[tuple[int, int]],
    intrinsics: CameraIntrinsics,
    wireframe: bool = False,
    draw_boxes: bool = True,
) -> np.ndarray:
    """Return a copy of ``image_bgr`` with every body's mesh, skeleton and box drawn.

    ``faces`` and ``bones`` are the body model's (:class:`MeshModelInfo` ``faces`` and
    ``bones``); ``intrinsics`` the camera the results were computed with.
    """
    out = np.ascontiguousarray(image_bgr).copy()
    for body in sorted(bodies, key=lambda b: -float(np.mean(b.vertices[:, 2]))):
        draw_mesh(out, body.vertices, faces, intrinsics, BODY_COLOR, wireframe=wireframe)
    for body in bodies:
        draw_skeleton(out, body.keypoints_2d, BODY_COLOR, radius=2, bones=bones)
        if draw_boxes:
            box = np.clip(np.asarray(body.box, dtype=np.float64), -_MAX_COORD, _MAX_COORD)
            x1, y1, x2, y2 = (int(v) for v in _fixed(box))
            cv2.rectangle(out, (x1, y1), (x2, y2), BODY_COLOR, 1, cv2.LINE_AA, _SHIFT)
            label = f"body {body.track_id if body.track_id is not None else ''} {body.score:.2f}"
            org = (int(body.box[0]), max(12, int(body.box[1]) - 4))
            cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, BODY_COLOR, 1,
                        cv2.LINE_AA)
    return out
