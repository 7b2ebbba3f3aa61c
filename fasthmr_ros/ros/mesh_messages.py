"""What hand and body messages share: MeshTopology, fit residuals, body meshes, geometry.

Conversions only: no I/O, no transport. ``MeshTopology`` is built from a model's
:class:`~fasthmr_ros.models.mesh_model.MeshModelInfo` (one builder for MANO, SMPL and Anny);
per-frame messages are sized by that topology, carry the SMPL/MANO fields only for those models
(else empty) and the model's own parameters in ``model_params``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fasthmr_ros.models.mesh_model import MODEL_SMPL, MeshModelInfo
from fasthmr_ros.models.rotation import matrix_to_quaternion, quaternion_to_rotvec
from fasthmr_ros.pipeline.pose_landmarks import NUM_LANDMARKS
from fasthmr_ros.pipeline.results import (
    FIT_RESIDUAL_M,
    FIT_RESIDUAL_PX,
    BodyResult,
    PersonBox,
)
from fasthmr_ros.ros import messages

MESH_TOPOLOGY = "fasthmr_ros/msg/MeshTopology"
BODY_MESH = "fasthmr_ros/msg/BodyMesh"
BODY_MESH_ARRAY = "fasthmr_ros/msg/BodyMeshArray"
PERSON_DETECTION_ARRAY = "fasthmr_ros/msg/PersonDetectionArray"


#: SMPL's body pose joints and shape coefficients (the sizes of BodyMesh's SMPL fields).
SMPL_POSE_JOINTS = 23
SMPL_BETAS = 10


def topology_message(info: MeshModelInfo, header: Any, store: Any | None = None) -> Any:
    """Build the ``MeshTopology`` of a mesh model (hand or body) from its :class:`MeshModelInfo`.

    Raises:
        ValueError: when the model name is not one of the message's ``MODEL_*`` names.

    """
    store = store if store is not None else messages.typestore()
    cls = store.types[MESH_TOPOLOGY]
    known = {str(v) for k, v in vars(cls).items() if k.startswith("MODEL_")}
    if info.name not in known:
        raise ValueError(f"mesh model {info.name!r} is not a MeshTopology model name "
                         f"({sorted(known)}); add it to msg/MeshTopology.msg")
    return cls(
        header=header,
        model=info.name,
        num_vertices=int(info.num_vertices),
        faces=np.asarray(info.faces).astype(np.uint32).reshape(-1),
        joint_names=list(info.joint_names),
        bones=np.asarray(info.bones, dtype=np.uint32).reshape(-1),
        parameter_names=list(info.parameter_names),
        licence=str(info.licence),
    )


def detection_fields(
    det: Any, num_keypoints: int
) -> tuple[tuple[float, float, float, float], float, np.ndarray | None]:
    """Read and check the fields every detection message shares (hands and people).

    Returns:
        ``(x1, y1, x2, y2)``, the score, and the ``(num_keypoints, 2)`` keypoints or ``None``
        when ``keypoints_2d`` is empty. The box itself is checked by the box class.

    Raises:
        ValueError: naming the bad field: a score outside [0, 1] (or not finite), keypoints
            of the wrong length or not finite.

    """
    score = float(det.score)
    if not 0.0 <= score <= 1.0:  # also false for NaN
        raise ValueError(f"score must be in [0, 1], got {score}")
    keypoints = np.asarray(det.keypoints_2d, dtype=np.float64)
    if keypoints.size == 0:
        landmarks = None
    elif keypoints.size == 2 * num_keypoints:
        if not np.isfinite(keypoints).all():
            raise ValueError("keypoints_2d has non-finite values")
        landmarks = keypoints.reshape(num_keypoints, 2)
    else:
        raise ValueError(f"keypoints_2d must be empty or hold {2 * num_keypoints} values, got "
                         f"{keypoints.size}")
    x1, y1, x2, y2 = (float(v) for v in np.asarray(det.box, dtype=np.float64).reshape(4))
    return (x1, y1, x2, y2), score, landmarks


def boxes_from_person_detections(
    msg: Any, store: Any | None = None
) -> tuple[list[PersonBox], list[str]]:
    """Convert a ``PersonDetectionArray`` to :class:`PersonBox` objects (``source="external"``).

    ``store`` is accepted for the node core's parser signature (nothing here needs a type).

    Returns:
        The valid boxes and, for each detection that was skipped, the reason (a non-finite or
        inverted box, a score outside [0, 1], ``keypoints_2d`` neither empty nor 33 points).

    """
    del store
    boxes: list[PersonBox] = []
    problems: list[str] = []
    for index, det in enumerate(msg.detections):
        try:
            box, score, keypoints = detection_fields(det, NUM_LANDMARKS)
            boxes.append(PersonBox(*box, score=score, keypoints_2d=keypoints,
                                   source="external"))
        except ValueError as exc:
            problems.append(f"person detection {index}: {exc}")
    return boxes, problems


def fit_residual(extras: dict[str, Any], key: str) -> float:
    """Return a result's fit residual ``extras[key]`` for a message: -1 when it is not a fit."""
    value = extras.get(key)
    if value is None:
        return -1.0
    value = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    return value if np.isfinite(value) and value >= 0 else -1.0


