"""The hand mesh node: the mesh node core in its hand configuration.

Subscriptions (relative to the node's namespace): ``image`` or ``image/compressed``,
``camera_info`` (optional), ``hand_detections`` (``HandDetectionArray``, ``detector: external``
only). Publications: ``hands`` (``HandMeshArray``), ``hands/markers``, ``hands/topology``
(transient local), ``hands/debug_image`` (optional), ``/tf`` wrist frames (optional),
``/diagnostics``. See :mod:`fasthmr_ros.ros.mesh_node` for everything the two nodes share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.overlay import draw_hands
from fasthmr_ros.pipeline.results import CameraIntrinsics, HandResult
from fasthmr_ros.ros.hand_messages import (
    HAND_DETECTION_ARRAY,
    HAND_MESH_ARRAY,
    boxes_from_detections,
    hand_ids,
    hand_mesh_array_message,
)
from fasthmr_ros.ros.mesh_node import (
    MAX_WARNING_KEYS,
    BoxDetector,
    Frame,
    FrameTimings,
    LatestFrameSlot,
    MeshNode,
    MeshPipeline,
    NodeKind,
    StampPairing,
    select_boxes,
)
from fasthmr_ros.ros.parameters import ParameterSet
from fasthmr_ros.ros.tf_frames import wrist_transforms
from fasthmr_ros.ros.transport import Transport

#: Default node name (``ros2 run fasthmr_ros hand_mesh_node``).
NODE_NAME = "hand_mesh_node"

DETECTIONS_TOPIC = "hand_detections"
HANDS_TOPIC = "hands"
MARKERS_TOPIC = "hands/markers"
TOPOLOGY_TOPIC = "hands/topology"
DEBUG_IMAGE_TOPIC = "hands/debug_image"

#: What the hand node needs from its pipeline and detector (the core's protocols).
HandPipeline = MeshPipeline
HandDetector = BoxDetector


def _draw(
    bgr: np.ndarray, results: Sequence[HandResult], model: MeshModelInfo,
    camera: CameraIntrinsics,
) -> np.ndarray:
    return draw_hands(bgr, results, model.faces, camera)


#: The hand configuration of the mesh node core.
HAND_NODE = NodeKind(
    name="hand",
    node_name=NODE_NAME,
    output=HANDS_TOPIC,
    output_msgtype=HAND_MESH_ARRAY,
    array_message=hand_mesh_array_message,
    result_ids=hand_ids,
    transforms=wrist_transforms,
    draw=_draw,
    max_parameter="max_hands",
    detections_topic=DETECTIONS_TOPIC,
    detections_msgtype=HAND_DETECTION_ARRAY,
    parse_detections=boxes_from_detections,
)


class HandMeshNode(MeshNode):
    """The mesh node core configured for hands (:data:`HAND_NODE`).

    Args:
        transport: publishers, subscriptions, logger and clock.
        parameters: validated hand node parameters.
        pipeline: the hand mesh pipeline (image + boxes -> hand results).
        model: the pipeline's mesh model (``pipeline.info``): its topology is published and
            its triangles (right-hand winding) drawn in markers and debug images.
        detector: the box source; ``None`` when ``detector`` is ``external``.
        clock: monotonic clock in seconds (for rates, latency and drops).

    """

    def __init__(
        self,
        transport: Transport,
        parameters: ParameterSet,
        pipeline: MeshPipeline,
        model: MeshModelInfo,
        detector: BoxDetector | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(transport, parameters, HAND_NODE, pipeline, model, detector, clock)


#: The hand node's names, including the core's that its users import from here.
__all__ = [
    "DEBUG_IMAGE_TOPIC", "DETECTIONS_TOPIC", "HANDS_TOPIC", "HAND_NODE", "MARKERS_TOPIC",
    "MAX_WARNING_KEYS", "NODE_NAME", "TOPOLOGY_TOPIC", "Frame", "FrameTimings",
    "HandDetector", "HandMeshNode", "HandPipeline", "LatestFrameSlot", "StampPairing",
    "select_boxes",
]
