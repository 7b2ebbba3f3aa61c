"""TF frames of hand wrists and body pelvises (``tf2_msgs/TFMessage`` on ``/tf``).

Published directly as the message ``tf2_ros.TransformBroadcaster`` would send, so both
transports share it: parent = the image's optical frame, stamp = the image's stamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fasthmr_ros.pipeline.results import BodyResult, HandResult
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.mesh_messages import rotation_to_quaternion

TF_MESSAGE = "tf2_msgs/msg/TFMessage"
#: The topic ``tf2_ros`` listens on (absolute: never inside the node's namespace).
TF_TOPIC = "/tf"


def wrist_frame_id(hand_id: str, prefix: str = "") -> str:
    """Return the TF child frame of a hand's wrist: ``<prefix>hand_<id>_wrist``."""
    return f"{prefix}hand_{hand_id}_wrist"


def wrist_transforms(
    header: Any,
    results: Sequence[HandResult],
    hand_ids: Sequence[str],
    prefix: str = "",
    store: Any | None = None,
) -> Any:
    """Return a ``TFMessage`` with one transform per hand: camera frame -> wrist frame."""
    return _transforms(header, [
        (wrist_frame_id(hand_id, prefix), np.asarray(result.joints)[0], result.wrist_rotation)
        for result, hand_id in zip(results, hand_ids, strict=True)
    ], store)


def pelvis_frame_id(body_id: str, prefix: str = "") -> str:
    """Return the TF child frame of a body's pelvis: ``<prefix>body_<id>_pelvis``."""
    return f"{prefix}body_{body_id}_pelvis"


def pelvis_transforms(
    header: Any,
    results: Sequence[BodyResult],
    body_ids: Sequence[str],
    prefix: str = "",
    store: Any | None = None,
) -> Any:
    """Return a ``TFMessage`` with one transform per body: camera frame -> pelvis frame.

    The pelvis frame is the body's root joint (``BodyResult.root_position``) with
    ``root_rotation``.
    """
    return _transforms(header, [
        (pelvis_frame_id(body_id, prefix), result.root_position, result.root_rotation)
        for result, body_id in zip(results, body_ids, strict=True)
    ], store)


def _transforms(header: Any, frames: Sequence[tuple[str, np.ndarray, np.ndarray]],
                store: Any | None) -> Any:
    store = store if store is not None else messages.typestore()
    types = store.types
    transforms = []
    for child, position, rotation in frames:
        x, y, z = (float(v) for v in np.asarray(position, dtype=np.float64))
        transforms.append(
            types["geometry_msgs/msg/TransformStamped"](
                header=header,
                child_frame_id=child,
                transform=types["geometry_msgs/msg/Transform"](
                    translation=types["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
                    rotation=rotation_to_quaternion(rotation, store),
                ),
            )
        )
    return types[TF_MESSAGE](transforms=transforms)