def rotation_to_quaternion(
    rotation: np.ndarray | None, store: Any | None = None, xyzw: np.ndarray | None = None
) -> Any:
    """Return a ``geometry_msgs/Quaternion`` for a 3x3 rotation matrix (or its ``xyzw``)."""
    store = store if store is not None else messages.typestore()
    if xyzw is None:
        xyzw = matrix_to_quaternion(shaped(rotation, (3, 3), "rotation"))
    x, y, z, w = (float(v) for v in xyzw)
    return store.types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)


def point(xyz: Sequence[float] | np.ndarray, store: Any | None = None) -> Any:
    """Return a ``geometry_msgs/Point``."""
    store = store if store is not None else messages.typestore()
    x, y, z = (float(v) for v in xyz)
    return store.types["geometry_msgs/msg/Point"](x=x, y=y, z=z)


def pose(
    position: np.ndarray, rotation: np.ndarray | None, store: Any | None = None,
    xyzw: np.ndarray | None = None,
) -> Any:
    """Return a ``geometry_msgs/Pose`` from a position and a 3x3 rotation (or its ``xyzw``)."""
    store = store if store is not None else messages.typestore()
    return store.types["geometry_msgs/msg/Pose"](
        position=point(position, store),
        orientation=rotation_to_quaternion(rotation, store, xyzw),
    )


