"""HMR2.0 as a body estimator: person boxes -> HMR2.0's crops -> one batch -> SMPL bodies.

Registered as the body estimator ``hmr2``
(:func:`~fasthmr_ros.pipeline.body_estimator.create_body_estimator` ``("hmr2",
checkpoint=..., smpl_dir=..., device=...)``), behind the one
:class:`~fasthmr_ros.pipeline.body_estimator.BodyEstimator` interface.

Per frame, exactly as 4D-Humans' demo: every person box is grown to the 3:4 aspect the ViT
sees (no further enlargement), cut as a square (anti-aliased when shrunk more than 2.2x,
:func:`~fasthmr_ros.pipeline.crop.crop_box`), all crops go through the network in one batch
and through SMPL, and each body is placed in the camera optical frame with the frame's real
intrinsics (:func:`~fasthmr_ros.pipeline.camera.crop_to_camera_translation`, HMR2.0's
``cam_crop_to_full`` for a centred principal point). Nothing is mirrored.

The regressor is anything with the contract of :func:`fasthmr_ros.load_body_regressor`
(the PyTorch model, or an engine built from it by ``fasthmr_ros.engines.base.create_engine``)
and an ``info`` (:class:`~fasthmr_ros.models.mesh_model.MeshModelInfo`, SMPL's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fasthmr_ros.models.constants import BODY_PELVIS_INDEX, CROP_SIZE
from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.body_estimator import PERSON_INDEX, register_body_estimator
from fasthmr_ros.pipeline.camera import crops_to_camera_translation, project_points
from fasthmr_ros.pipeline.crop import (
    BODY_RESCALE_FACTOR,
    BoxLike,
    CropTransform,
    check_image,
    crop_box,
)
from fasthmr_ros.pipeline.foreground import person_foreground_tokens
from fasthmr_ros.pipeline.network_batch import run_regressor
from fasthmr_ros.pipeline.results import BodyResult, CameraIntrinsics


class Hmr2BodyEstimator:
    """Reconstructs SMPL bodies of boxed people with an HMR2.0-compatible network.

    Args:
        regressor: crops ``(B, 3, 256, 256)`` -> ``vertices``, ``joints``, ``cam``,
            ``global_orient``, ``body_pose``, ``betas`` (:func:`fasthmr_ros.load_body_regressor`
            or an engine around it), with an ``info`` attribute.
        device: torch device the crops go to.
        max_batch: largest number of people per network call (larger frames run in chunks).

    """

    def __init__(
        self,
        regressor: Callable[..., Mapping[str, Any]],
        device: str = "cpu",
        max_batch: int = 16,
    ) -> None:
        if not callable(regressor):
            raise TypeError(f"regressor must be callable, got {type(regressor).__name__}")
        info = getattr(regressor, "info", None)
        if not isinstance(info, MeshModelInfo):
            raise ValueError(
                "the regressor has no mesh model 'info'; load it with "
                "fasthmr_ros.load_body_regressor (or wrap such a model in an engine)"
            )
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.regressor = regressor
        self.device = device
        self.max_batch = int(max_batch)
        self._info = info
        self._skipped: list[str] = []
        self.expected_shapes = {
            "vertices": (info.num_vertices, 3),
            "joints": (info.num_joints, 3),
            "cam": (3,),
            "global_orient": (1, 3, 3),
            "body_pose": (23, 3, 3),
            "betas": (10,),
        }

    @property
    def info(self) -> MeshModelInfo:
        """SMPL's structure with HMR2.0's 44 joints."""
        return self._info

    @property
    def skipped(self) -> list[str]:
        """People of the last :meth:`estimate` call that were not reconstructed, and why."""
        return list(self._skipped)

    @property
    def is_test_asset(self) -> bool:
        """True when the network holds random test weights."""
        return bool(getattr(self.regressor, "is_test_asset", False))

    def make_batch(
        self, image_rgb: np.ndarray, boxes: Sequence[BoxLike]
    ) -> tuple[np.ndarray, list[CropTransform]]:
        """HMR2.0's crop of every box: ``(N, 3, 256, 256)`` float32 batch and transforms."""
        check_image(image_rgb)
        batch = np.empty((len(boxes), 3, CROP_SIZE, CROP_SIZE), dtype=np.float32)
        transforms = [
            crop_box(image_rgb, box, BODY_RESCALE_FACTOR, flip=False, out=slot).transform
            for box, slot in zip(boxes, batch, strict=True)
        ]
        return batch, transforms

    @property
    def uses_foreground(self) -> bool:
        """Whether the network takes per-token foreground flags (a masked merge plan)."""
        return bool(getattr(self.regressor, "uses_foreground", False))

    def make_foreground(
        self, boxes: Sequence[BoxLike], transforms: Sequence[CropTransform]
    ) -> np.ndarray | None:
        """Per-token foreground flags ``(N, 192)`` from the people's masks, for masked plans.

        ``None`` when the network takes none; a person without a mask gets no foreground.
        """
        if not self.uses_foreground:
            return None
        return person_foreground_tokens(boxes, transforms)

    def run_network(
        self, batch: np.ndarray, foreground: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Network + SMPL on a crop batch (in chunks of ``max_batch``): float32 host arrays.

        ``foreground`` (N, tokens) goes to networks with a masked merge plan only.
        """
        parts = [
            run_regressor(self.regressor, batch[start : start + self.max_batch], self.device,
                          self.expected_shapes, "load_body_regressor",
                          None if foreground is None
                          else foreground[start : start + self.max_batch])
            for start in range(0, len(batch), self.max_batch)
        ]
        if len(parts) == 1:
            return parts[0]
        return {key: np.concatenate([p[key] for p in parts]) for key in self.expected_shapes}

    def to_results(
        self,
        outputs: Mapping[str, np.ndarray],
        boxes: Sequence[BoxLike],
        transforms: Sequence[CropTransform],
        camera: CameraIntrinsics,
    ) -> list[BodyResult]:
        """Place every body in the camera frame; one :class:`BodyResult` per box."""
        cam_t = crops_to_camera_translation(outputs["cam"], transforms, camera)
        shift = cam_t[:, None, :].astype(np.float32)
        joints = outputs["joints"] + shift
        vertices = outputs["vertices"] + shift
        keypoints = project_points(joints, camera).astype(np.float32)
        results = []
        for i, box in enumerate(boxes):
            results.append(
                BodyResult(
                    model=self._info.name,
                    score=float(getattr(box, "score", 1.0)),
                    box=np.asarray(box.xyxy, dtype=np.float64),
                    keypoints_2d=keypoints[i],
                    joints=joints[i],
                    vertices=vertices[i],
                    cam_t=cam_t[i],
                    root_rotation=outputs["global_orient"][i, 0].copy(),
                    global_orient=outputs["global_orient"][i, 0].copy(),
                    body_pose=outputs["body_pose"][i].copy(),
                    betas=outputs["betas"][i].copy(),
                    extras={PERSON_INDEX: np.array([i], dtype=np.int64)},
                    root_joint=BODY_PELVIS_INDEX,
                )
            )
        return results

    def estimate(
        self,
        image_rgb: np.ndarray,
        people: Sequence[BoxLike],
        camera: CameraIntrinsics,
    ) -> list[BodyResult]:
        """Reconstruct the bodies of ``people`` in ``image_rgb`` (one network batch).

        Person boxes need no landmarks: external boxes and MediaPipe's alike.
        """
        self._skipped = []
        if not people:
            check_image(image_rgb)
            return []
        batch, transforms = self.make_batch(image_rgb, people)
        outputs = self.run_network(batch, self.make_foreground(people, transforms))
        results = self.to_results(outputs, people, transforms, camera)
        finite = [bool(np.isfinite(r.vertices).all() and r.cam_t[2] > 0) for r in results]
        self._skipped = [
            f"person {i}: the network's camera put the body behind the camera or the mesh "
            "is not finite" for i, ok in enumerate(finite) if not ok
        ]
        return [r for r, ok in zip(results, finite) if ok]


def create_hmr2_estimator(
    checkpoint: str, smpl_dir: str | None = None, device: str = "cpu"
) -> Hmr2BodyEstimator:
    """Load an HMR2.0 checkpoint (PyTorch) as a body estimator.

    Layers above the pipeline (CLI, node) that run the network on another engine wrap the
    loaded regressor with ``fasthmr_ros.engines.base.create_engine`` and pass that instead.
    """
    from fasthmr_ros import load_body_regressor

    return Hmr2BodyEstimator(
        load_body_regressor(checkpoint, smpl_dir=smpl_dir, device=device), device=device
    )


register_body_estimator("hmr2", create_hmr2_estimator)
