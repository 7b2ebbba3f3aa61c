"""TF frames of hand wrists (``tf2_msgs/TFMessage`` on ``/tf``).

Published directly as the message ``tf2_ros.TransformBroadcaster`` would send, so both
transports share it: parent = the image's optical frame, stamp = the image's stamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fasthmr_ros.pipeline.results import HandResult
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
    store = store if store is not None else messages.typestore()
    types = store.types
    transforms = []
    for result, hand_id in zip(results, hand_ids, strict=True):
        wrist = np.asarray(result.joints, dtype=np.float64)[0]
        transforms.append(
            types["geometry_msgs/msg/TransformStamped"](
                header=header,
                child_frame_id=wrist_frame_id(hand_id, prefix),
                transform=types["geometry_msgs/msg/Transform"](
                    translation=types["geometry_msgs/msg/Vector3"](
                        x=float(wrist[0]), y=float(wrist[1]), z=float(wrist[2])
                    ),
                    rotation=rotation_to_quaternion(result.wrist_rotation, store),
                ),
            )
        )
    return types[TF_MESSAGE](transforms=transforms)
