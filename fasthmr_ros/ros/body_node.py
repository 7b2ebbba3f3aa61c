"""The body mesh node: the mesh node core in its body configuration.

Subscriptions (relative to the node's namespace): ``image`` or ``image/compressed``,
``camera_info`` (optional), ``person_detections`` (``PersonDetectionArray``, ``detector:
external`` only; paired with images by stamp). Publications: ``bodies`` (``BodyMeshArray``),
``bodies/markers`` (``MarkerArray``: mesh, skeleton and joints per body), ``bodies/topology``
(``MeshTopology`` of the estimator's model, transient local), ``bodies/debug_image``
(optional), ``/tf`` pelvis frames ``<tf_prefix>body_<id>_pelvis`` (optional),
``/diagnostics``. Parameters: :data:`~fasthmr_ros.ros.parameters.BODY_NODE_PARAMETERS`
(``config/bodies.yaml``). See :mod:`fasthmr_ros.ros.mesh_node` for everything it shares with
the hand node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.overlay import draw_bodies
from fasthmr_ros.pipeline.results import BodyResult, CameraIntrinsics
from fasthmr_ros.ros.mesh_messages import (
    BODY_MESH_ARRAY,
    PERSON_DETECTION_ARRAY,
    body_ids,
    body_mesh_array_message,
    boxes_from_person_detections,
)
from fasthmr_ros.ros.mesh_node import BoxDetector, MeshNode, MeshPipeline, NodeKind
from fasthmr_ros.ros.parameters import ParameterError, ParameterSet
from fasthmr_ros.ros.tf_frames import pelvis_transforms
from fasthmr_ros.ros.transport import Transport

#: Default node name (``ros2 run fasthmr_ros body_mesh_node``).
BODY_NODE_NAME = "body_mesh_node"
BODIES_TOPIC = "bodies"
PERSON_DETECTIONS_TOPIC = "person_detections"


def _draw(
    bgr: np.ndarray, results: Sequence[BodyResult], model: MeshModelInfo,
    camera: CameraIntrinsics,
) -> np.ndarray:
    return draw_bodies(bgr, results, model.faces, model.bones, camera)


#: The body configuration of the mesh node core.
BODY_NODE = NodeKind(
    name="body",
    node_name=BODY_NODE_NAME,
    output=BODIES_TOPIC,
    output_msgtype=BODY_MESH_ARRAY,
    array_message=body_mesh_array_message,
    result_ids=body_ids,
    transforms=pelvis_transforms,
    draw=_draw,
    max_parameter="max_people",
    detections_topic=PERSON_DETECTIONS_TOPIC,
    detections_msgtype=PERSON_DETECTION_ARRAY,
    parse_detections=boxes_from_person_detections,
)


class BodyMeshNode(MeshNode):
    """The mesh node core configured for bodies (:data:`BODY_NODE`).

    Args:
        transport: publishers, subscriptions, logger and clock.
        parameters: validated body node parameters.
        pipeline: the body pipeline (image + people -> bodies), e.g.
            :class:`~fasthmr_ros.pipeline.body_pipeline.BodyPipeline`.
        model: the estimator's mesh model (its topology is published).
        detector: the person detector; ``None`` when ``detector`` is ``external``.
        clock: monotonic clock in seconds.

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
        super().__init__(transport, parameters, BODY_NODE, pipeline, model, detector, clock)


def build_body_estimator(params: ParameterSet, log: Any) -> Any:
    """The body estimator named by the ``estimator`` parameter.

    Raises:
        ParameterError: when it is not available or cannot be built as the parameters say.

    """
    from fasthmr_ros.models.anny_body import AnnyAssetsError
    from fasthmr_ros.pipeline.body_estimator import body_estimator_names, create_body_estimator

    name = params["estimator"]
    if name == "landmarks":
        from fasthmr_ros.models.anny_body import AnnyBodyModel

        log.info("bodies: MediaPipe Pose landmarks fitted with the Anny body (CC0 assets; "
                 "no licensed download)")
        try:
            model = AnnyBodyModel.default(params["anny_cache_dir"] or None, log=log.info)
        except AnnyAssetsError as exc:
            raise ParameterError(str(exc)) from exc
        return create_body_estimator("landmarks", model=model)
    if name != "hmr2" or name not in body_estimator_names():
        raise ParameterError(f"estimator {name!r} is not available in this build (available: "
                             f"{', '.join(body_estimator_names())})")
    if not params["checkpoint"]:
        raise ParameterError("estimator hmr2 needs the 'checkpoint' parameter (HMR2.0's "
                             ".ckpt or 4D-Humans' cache folder)")
    from fasthmr_ros.pipeline.hmr2_estimator import Hmr2BodyEstimator
    from fasthmr_ros.ros.hand_setup import load_network

    log.info(f"bodies: the HMR2.0 network from {params['checkpoint']} ({params['engine']}, "
             f"{params['precision']}, {params['device']})")
    return Hmr2BodyEstimator(load_network(params, body=True), device=params["device"])


def build_body_parts(params: ParameterSet, log: Any) -> tuple[Any, Any]:
    """The body pipeline (around the estimator) and the person detector of the parameters.

    With ``detector: external`` the detector is ``None`` (boxes come from
    ``person_detections``); the estimator ``landmarks`` then gets MediaPipe Pose as the
    pipeline's landmarker (Pose inside each box), ``hmr2`` no MediaPipe at all.
    """
    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline

    estimator = build_body_estimator(params, log)
    external = params["detector"] == "external"
    if external and params["estimator"] != "landmarks":
        log.info("bodies: people from PersonDetectionArray messages on person_detections")
        return BodyPipeline(estimator), None
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    try:
        pose = MediaPipePersonDetector(max_people=params["detector_max_people"],
                                       min_confidence=params["detector_confidence"])
    except (ImportError, FileNotFoundError) as exc:
        raise ParameterError(f"the person detector cannot start: {exc}") from exc
    if external:
        log.info("bodies: people from PersonDetectionArray messages on person_detections; "
                 "MediaPipe Pose runs inside each box for the landmark fit")
        return BodyPipeline(estimator, landmarker=pose), None
    return BodyPipeline(estimator), pose


def create_body_node(transport: Transport, params: ParameterSet) -> BodyMeshNode:
    """Build the estimator, pipeline and person detector; return the (not started) node."""
    pipeline, detector = build_body_parts(params, transport.logger)
    return BodyMeshNode(transport, params, pipeline, pipeline.info, detector)
