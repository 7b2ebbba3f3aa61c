"""Build the hand mesh node's parts (model, pipeline, box source) from its parameters."""

from __future__ import annotations

from typing import Any

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.ros.hand_node import HandDetector, HandMeshNode, HandPipeline
from fasthmr_ros.ros.parameters import ParameterError, ParameterSet
from fasthmr_ros.ros.transport import Transport

#: Hands MediaPipe may return per image (the top of the max_hands parameter's range).
MAX_DETECTED_HANDS = 16


def build_detector(params: ParameterSet, log: Any) -> HandDetector | None:
    """Return the box source named by the ``detector`` parameter (``None`` for ``external``)."""
    name = params["detector"]
    if name == "external":
        log.info("hand boxes come from HandDetectionArray messages on hand_detections")
        return None
    if name == "mediapipe":
        from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

        log.info("hand boxes from MediaPipe (hands + pose)" if params["detector_use_pose"]
                 else "hand boxes from MediaPipe (hands)")
        # Frames arrive in time order from one camera: let MediaPipe track between them. The
        # node applies max_hands itself (it can change at run time).
        return MediaPipeHandDetector(
            max_hands=MAX_DETECTED_HANDS,
            min_detection_confidence=params["detector_confidence"],
            use_pose=params["detector_use_pose"],
            search_tiles=params["detector_search_tiles"],
            video_mode=True,
        )
    if name == "full_frame":
        from fasthmr_ros.pipeline.box_sources import FullFrameBoxes

        side = params["full_frame_side"]
        log.info(f"detector full_frame: each whole image is one {side} hand (for images "
                 "cropped to a hand)")
        return FullFrameBoxes(side)
    raise ParameterError(f"detector {name!r} is not available in this build")


def build_pipeline(
    params: ParameterSet, log: Any | None = None
) -> tuple[HandPipeline, MeshModelInfo]:
    """The hand pipeline the parameters select.

    With ``checkpoint`` empty (the default): the landmark fit of the Anny hand to MediaPipe's
    landmarks (said once on ``log``); it needs ``detector: mediapipe``. Otherwise the regressor
    named by ``checkpoint``, run by ``engine``, in the hand mesh pipeline.

    Returns:
        The pipeline and its mesh model (Anny hand, or MANO for a network checkpoint).

    Raises:
        ParameterError: when the model or engine cannot be loaded as the parameters say, or
            the landmark fit is asked to run without MediaPipe's landmarks.

    """
    if not params["checkpoint"]:
        if params["detector"] != "mediapipe":
            raise ParameterError(
                f"detector {params['detector']!r} gives no hand landmarks, and without "
                "'checkpoint' hands are MediaPipe landmarks fitted with the Anny hand model: "
                "use detector:=mediapipe, or set checkpoint to hamer.ckpt (or its _DATA "
                "folder) or a student checkpoint"
            )
        from fasthmr_ros.pipeline.landmark_hand_pipeline import (
            LANDMARK_FIT_NOTICE,
            LandmarkHandPipeline,
        )

        if log is not None:
            log.info(LANDMARK_FIT_NOTICE)
        pipeline = LandmarkHandPipeline()
        return pipeline, pipeline.info
    from fasthmr_ros.pipeline.hand_pipeline import HandMeshPipeline

    network = load_network(params)
    pipeline = HandMeshPipeline(network, device=params["device"])
    return pipeline, pipeline.info


def load_network(params: ParameterSet, body: bool = False) -> Any:
    """The regressor named by ``checkpoint`` (HMR2.0 with ``body``), run by ``engine``.

    One loader for both nodes: ``merge_plan``, ``device``, ``engine``, ``precision`` and
    ``engine_cache_dir`` mean the same for hands and bodies; ``mano_dir`` (hands) or
    ``smpl_dir`` (bodies) names the mesh model folder.

    Raises:
        ParameterError: when the model or engine cannot be loaded as the parameters say.

    """
    from fasthmr_ros import load_body_regressor, load_hand_regressor
    from fasthmr_ros.engines.base import EngineError, create_engine

    mesh_param = "smpl_dir" if body else "mano_dir"
    mesh_dir = params[mesh_param] or None
    merge_plan = params["merge_plan"] or None
    try:
        if body:
            regressor = load_body_regressor(params["checkpoint"], smpl_dir=mesh_dir,
                                            device=params["device"], merge_plan=merge_plan)
        else:
            regressor = load_hand_regressor(params["checkpoint"], mano_dir=mesh_dir,
                                            device=params["device"], merge_plan=merge_plan)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # missing/bad files, no GPU
        raise ParameterError(f"cannot load the model (checkpoint {params['checkpoint']!r}, "
                             f"{mesh_param} {params[mesh_param]!r}, merge_plan "
                             f"{params['merge_plan']!r}, device {params['device']!r}): "
                             f"{exc}") from exc
    options = {}
    if params["engine"] != "torch" and params["engine_cache_dir"]:
        options["cache_dir"] = params["engine_cache_dir"]
    try:
        return create_engine(regressor, params["engine"], params["precision"],
                             params["device"], **options)
    except EngineError as exc:
        raise ParameterError(f"engine {params['engine']!r} ({params['precision']}, "
                             f"{params['device']}): {exc}") from exc


def create_hand_node(transport: Transport, params: ParameterSet) -> HandMeshNode:
    """Build the model, pipeline and detector and return the (not yet started) node."""
    pipeline, model = build_pipeline(params, transport.logger)
    detector = build_detector(params, transport.logger)
    return HandMeshNode(transport, params, pipeline, model, detector)