def vector3(xyz: np.ndarray, store: Any | None = None) -> Any:
    """Return a ``geometry_msgs/Vector3``."""
    store = store if store is not None else messages.typestore()
    x, y, z = (float(v) for v in xyz)
    return store.types["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)


def mesh_vertices(value: Any, num_vertices: int | None, what: str) -> np.ndarray:
    """Check ``(V, 3)`` finite vertices (``V = num_vertices`` when given); return them flat."""
    # One float32 copy, checked there: a value too large for float32 becomes infinite.
    with np.errstate(over="ignore"):
        vertices = np.array(value, dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or (
        num_vertices is not None and len(vertices) != num_vertices
    ):
        expected = f"({num_vertices}, 3)" if num_vertices is not None else "(V, 3)"
        raise ValueError(f"{what} vertices must have shape {expected} (the topology's vertex "
                         f"count), got {vertices.shape}")
    return finite(vertices, f"{what} vertices").reshape(-1)


def body_mesh_message(
    result: BodyResult, body_id: str, store: Any | None = None, num_vertices: int | None = None
) -> Any:
    """Convert one :class:`BodyResult` to a ``fasthmr_ros/BodyMesh``.

    SMPL fields are filled only for SMPL results (else empty); ``model_params`` carries the
    model's own parameters; the fit residuals are -1 for results that are not landmark fits.

    Raises:
        ValueError: when an array has the wrong shape or a non-finite value.

    """
    store = store if store is not None else messages.typestore()
    types = store.types
    joints = finite(np.asarray(result.joints, dtype=np.float64), "body joints")
    if joints.ndim != 2 or joints.shape[1] != 3:
        raise ValueError(f"body joints must have shape (J, 3), got {joints.shape}")
    keypoints = finite(shaped(result.keypoints_2d, (len(joints), 2), "body keypoints_2d"),
                       "body keypoints_2d")
    empty = np.zeros(0, dtype=np.float32)
    orient, body_pose, betas = empty, empty, empty
    root_rotation = shaped(result.root_rotation, (3, 3), "root_rotation")
    root_xyzw = None
    if result.model == MODEL_SMPL:
        # One conversion for the 24 SMPL rotations and the root orientation.
        quaternions = matrix_to_quaternion(np.concatenate([
            shaped(result.global_orient, (3, 3), "body global_orient")[None],
            shaped(result.body_pose, (SMPL_POSE_JOINTS, 3, 3), "body body_pose"),
            root_rotation[None],
        ]))
        rotvecs = quaternion_to_rotvec(quaternions[:-1]).astype(np.float32)
        root_xyzw = quaternions[-1]
        orient, body_pose = rotvecs[0], rotvecs[1:].reshape(-1)
        betas = finite(shaped(result.betas, (SMPL_BETAS,), "body betas"),
                       "body betas").astype(np.float32)
    point_type = types["geometry_msgs/msg/Point"]
    return types[BODY_MESH](
        model=str(result.model),
        id=str(body_id),
        score=float(result.score),
        box=finite(shaped(result.box, (4,), "body box"), "body box").astype(np.float32),
        keypoints_2d=keypoints.astype(np.float32).reshape(-1),
        joints=[point_type(x=x, y=y, z=z) for x, y, z in joints.tolist()],
        vertices=mesh_vertices(result.vertices, num_vertices, "body"),
        root_pose=pose(joints[result.root_joint], root_rotation, store, root_xyzw),
        camera_translation=vector3(finite(shaped(result.cam_t, (3,), "cam_t"), "cam_t"), store),
        global_orient=orient,
        body_pose=body_pose,
        betas=betas,
        model_params=finite(np.asarray(result.model_params, dtype=np.float32).reshape(-1),
                            "model_params"),
        fit_residual_m=fit_residual(result.extras, FIT_RESIDUAL_M),
        fit_residual_px=fit_residual(result.extras, FIT_RESIDUAL_PX),
    )


def body_ids(results: Sequence[BodyResult]) -> list[str]:
    """Message id of each body: its track id when tracked, else ``"body_<k>"``."""
    return [str(r.track_id) if r.track_id is not None else f"body_{k}"
            for k, r in enumerate(results)]


def body_mesh_array_message(
    header: Any,
    results: Sequence[BodyResult],
    store: Any | None = None,
    num_vertices: int | None = None,
) -> Any:
    """Convert all bodies of one image to a ``fasthmr_ros/BodyMeshArray`` with ``header``."""
    store = store if store is not None else messages.typestore()
    return store.types[BODY_MESH_ARRAY](
        header=header,
        bodies=[body_mesh_message(r, i, store, num_vertices)
                for r, i in zip(results, body_ids(results), strict=True)],
    )


def shaped(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Return ``value`` as float64 of ``shape``; a ValueError naming ``name`` otherwise."""
    if value is None:
        raise ValueError(f"result {name} is missing (expected shape {shape})")
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"result {name} must have shape {shape}, got {array.shape}")
    return array


def finite(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array``; a ValueError naming ``name`` when it holds NaN or infinity."""
    if not np.isfinite(array).all():
        raise ValueError(f"result {name} has non-finite values")
    return array
