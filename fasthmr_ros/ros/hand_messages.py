"""Hand results to ``fasthmr_ros`` messages (HandMeshArray, MeshTopology) and detections back.

Conversions only: no I/O, no transport. Every array is checked for its documented shape so a
wrong result is reported here and not as a garbled message downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from fasthmr_ros.models.constants import NUM_BETAS, NUM_HAND_POSE_JOINTS, NUM_JOINTS
from fasthmr_ros.models.mesh_model import MODEL_MANO
from fasthmr_ros.models.rotation import matrix_to_quaternion, quaternion_to_rotvec
from fasthmr_ros.pipeline.results import (
    FIT_RESIDUAL_M,
    FIT_RESIDUAL_PX,
    LEFT,
    RIGHT,
    HandBox,
    HandResult,
)
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.mesh_messages import (
    detection_fields,
    finite,
    fit_residual,
    mesh_vertices,
    pose,
    shaped,
    vector3,
)

HAND_MESH = "fasthmr_ros/msg/HandMesh"
HAND_MESH_ARRAY = "fasthmr_ros/msg/HandMeshArray"
HAND_DETECTION_ARRAY = "fasthmr_ros/msg/HandDetectionArray"


def side_constant(side: str, msgtype: str = HAND_MESH, store: Any | None = None) -> int:
    """Return the ``SIDE_LEFT`` / ``SIDE_RIGHT`` constant of ``msgtype`` for ``side``."""
    cls = (store if store is not None else messages.typestore()).types[msgtype]
    if side == LEFT:
        return int(cls.SIDE_LEFT)
    if side == RIGHT:
        return int(cls.SIDE_RIGHT)
    raise ValueError(f"hand side must be 'left' or 'right', got {side!r}")


def side_name(constant: int, msgtype: str = HAND_MESH, store: Any | None = None) -> str:
    """Return ``"left"`` or ``"right"`` for a message's side constant."""
    cls = (store if store is not None else messages.typestore()).types[msgtype]
    if constant == cls.SIDE_LEFT:
        return LEFT
    if constant == cls.SIDE_RIGHT:
        return RIGHT
    raise ValueError(
        f"side must be SIDE_LEFT ({cls.SIDE_LEFT}) or SIDE_RIGHT ({cls.SIDE_RIGHT}), "
        f"got {constant}"
    )


def hand_ids(results: Sequence[HandResult]) -> list[str]:
    """Return the message id of each hand.

    A tracked hand keeps its track id; without tracking, the k-th hand of a side in the frame
    is ``"<side>_<k>"`` (so one left and one right hand keep their ids from frame to frame).
    """
    ids = []
    per_side = {LEFT: 0, RIGHT: 0}
    for result in results:
        if result.track_id is not None:
            ids.append(str(result.track_id))
        else:
            ids.append(f"{result.side}_{per_side[result.side]}")
            per_side[result.side] += 1
    return ids


def hand_mesh_message(
    result: HandResult, hand_id: str, store: Any | None = None, num_vertices: int | None = None
) -> Any:
    """Convert one :class:`HandResult` to a ``fasthmr_ros/HandMesh``.

    Args:
        result: the hand.
        hand_id: its message id (see :func:`hand_ids`).
        store: typestore (the package one when omitted).
        num_vertices: the topology's vertex count; when given, the result must have it.

    MANO fields are filled only for MANO results (else empty); ``model_params`` carries the
    model's own parameters; the fit residuals are -1 for results that are not landmark fits.

    Raises:
        ValueError: when an array has the wrong shape or a non-finite value.

    """
    store = store if store is not None else messages.typestore()
    types = store.types
    joints = finite(shaped(result.joints, (NUM_JOINTS, 3), "joints"), "joints")
    vertices = mesh_vertices(result.vertices, num_vertices, "hand")
    keypoints = finite(shaped(result.keypoints_2d, (NUM_JOINTS, 2), "keypoints_2d"),
                        "keypoints_2d")
    box = finite(shaped(result.box, (4,), "box"), "box")
    cam_t = finite(shaped(result.cam_t, (3,), "cam_t"), "cam_t")
    wrist_rotation = shaped(result.wrist_rotation, (3, 3), "wrist_rotation")
    model_params = finite(np.asarray(result.model_params, dtype=np.float32).reshape(-1),
                           "model_params")
    empty = np.zeros(0, dtype=np.float32)
    if result.model == MODEL_MANO:
        global_orient = shaped(result.global_orient, (3, 3), "global_orient")
        hand_pose = shaped(result.hand_pose, (NUM_HAND_POSE_JOINTS, 3, 3), "hand_pose")
        betas = finite(shaped(result.betas, (NUM_BETAS,), "betas"), "betas")
        # One conversion for the 16 MANO rotations and the wrist orientation.
        quaternions = matrix_to_quaternion(
            np.concatenate([global_orient[None], hand_pose, wrist_rotation[None]], axis=0)
        )
        rotvecs = quaternion_to_rotvec(quaternions[:-1]).astype(np.float32)
        wrist_quat = quaternions[-1]
        mano_orient = rotvecs[0]
        mano_pose = rotvecs[1:].reshape(-1)
        mano_betas = betas.astype(np.float32)
    else:
        wrist_quat = matrix_to_quaternion(wrist_rotation)
        mano_orient, mano_pose, mano_betas = empty, empty, empty
    point_type = types["geometry_msgs/msg/Point"]
    return types[HAND_MESH](
        model=str(result.model),
        id=str(hand_id),
        side=side_constant(result.side, HAND_MESH, store),
        score=float(result.score),
        box=box.astype(np.float32),
        keypoints_2d=keypoints.astype(np.float32).reshape(-1),
        joints=[point_type(x=x, y=y, z=z) for x, y, z in joints.tolist()],
        vertices=vertices,
        wrist_pose=pose(joints[0], None, store, wrist_quat),
        camera_translation=vector3(cam_t, store),
        global_orient=mano_orient,
        hand_pose=mano_pose,
        betas=mano_betas,
        model_params=model_params,
        fit_residual_m=fit_residual(result.extras, FIT_RESIDUAL_M),
        fit_residual_px=fit_residual(result.extras, FIT_RESIDUAL_PX),
    )


