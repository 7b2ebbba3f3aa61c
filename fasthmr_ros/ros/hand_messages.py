"""Hand results to ``fasthmr_ros`` messages (HandMeshArray, MeshTopology) and detections back.

Conversions only: no I/O, no transport. Every array is checked for its documented shape so a
wrong result is reported here and not as a garbled message downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from fasthmr_ros.models.constants import (
    HAND_SKELETON,
    JOINT_NAMES,
    NUM_BETAS,
    NUM_HAND_POSE_JOINTS,
    NUM_JOINTS,
    NUM_VERTICES,
)
from fasthmr_ros.pipeline.results import LEFT, RIGHT, HandBox, HandResult
from fasthmr_ros.ros import messages

HAND_MESH = "fasthmr_ros/msg/HandMesh"
HAND_MESH_ARRAY = "fasthmr_ros/msg/HandMeshArray"
MESH_TOPOLOGY = "fasthmr_ros/msg/MeshTopology"
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


def rotation_to_quaternion(rotation: np.ndarray, store: Any | None = None) -> Any:
    """Return a ``geometry_msgs/Quaternion`` for a 3x3 rotation matrix."""
    store = store if store is not None else messages.typestore()
    x, y, z, w = Rotation.from_matrix(_shaped(rotation, (3, 3), "rotation")).as_quat()
    return store.types["geometry_msgs/msg/Quaternion"](x=float(x), y=float(y), z=float(z),
                                                       w=float(w))


def point(xyz: Sequence[float] | np.ndarray, store: Any | None = None) -> Any:
    """Return a ``geometry_msgs/Point``."""
    store = store if store is not None else messages.typestore()
    x, y, z = (float(v) for v in xyz)
    return store.types["geometry_msgs/msg/Point"](x=x, y=y, z=z)


def hand_mesh_message(result: HandResult, hand_id: str, store: Any | None = None) -> Any:
    """Convert one :class:`HandResult` to a ``fasthmr_ros/HandMesh``.

    Raises:
        ValueError: when an array has the wrong shape or a non-finite value.

    """
    store = store if store is not None else messages.typestore()
    types = store.types
    joints = _finite(_shaped(result.joints, (NUM_JOINTS, 3), "joints"), "joints")
    vertices = _finite(_shaped(result.vertices, (NUM_VERTICES, 3), "vertices"), "vertices")
    keypoints = _finite(_shaped(result.keypoints_2d, (NUM_JOINTS, 2), "keypoints_2d"),
                        "keypoints_2d")
    box = _finite(_shaped(result.box, (4,), "box"), "box")
    cam_t = _finite(_shaped(result.cam_t, (3,), "cam_t"), "cam_t")
    global_orient = _shaped(result.global_orient, (3, 3), "global_orient")
    hand_pose = _shaped(result.hand_pose, (NUM_HAND_POSE_JOINTS, 3, 3), "hand_pose")
    betas = _finite(_shaped(result.betas, (NUM_BETAS,), "betas"), "betas")
    wrist_rotation = _shaped(result.wrist_rotation, (3, 3), "wrist_rotation")
    # One conversion for the 16 MANO rotations and the wrist orientation.
    rotations = Rotation.from_matrix(
        np.concatenate([global_orient[None], hand_pose, wrist_rotation[None]], axis=0)
    )
    rotvecs = rotations[:-1].as_rotvec()
    qx, qy, qz, qw = (float(v) for v in rotations[-1].as_quat())
    point_type = types["geometry_msgs/msg/Point"]
    wrist = joints[0]
    return types[HAND_MESH](
        id=str(hand_id),
        side=side_constant(result.side, HAND_MESH, store),
        score=float(result.score),
        box=box.astype(np.float32),
        keypoints_2d=keypoints.astype(np.float32).reshape(-1),
        joints=[point_type(x=x, y=y, z=z) for x, y, z in joints.tolist()],
        vertices=vertices.astype(np.float32).reshape(-1),
        wrist_pose=types["geometry_msgs/msg/Pose"](
            position=point_type(x=float(wrist[0]), y=float(wrist[1]), z=float(wrist[2])),
            orientation=types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        ),
        camera_translation=types["geometry_msgs/msg/Vector3"](
            x=float(cam_t[0]), y=float(cam_t[1]), z=float(cam_t[2])
        ),
        global_orient=rotvecs[0].astype(np.float32),
        hand_pose=rotvecs[1:].astype(np.float32).reshape(-1),
        betas=betas.astype(np.float32),
    )


def hand_mesh_array_message(
    header: Any, results: Sequence[HandResult], store: Any | None = None
) -> Any:
    """Convert all hands of one image to a ``fasthmr_ros/HandMeshArray`` with ``header``."""
    store = store if store is not None else messages.typestore()
    ids = hand_ids(results)
    return store.types[HAND_MESH_ARRAY](
        header=header,
        hands=[hand_mesh_message(r, i, store) for r, i in zip(results, ids, strict=True)],
    )


def mano_topology_message(
    faces: np.ndarray, header: Any, store: Any | None = None
) -> Any:
    """Build the MANO ``MeshTopology`` (right-hand winding, OpenPose joints and bones)."""
    store = store if store is not None else messages.typestore()
    cls = store.types[MESH_TOPOLOGY]
    tri = np.asarray(faces)
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tri.shape}")
    if tri.size and (tri.min() < 0 or tri.max() >= NUM_VERTICES):
        raise ValueError(
            f"faces index vertices {tri.min()}..{tri.max()}, outside 0..{NUM_VERTICES - 1}"
        )
    return cls(
        header=header,
        model=cls.MODEL_MANO,
        num_vertices=NUM_VERTICES,
        faces=tri.astype(np.uint32).reshape(-1),
        joint_names=list(JOINT_NAMES),
        bones=np.asarray(HAND_SKELETON, dtype=np.uint32).reshape(-1),
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
            keypoints = np.asarray(det.keypoints_2d, dtype=np.float64)
            if keypoints.size == 0:
                landmarks = None
            elif keypoints.size == 2 * NUM_JOINTS:
                landmarks = keypoints.reshape(NUM_JOINTS, 2)
            else:
                raise ValueError(
                    f"keypoints_2d must be empty or hold {2 * NUM_JOINTS} values, got "
                    f"{keypoints.size}"
                )
            x1, y1, x2, y2 = (float(v) for v in np.asarray(det.box, dtype=np.float64))
            boxes.append(HandBox(x1, y1, x2, y2, side=side, score=float(det.score),
                                 keypoints_2d=landmarks, source="external"))
        except ValueError as exc:
            problems.append(f"detection {index}: {exc}")
    return boxes, problems


def _shaped(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"hand result {name} must have shape {shape}, got {array.shape}")
    return array


def _finite(array: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"hand result {name} has non-finite values")
    return array
