"""The default hand path: detector landmarks -> fitted Anny hand meshes in the camera frame.

Nothing here is licensed or learned by this package: MediaPipe gives 21 image landmarks and 21
metric landmarks per hand, :class:`~fasthmr_ros.pipeline.anny_hand_fit.AnnyHandFitter` fits
the CC0 Anny hand to the metric ones, and the fitted joints are placed in the camera optical
frame by the translation that projects them onto the image landmarks with the real intrinsics
(or HaMeR's default camera when there is no CameraInfo). MediaPipe's metric landmarks use the
camera's axes, so the hand's orientation carries over unchanged.

The metric landmarks and the image landmarks disagree by a few millimetres (two outputs of one
network), so a second pass fits the hand, at the first pass's scale, to targets that agree
with the image exactly: each image landmark's viewing ray at the depth the first pass gives
that landmark. The mesh then lies on the image landmarks while its size and depth ordering
come from the metric landmarks.

Left hands are fitted as mirrored right hands and mirrored back (x -> -x), so their meshes use
the reversed triangle winding, like MANO's. A box without both landmark sets, or with a set
that cannot be a hand (NaN, too few points, degenerate scale), is skipped with a warning; the
other hands of the frame are still returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from fasthmr_ros.models.anny_hand import AnnyHandModel, shipped_anny_hand
from fasthmr_ros.models.constants import NUM_JOINTS
from fasthmr_ros.models.mesh_model import MODEL_ANNY_HAND, MeshModelInfo
from fasthmr_ros.models.rotation import matrix_to_rotvec
from fasthmr_ros.pipeline.anny_hand_fit import AnnyHandFit, AnnyHandFitter, LandmarkError
from fasthmr_ros.pipeline.camera import project_points, resolve_intrinsics, solve_translation
from fasthmr_ros.pipeline.crop import check_image
from fasthmr_ros.pipeline.hand_pipeline import MIRROR_X, StageTimings, faces_for_side
from fasthmr_ros.pipeline.results import (
    FIT_RESIDUAL_M,
    FIT_RESIDUAL_PX,
    RIGHT,
    CameraIntrinsics,
    HandBox,
    HandResult,
)

LOG = logging.getLogger(__name__)

#: A stream repeats the same bad landmarks frame after frame: warn once per kind per interval.
WARNING_INTERVAL_S = 5.0

#: Said once when a command or node starts on this path.
LANDMARK_FIT_NOTICE = (
    "no checkpoint given: hands are MediaPipe landmarks fitted with the Anny hand model "
    "(CC0 assets, no download); pass a HaMeR or student checkpoint for the network path"
)


class LandmarkHandPipeline:
    """Turn hand boxes with landmarks into fitted Anny :class:`HandResult` objects.

    Same interface as :class:`~fasthmr_ros.pipeline.hand_pipeline.HandMeshPipeline`:
    ``process(image, boxes, intrinsics)``, ``info``, ``faces``, ``timings`` (the fit is
    counted as ``fit_ms``).

    Args:
        model: the hand model (the shipped Anny hand when omitted).

    """

    def __init__(self, model: AnnyHandModel | None = None) -> None:
        self.model = model if model is not None else shipped_anny_hand()
        self.fitter = AnnyHandFitter(self.model)
        self.info: MeshModelInfo = self.model.info
        self.faces = self.info.faces
        self.timings = StageTimings()
        self.skipped: list[str] = []
        self._warned_at: dict[str, float] = {}

    def faces_for_side(self, side: str) -> np.ndarray:
        """Faces with outward normals for a hand of ``side``."""
        return faces_for_side(self.faces, side)

    def fit_box(self, box: HandBox, camera: CameraIntrinsics) -> HandResult:
        """Fit and place one hand.

        Raises:
            LandmarkError: when the box lacks landmarks or they cannot be a hand.

        """
        if box.world_landmarks is None or box.keypoints_2d is None:
            raise LandmarkError(
                "the box has no landmarks: the landmark fit needs a detector that gives 21 "
                "image and 21 metric landmarks (detector 'mediapipe'), or a network checkpoint"
            )
        pixels = np.asarray(box.keypoints_2d, dtype=np.float64)
        if pixels.shape != (NUM_JOINTS, 2) or not np.isfinite(pixels).all():
            raise LandmarkError(f"need 21 finite image landmarks, got shape {pixels.shape}")
        world = np.asarray(box.world_landmarks, dtype=np.float64)
        right = box.side == RIGHT
        mirror = np.eye(3) if right else MIRROR_X
        # A quick first pass: only its joints' depths are used.
        first = self.fitter.fit(world if right else world @ MIRROR_X, mesh=False,
                                root_passes=0)
        try:
            t = solve_translation(first.joints @ mirror, pixels, camera)
            # Targets on the image landmarks' rays, at the depths of the placed landmarks.
            depth = (world - world.mean(axis=0) + first.joints.mean(axis=0) @ mirror + t)[:, 2]
            if not np.all(depth > 0):
                raise ValueError("the hand would lie behind the camera")
            rays = np.column_stack([(pixels[:, 0] - camera.cx) / camera.fx,
                                    (pixels[:, 1] - camera.cy) / camera.fy,
                                    np.ones(len(pixels))])
            fit = self.fitter.fit((rays * depth[:, None] - t) @ mirror, scale=first.scale)
            joints = fit.joints @ mirror
            t = solve_translation(joints, pixels, camera)
        except ValueError as exc:  # LandmarkError included
            raise LandmarkError(str(exc)) from None
        # The residual against the detector's own metric landmarks (centroids aligned).
        offset = (world - world.mean(axis=0)) - (joints - joints.mean(axis=0))
        fit.residual_m = float(np.linalg.norm(offset, axis=1).mean())
        return self._result(box, fit, mirror, joints + t, fit.vertices @ mirror + t, t,
                            pixels, camera)

    def _result(
        self,
        box: HandBox,
        fit: AnnyHandFit,
        mirror: np.ndarray,
        joints: np.ndarray,
        vertices: np.ndarray,
        t: np.ndarray,
        pixels: np.ndarray,
        camera: CameraIntrinsics,
    ) -> HandResult:
        keypoints = project_points(joints, camera)
        residual_px = float(np.linalg.norm(keypoints - pixels, axis=1).mean())
        # Right-hand parameters: for a left hand, those of its mirror image.
        params = np.concatenate([
            [fit.scale],
            fit.finger_lengths,
            fit.palm_lengths,
            matrix_to_rotvec(np.concatenate([fit.orientation[None], fit.rotations])).reshape(-1),
        ]).astype(np.float32)
        return HandResult(
            side=box.side,
            score=float(box.score),
            box=box.xyxy,
            keypoints_2d=keypoints.astype(np.float32),
            joints=joints.astype(np.float32),
            vertices=vertices.astype(np.float32),
            cam_t=mirror @ fit.translation + t,
            wrist_rotation=mirror @ fit.wrist_rotation @ mirror,
            model=MODEL_ANNY_HAND,
            model_params=params,
            extras={FIT_RESIDUAL_M: np.float32(fit.residual_m),
                    FIT_RESIDUAL_PX: np.float32(residual_px)},
        )

    def _warn(self, message: str, kind: str) -> None:
        """Log ``message``, at most once per :data:`WARNING_INTERVAL_S` for each ``kind``."""
        now = time.monotonic()
        if now - self._warned_at.get(kind, -float("inf")) >= WARNING_INTERVAL_S:
            self._warned_at[kind] = now
            LOG.warning(message)

    def process(
        self,
        image_rgb: np.ndarray,
        boxes: Sequence[HandBox],
        intrinsics: CameraIntrinsics | np.ndarray | None = None,
    ) -> list[HandResult]:
        """Fit every box's landmarks; boxes that cannot be fitted are skipped with a warning.

        ``self.skipped`` lists, for the last call, why each skipped box was skipped (the log
        repeats a kind of problem at most every :data:`WARNING_INTERVAL_S` seconds).
        """
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        camera = resolve_intrinsics(intrinsics, width, height)
        self.timings = StageTimings(hands=len(boxes))
        self.skipped = []
        start = time.perf_counter()
        results = []
        for index, box in enumerate(boxes):
            try:
                results.append(self.fit_box(box, camera))
            except LandmarkError as exc:
                self.skipped.append(f"hand {index} ({box.side}): {exc}")
                self._warn(f"skipped hand {index} ({box.side}): {exc}", str(exc)[:40])
        self.timings.fit_ms = 1e3 * (time.perf_counter() - start)
        return results