def hand_mesh_array_message(
    header: Any,
    results: Sequence[HandResult],
    store: Any | None = None,
    num_vertices: int | None = None,
) -> Any:
    """Convert all hands of one image to a ``fasthmr_ros/HandMeshArray`` with ``header``.

    ``num_vertices`` (the topology's vertex count), when given, is checked for every hand.
    """
    store = store if store is not None else messages.typestore()
    ids = hand_ids(results)
    return store.types[HAND_MESH_ARRAY](
        header=header,
        hands=[hand_mesh_message(r, i, store, num_vertices)
               for r, i in zip(results, ids, strict=True)],
    )


def boxes_from_detections(msg: Any, store: Any | None = None) -> tuple[list[HandBox], list[str]]:
    """Convert a ``HandDetectionArray`` to :class:`HandBox` objects.

    Returns:
        The valid boxes and, for each detection that was skipped, the reason.

    """
    store = store if store is not None else messages.typestore()
    boxes: list[HandBox] = []
    problems: list[str] = []
    for index, det in enumerate(msg.detections):
        try:
            side = side_name(int(det.side), "fasthmr_ros/msg/HandDetection", store)
            box, score, landmarks = detection_fields(det, NUM_JOINTS)
            boxes.append(HandBox(*box, side=side, score=score, keypoints_2d=landmarks,
                                 source="external"))
        except ValueError as exc:
            problems.append(f"detection {index}: {exc}")
    return boxes, problems


def hands_from_message(msg: Any, store: Any | None = None) -> tuple[list[HandResult], list[str]]:
    """Convert a ``HandMeshArray`` back to :class:`HandResult` objects (for hand attachment).

    Joints, 2D keypoints, side, score, box, the wrist pose, the model and its parameters come
    back; ``vertices`` stay empty (``(0, 3)``) and MANO rotations are not rebuilt.

    Returns:
        The hands and, for each hand that was skipped, the reason.

    """
    store = store if store is not None else messages.typestore()
    hands: list[HandResult] = []
    problems: list[str] = []
    for index, hand in enumerate(msg.hands):
        try:
            joints = finite(np.array([[p.x, p.y, p.z] for p in hand.joints], dtype=np.float64)
                            .reshape(-1, 3), "joints")
            keypoints = finite(np.asarray(hand.keypoints_2d, dtype=np.float64), "keypoints_2d")
            q = hand.wrist_pose.orientation
            quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
            if not (np.isfinite(quat).all() and np.linalg.norm(quat) > 1e-6):
                raise ValueError("the wrist orientation is not a rotation")
            t = hand.camera_translation
            hands.append(HandResult(
                side=side_name(int(hand.side), HAND_MESH, store),
                score=float(hand.score),
                box=np.asarray(hand.box, dtype=np.float64),
                keypoints_2d=shaped(keypoints.reshape(-1, 2), (NUM_JOINTS, 2), "keypoints_2d"),
                joints=shaped(joints, (NUM_JOINTS, 3), "joints"),
                vertices=np.zeros((0, 3), dtype=np.float32),
                cam_t=np.array([t.x, t.y, t.z], dtype=np.float64),
                wrist_rotation=Rotation.from_quat(quat).as_matrix(),
                model=str(hand.model),
                model_params=np.asarray(hand.model_params, dtype=np.float32),
            ))
        except ValueError as exc:
            problems.append(f"hand {index}: {exc}")
    return hands, problems
