"""One frame, all its hands: crops -> one network batch -> hands in the camera frame.

The network always sees a right hand (left-hand crops are mirrored). Its outputs for a left
hand are mirrored back here, the way HaMeR's demo does it: x of vertices and joints and the
sign of the camera's ``tx`` flip; the mesh then needs reversed face winding
(:func:`faces_for_side`); rotations mirror as ``M R M`` with ``M = diag(-1, 1, 1)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fasthmr_ros.models.constants import CROP_SIZE, NUM_FACES, NUM_JOINTS, NUM_VERTICES
from fasthmr_ros.models.mano_info import mano_info
from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.camera import (
    crops_to_camera_translation,
    project_points,
    resolve_intrinsics,
)
from fasthmr_ros.pipeline.crop import (
    DEFAULT_RESCALE_FACTOR,
    CropTransform,
    check_image,
    crop_hand,
)
from fasthmr_ros.pipeline.foreground import hand_foreground_tokens
from fasthmr_ros.pipeline.network_batch import run_regressor
from fasthmr_ros.pipeline.results import LEFT, CameraIntrinsics, HandBox, HandResult

#: Mirror across the camera's y-z plane (x -> -x).
MIRROR_X = np.diag([-1.0, 1.0, 1.0])

#: Output shapes (without the batch axis) every hand regressor must return (see
#: :func:`fasthmr_ros.load_hand_regressor`).
HAND_OUTPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "vertices": (NUM_VERTICES, 3),
    "joints": (NUM_JOINTS, 3),
    "cam": (3,),
    "global_orient": (1, 3, 3),
    "hand_pose": (15, 3, 3),
    "betas": (10,),
}
#: Output keys every hand regressor must return.
REQUIRED_OUTPUTS: tuple[str, ...] = tuple(HAND_OUTPUT_SHAPES)


def left_hand_faces(faces: np.ndarray) -> np.ndarray:
    """Return ``faces`` with reversed winding, for meshes mirrored into left hands."""
    return np.ascontiguousarray(np.asarray(faces)[:, [0, 2, 1]])


def faces_for_side(faces: np.ndarray, side: str) -> np.ndarray:
    """Faces with outward normals for a hand of ``side`` given right-hand ``faces``."""
    return left_hand_faces(faces) if side == LEFT else np.asarray(faces)


def mirror_rotations(rotations: np.ndarray) -> np.ndarray:
    """Mirror ``(..., 3, 3)`` rotations across x: ``M R M`` (still proper rotations)."""
    return MIRROR_X @ np.asarray(rotations) @ MIRROR_X


@dataclass
class StageTimings:
    """Wall-clock milliseconds of the last ``process`` call of a hand pipeline, per stage."""

    crop_ms: float = 0.0
    network_ms: float = 0.0
    post_ms: float = 0.0
    #: Landmark fit (the landmark-fit path's only stage; 0 on the network path).
    fit_ms: float = 0.0
    hands: int = 0

    @property
    def total_ms(self) -> float:
        """Sum of all stages."""
        return self.crop_ms + self.network_ms + self.post_ms + self.fit_ms


class HandMeshPipeline:
    """Turns a frame and its hand boxes into :class:`HandResult` objects in the camera frame.

    Args:
        regressor: any callable with the forward contract of
            :func:`fasthmr_ros.load_hand_regressor`: a ``(B, 3, 256, 256)`` float32 tensor of
            normalised crops in, a dict with ``vertices``, ``joints``, ``cam``,
            ``global_orient``, ``hand_pose`` and ``betas`` out (torch tensors or arrays).
        device: torch device the crops are moved to before the call.
        faces: ``(1538, 3)`` right-hand MANO faces; taken from ``regressor.faces`` when omitted.
        rescale_factor: tight box enlargement (HaMeR's demo: 2.0).

    """

    def __init__(
        self,
        regressor: Callable[..., Mapping[str, Any]],
        device: str = "cpu",
        faces: np.ndarray | None = None,
        rescale_factor: float = DEFAULT_RESCALE_FACTOR,
    ) -> None:
        if not callable(regressor):
            raise TypeError(f"regressor must be callable, got {type(regressor).__name__}")
        if faces is None:
            faces = getattr(regressor, "faces", None)
        if faces is None:
            raise ValueError(
                "no mesh faces: pass faces=... or use a regressor with a 'faces' attribute "
                "(load_hand_regressor provides one)"
            )
        faces = np.asarray(faces)
        if faces.shape != (NUM_FACES, 3):
            raise ValueError(f"faces must have shape ({NUM_FACES}, 3), got {faces.shape}")
        self.regressor = regressor
        self.device = device
        self.faces = faces.astype(np.int64)
        info = getattr(regressor, "info", None)
        #: The mesh model of the results (MANO for the network path).
        self.info: MeshModelInfo = info if isinstance(info, MeshModelInfo) else mano_info(faces)
        self.rescale_factor = float(rescale_factor)
        self.timings = StageTimings()
        #: Whether the network takes per-token foreground flags (a masked merge plan); they
        #: are then made from each hand's landmarks (:mod:`fasthmr_ros.pipeline.foreground`).
        self.uses_foreground = bool(getattr(regressor, "uses_foreground", False))

    def faces_for_side(self, side: str) -> np.ndarray:
        """Faces with outward normals for a hand of ``side``."""
        return faces_for_side(self.faces, side)

    def make_batch(
        self, image_rgb: np.ndarray, boxes: Sequence[HandBox]
    ) -> tuple[np.ndarray, list[CropTransform]]:
        """Crop every box: ``(N, 3, 256, 256)`` float32 batch and the crop transforms."""
        check_image(image_rgb)
        # Each crop is written straight into its batch slot: no per-crop array, no stacking.
        batch = np.empty((len(boxes), 3, CROP_SIZE, CROP_SIZE), dtype=np.float32)
        transforms = [
            crop_hand(image_rgb, box, self.rescale_factor, out=slot).transform
            for box, slot in zip(boxes, batch, strict=True)
        ]
        return batch, transforms

    def make_foreground(
        self, boxes: Sequence[HandBox], transforms: Sequence[CropTransform]
    ) -> np.ndarray | None:
        """Per-token foreground flags ``(N, 192)`` when the network uses them, else ``None``."""
        if not self.uses_foreground:
            return None
        return hand_foreground_tokens(boxes, transforms)

    def run_network(
        self, batch: np.ndarray, foreground: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Run the regressor on a crop batch and return its outputs as float32 numpy arrays.

        ``foreground`` (N, tokens) goes to networks with a masked merge plan only.
        """
        expected = {**HAND_OUTPUT_SHAPES, "vertices": (self.info.num_vertices, 3)}
        return run_regressor(self.regressor, batch, self.device, expected, "load_hand_regressor",
                             foreground)

    def to_results(
        self,
        outputs: Mapping[str, np.ndarray],
        boxes: Sequence[HandBox],
        transforms: Sequence[CropTransform],
        intrinsics: CameraIntrinsics,
    ) -> list[HandResult]:
        """Un-mirror left hands and place every hand in the camera frame."""
        is_right = np.array([box.is_right for box in boxes], dtype=bool)
        sign = np.where(is_right, 1.0, -1.0)
        vertices = outputs["vertices"].astype(np.float64)
        joints = outputs["joints"].astype(np.float64)
        vertices[..., 0] *= sign[:, None]
        joints[..., 0] *= sign[:, None]
        cam = outputs["cam"].astype(np.float64).copy()
        cam[:, 1] *= sign
        cam_t = crops_to_camera_translation(cam, transforms, intrinsics)
        joints_cam = joints + cam_t[:, None, :]
        vertices_cam = vertices + cam_t[:, None, :]
        keypoints = project_points(joints_cam, intrinsics)
        root = outputs["global_orient"][:, 0].astype(np.float64)
        wrist = np.where(is_right[:, None, None], root, mirror_rotations(root))

        results = []
        for i, box in enumerate(boxes):
            results.append(
                HandResult(
                    side=box.side,
                    score=float(box.score),
                    box=box.xyxy,
                    keypoints_2d=keypoints[i].astype(np.float32),
                    joints=joints_cam[i].astype(np.float32),
                    vertices=vertices_cam[i].astype(np.float32),
                    global_orient=outputs["global_orient"][i, 0].copy(),
                    hand_pose=outputs["hand_pose"][i].copy(),
                    betas=outputs["betas"][i].copy(),
                    cam_t=cam_t[i],
                    wrist_rotation=wrist[i].astype(np.float32),
                )
            )
        return results

    def process(
        self,
        image_rgb: np.ndarray,
        boxes: Sequence[HandBox],
        intrinsics: CameraIntrinsics | np.ndarray | None = None,
    ) -> list[HandResult]:
        """Reconstruct every boxed hand of one frame in a single network batch.

        Args:
            image_rgb: ``H x W x 3`` uint8 RGB frame.
            boxes: tight hand boxes with sides.
            intrinsics: the camera (or its 3x3 matrix); HaMeR's default camera when ``None``.

        Returns:
            One :class:`HandResult` per box, in box order; ``[]`` for no boxes.

        """
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        camera = resolve_intrinsics(intrinsics, width, height)
        timings = StageTimings(hands=len(boxes))
        self.timings = timings
        if not boxes:
            return []
        start = time.perf_counter()
        batch, transforms = self.make_batch(image_rgb, boxes)
        foreground = self.make_foreground(boxes, transforms)
        cropped = time.perf_counter()
        # Returns host arrays: GPU work has finished.
        outputs = self.run_network(batch, foreground)
        networked = time.perf_counter()
        results = self.to_results(outputs, boxes, transforms, camera)
        done = time.perf_counter()
        timings.crop_ms = 1e3 * (cropped - start)
        timings.network_ms = 1e3 * (networked - cropped)
        timings.post_ms = 1e3 * (done - networked)
        return results
