"""Per-stage cost of the landmark-fit body path (``fasthmr bench --body-fit``).

On a rendered scene of two Anny bodies (640x480, nothing read from disk but the cached model):

- ``detect``: MediaPipe Pose person detection, every person of the frame (one Pose pass per
  person plus the pass that finds nobody new);
- ``fit_per_body``: the analytic fit of one body (scale, per-bone rotations, skinning, PnP);
- ``fit_per_body_hands``: the same with a landmark-fit hand at each wrist (matching, the hands'
  bone rotations, the wrists and fingers posed from them);
- ``skin``: the numpy linear blend skinning alone (13,718 vertices, 104 bones);
- ``anny_forward``: Anny's own torch forward for the same mesh, for comparison (when the
  ``anny`` package and its cached model data are there).

Medians and 90th percentiles in milliseconds over ``iterations`` runs after ``warmup``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fasthmr_ros.pipeline.results import CameraIntrinsics


def _time(function: Callable[[], Any], warmup: int, iterations: int) -> dict[str, float]:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        samples.append(1e3 * (time.perf_counter() - start))
    return {"median_ms": float(np.median(samples)), "p90_ms": float(np.percentile(samples, 90)),
            "iterations": iterations}


def run_body_benchmark(
    warmup: int = 3, iterations: int = 20, detector: bool = True, anny_forward: bool = True
) -> dict[str, Any]:
    """Time the body path's stages; return ``{"stages": {name: stats}, "bodies": n}``."""
    import cv2

    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.body_fit import LandmarkBodyFitter
    from fasthmr_ros.pipeline.sample_image import render_people

    model = AnnyBodyModel.default()
    fitter = LandmarkBodyFitter(model)
    camera = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)
    image, _ = render_people(model, camera)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    with MediaPipePersonDetector() as people_detector:
        people = people_detector.detect(rgb)
        stages: dict[str, Any] = {}
        if detector:
            stages["detect"] = _time(lambda: people_detector.detect(rgb), warmup, iterations)
    if not people:
        raise RuntimeError("MediaPipe found nobody in the rendered scene")
    fit = _time(lambda: fitter.estimate(rgb, people, camera), warmup, iterations)
    stages["fit_per_body"] = {k: v / len(people) if k != "iterations" else v
                              for k, v in fit.items()}
    hands = [hand for person in people for hand in _hands_at_wrists(person)]
    fit = _time(lambda: fitter.estimate(rgb, people, camera, hands=hands), warmup, iterations)
    stages["fit_per_body_hands"] = {k: v / len(people) if k != "iterations" else v
                                    for k, v in fit.items()}
    rotations = np.tile(np.eye(3), (model.num_bones, 1, 1))
    stages["skin"] = _time(lambda: model.skin(rotations), warmup, iterations)
    if anny_forward:
        reference = _anny_reference()
        if reference is not None:
            stages["anny_forward"] = _time(reference, warmup, iterations)
    return {"bodies": len(people), "stages": stages}


def _hands_at_wrists(person: Any) -> list[Any]:
    """A landmark-fit Anny hand (rest pose) at each wrist of ``person``."""
    from fasthmr_ros.models.anny_hand import shipped_anny_hand
    from fasthmr_ros.models.mesh_model import MODEL_ANNY_HAND
    from fasthmr_ros.pipeline.hand_attachment import SIDE_LANDMARKS
    from fasthmr_ros.pipeline.results import HandResult

    names = shipped_anny_hand().info.parameter_names
    # Scale, finger lengths and palm scales 1, every rotation zero: the rest hand.
    params = np.array([n == "scale" or n.startswith(("length_", "palm_")) for n in names],
                      dtype=np.float32)
    hands = []
    for side, (wrist, _) in SIDE_LANDMARKS.items():
        keypoints = np.tile(np.asarray(person.keypoints_2d[wrist], np.float32), (21, 1))
        hands.append(HandResult(side=side, score=1.0, box=np.zeros(4), keypoints_2d=keypoints,
                                joints=np.zeros((21, 3), np.float32),
                                vertices=np.zeros((0, 3), np.float32), cam_t=np.zeros(3),
                                wrist_rotation=np.eye(3), model=MODEL_ANNY_HAND,
                                model_params=params))
    return hands


def _anny_reference() -> Callable[[], Any] | None:
    try:
        import anny
        import torch
        from anny.models.model_data import ModelData

        from fasthmr_ros.models.anny_body import model_data_path

        data = ModelData.load_safetensors(str(model_data_path()))
    except (ImportError, OSError, ValueError):
        return None
    model = anny.Anny.from_model_data(data, skinning_method="lbs", bone_orientation="cached",
                                      pose_parameterization="local-ref")
    pose = torch.eye(4).repeat(1, len(model.bone_labels), 1, 1)

    def forward() -> Any:
        with torch.inference_mode():
            return model(pose_parameters=pose)

    return forward


def body_markdown(report: dict[str, Any]) -> str:
    """A markdown table of :func:`run_body_benchmark`'s stages."""
    lines = [f"body path ({report['bodies']} bodies per frame)", "",
             "| stage | median ms | p90 ms |", "|---|---:|---:|"]
    for name, stats in report["stages"].items():
        lines.append(f"| {name} | {stats['median_ms']:.2f} | {stats['p90_ms']:.2f} |")
    return "\n".join(lines)
