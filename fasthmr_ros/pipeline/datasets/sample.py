"""The sample type every dataset reader returns, and the geometry helpers they share.

Conventions: metres, camera optical frame (x right, y down, z forward), joints in OpenPose hand
order (:data:`fasthmr_ros.models.constants.JOINT_NAMES`), images RGB ``uint8``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fasthmr_ros.pipeline.camera import project_points as camera_projection
from fasthmr_ros.pipeline.results import SIDES, CameraIntrinsics

#: MANO parameter frames a dataset may store them in.
OPENCV_FRAME = "opencv"
OPENGL_FRAME = "opengl"


class DatasetFormatError(ValueError):
    """A dataset file exists but does not hold what its official layout promises."""


@dataclass(frozen=True)
class ManoParameters:
    """MANO parameters as a dataset stores them (axis-angle, right-hand model).

    ``pose`` is ``(48,)``: the global orientation then 15 joint rotations. With
    ``flat_hand_mean=False`` the 45 joint values are offsets from MANO's mean pose (the
    ``smplx`` default); with ``True`` they are absolute. ``frame`` is the camera frame the
    global orientation and ``translation`` refer to: ``"opencv"`` (our optical frame) or
    ``"opengl"`` (HO3D: y up, z backward; convert rotations with ``diag(1, -1, -1) @ R``).
    """

    pose: np.ndarray
    betas: np.ndarray
    translation: np.ndarray | None
    flat_hand_mean: bool
    frame: str


@dataclass
class HandSample:
    """One labelled (or partly labelled) hand image.

    Attributes:
        dataset: reader name, e.g. ``"freihand"``.
        key: stable identifier inside the dataset (e.g. ``"training/00000012"``).
        image_path: the RGB image file.
        side: ``"left"`` or ``"right"``.
        camera: intrinsics of the image, when known.
        joints: ``(21, 3)`` metres, camera optical frame, OpenPose order, or ``None``.
        vertices: ``(778, 3)`` metres, camera optical frame, when the dataset gives them.
        keypoints_2d: ``(21, 2)`` pixels, ``joints`` projected with ``camera``.
        box: ``(4,)`` ``x1, y1, x2, y2`` pixels: tight around ``keypoints_2d``, or the
            dataset's own hand box when it has no joints (HO3D evaluation split).
        mano: the dataset's MANO parameters, when it has them.
        root_joint: ``(3,)`` metres, optical frame, when only the wrist is known.
        mask_path: a foreground mask image, when the dataset has one.

    """

    dataset: str
    key: str
    image_path: Path
    side: str
    camera: CameraIntrinsics | None = None
    joints: np.ndarray | None = None
    vertices: np.ndarray | None = None
    keypoints_2d: np.ndarray | None = None
    box: np.ndarray | None = None
    mano: ManoParameters | None = None
    root_joint: np.ndarray | None = None
    mask_path: Path | None = None

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"hand side must be 'left' or 'right', got {self.side!r}")

    @property
    def has_joints(self) -> bool:
        """Whether the sample carries 3D joints (and so 2D keypoints and a box)."""
        return self.joints is not None

    def load_image(self) -> np.ndarray:
        """Read the image as RGB ``uint8`` ``(H, W, 3)``."""
        return read_rgb_image(self.image_path)


def read_rgb_image(path: Path | str) -> np.ndarray:
    """Read an image file as RGB ``uint8``; raise ``FileNotFoundError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFormatError(f"OpenCV cannot decode the image {path}; is it truncated?")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def project_points(points: np.ndarray, camera: CameraIntrinsics) -> np.ndarray:
    """Pinhole projection of ``(K, 3)`` labelled optical-frame points to ``(K, 2)`` pixels.

    Unlike :func:`fasthmr_ros.pipeline.camera.project_points` (NaN for such points), a point at
    or behind the camera raises :class:`DatasetFormatError`: labels are never there.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (K, 3), got {points.shape}")
    if np.any(points[:, 2] <= 0):
        raise DatasetFormatError(
            "a 3D point lies at or behind the camera (z <= 0): the points are not in the "
            "optical frame (x right, y down, z forward); OpenGL data needs y and z negated"
        )
    return camera_projection(points, camera)


def tight_box(keypoints_2d: np.ndarray) -> np.ndarray:
    """The tightest ``[x1, y1, x2, y2]`` box around ``(K, 2)`` pixel points."""
    keypoints_2d = np.asarray(keypoints_2d, dtype=np.float64)
    if keypoints_2d.ndim != 2 or keypoints_2d.shape[1] != 2 or keypoints_2d.shape[0] == 0:
        raise ValueError(f"keypoints must have shape (K>0, 2), got {keypoints_2d.shape}")
    lo = keypoints_2d.min(axis=0)
    hi = keypoints_2d.max(axis=0)
    return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float64)


def labelled_geometry(
    joints: np.ndarray, camera: CameraIntrinsics
) -> tuple[np.ndarray, np.ndarray]:
    """Projected keypoints and their tight box for optical-frame joints."""
    keypoints = project_points(joints, camera)
    return keypoints, tight_box(keypoints)
