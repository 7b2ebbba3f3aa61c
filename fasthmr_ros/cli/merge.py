"""``fasthmr merge calibrate``: find a FastHMR layer-merge plan on your own footage, no labels."""

from __future__ import annotations

import argparse
from typing import Any

from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.cli.model_args import (
    CHECKPOINT_HELP,
    MANO_DIR_HELP,
    SMPL_DIR_HELP,
    load_model,
    parse_device_arg,
)
from fasthmr_ros.models.constants import BODY_PELVIS_INDEX


def _tokens(text: str) -> tuple[int, int, int]:
    try:
        keep, per_layer, layers = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--tokens takes KEEP,PER_LAYER,LAYERS (e.g. 90,40,3), got {text!r}") from None
    return keep, per_layer, layers


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``merge`` sub-command group."""
    parser = subparsers.add_parser(
        "merge", help="FastHMR training-free acceleration of ViT teachers (merge plans)")
    commands = parser.add_subparsers(dest="merge_command", metavar="COMMAND")
    calibrate = commands.add_parser(
        "calibrate",
        help="search which ViT blocks to fold, on unlabelled frames",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "FastHMR's error-constrained layer merging (Algorithm 1) without ground truth: the\n"
            "error of a merged model is its root-aligned MPJPE (mm) to the ORIGINAL model's\n"
            "joints on hands the built-in detector finds in your frames. From the last block\n"
            "down, a window of blocks grows while the cumulative error stays under --tau-mm;\n"
            "the largest passing window is folded (the window still open at block 0 too).\n"
            "Writes a merge plan for --merge-plan / merge_plan, bound to this checkpoint.\n"
            "--tokens adds Mask-ToMe token merging to the plan (its error and speed are\n"
            "measured too). With --freihand, PA-MPJPE against the labels is reported.\n\n"
            "example:\n"
            "  fasthmr merge calibrate --checkpoint _DATA --data clip.mp4 --tau-mm 0.5 \\\n"
            "      --tokens 90,40,3 -o plan.json"
        ),
    )
    calibrate.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    calibrate.add_argument("--mano-dir", help=MANO_DIR_HELP)
    calibrate.add_argument("--body", action="store_true",
                           help="an HMR2.0 body checkpoint: people found by MediaPipe Pose, "
                           "their segmentation as the token foreground, error at the pelvis")
    calibrate.add_argument("--smpl-dir", help="with --body: " + SMPL_DIR_HELP)
    source = calibrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", nargs="+", metavar="FRAMES_OR_VIDEO",
                        help="image files, folders of images or videos")
    source.add_argument("--freihand", metavar="ROOT",
                        help="FreiHAND folder: its training images and labels (adds PA-MPJPE)")
    calibrate.add_argument("--tau-mm", type=float, default=0.5,
                           help="error budget in mm against the original model (default 0.5)")
    calibrate.add_argument("--rule", choices=("sum", "top", "mean"), default="sum",
                           help="how blocks fold: sum (FastHMR Eq. 4, default), top, mean")
    calibrate.add_argument("--tokens", type=_tokens, metavar="KEEP,PER_LAYER,LAYERS",
                           help="also merge tokens, e.g. 90,40,3 (FastHMR's setting)")
    calibrate.add_argument("--mask", choices=("foreground", "none"), default="foreground",
                           help="with --tokens: protect hand (--body: person) tokens (default) "
                           "or plain ToMe")
    calibrate.add_argument("--max-crops", type=int, default=64,
                           help="hands to calibrate on (default 64)")
    calibrate.add_argument("--batch-size", type=int, default=8, help="crops per pass (default 8)")
    calibrate.add_argument("--full-frame", action="store_true",
                           help="every frame is already a crop of one hand (no detector)")
    calibrate.add_argument("--side", choices=("left", "right"), default="right",
                           help="with --full-frame: which hand (default right)")
    calibrate.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    calibrate.add_argument("--cache-dir", metavar="DIR",
                           help="where the original model's outputs are cached between runs "
                           "(default ~/.cache/fasthmr_ros/calibration)")
    calibrate.add_argument("--repeats", type=int, default=5,
                           help="timed passes per model for the speed-up (default 5)")
    calibrate.add_argument("-o", "--output", required=True, help="the plan file to write")
    calibrate.set_defaults(func=run_calibrate)
    parser.set_defaults(func=lambda args: parser.print_help() or 1)


def _crops(args: argparse.Namespace) -> Any:
    from fasthmr_ros.training.merge_calibration import (
        CalibrationCrops,
        calibration_frames,
        collect_crops,
    )

    if args.freihand:
        import numpy as np

        from fasthmr_ros.pipeline.crop import crop_hand
        from fasthmr_ros.pipeline.datasets.freihand import FreiHAND
        from fasthmr_ros.pipeline.foreground import hand_foreground_tokens
        from fasthmr_ros.pipeline.results import HandBox

        dataset = FreiHAND(args.freihand, versions=("gs",))
        crops, flags, labels = [], [], []
        for index in range(min(args.max_crops, len(dataset))):
            sample = dataset[index]
            box = HandBox(*sample.box, side=sample.side, keypoints_2d=sample.keypoints_2d)
            crop = crop_hand(sample.load_image(), box)
            crops.append(crop.image)
            flags.append(hand_foreground_tokens([box], [crop.transform])[0])
            labels.append(sample.joints)
        return CalibrationCrops(np.stack(crops), np.stack(flags), np.stack(labels))
    if args.body:
        from fasthmr_ros.training.merge_calibration import person_crop

        try:
            from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector
        except ImportError as exc:
            raise CommandError(f"--body needs mediapipe's Pose model ({exc})") from None
        detector = MediaPipePersonDetector()
        return collect_crops(calibration_frames(args.data), detector.detect, args.max_crops,
                             crop=person_crop, what="people")
    if args.full_frame:
        from fasthmr_ros.pipeline.box_sources import FullFrameBoxes

        detect = FullFrameBoxes(args.side).detect
    else:
        try:
            from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector
        except ImportError as exc:
            raise CommandError(f"the built-in detector needs mediapipe ({exc}); install it, "
                               "or pass --full-frame for frames cropped to one hand") from None
        detect = MediaPipeHandDetector().detect
    return collect_crops(calibration_frames(args.data), detect, args.max_crops)


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate and write the plan."""
    from fasthmr_ros.engines.onnx_export import default_cache_dir
    from fasthmr_ros.models.merge_plan import MergePlanError, TokenPlan, save_merge_plan
    from fasthmr_ros.training.merge_calibration import MergeCalibrator

    if args.body and (args.full_frame or args.freihand or args.mano_dir):
        raise CommandError("--body takes person frames (--data) and --smpl-dir; --full-frame, "
                           "--freihand and --mano-dir are for hands")
    if args.max_crops < 1 or args.batch_size < 1 or args.repeats < 1:
        raise CommandError("--max-crops, --batch-size and --repeats must be >= 1")
    if args.tau_mm <= 0:
        raise CommandError(f"--tau-mm must be positive, got {args.tau_mm}")
    device = parse_device_arg(args.device)
    regressor = load_model(args.checkpoint, args.mano_dir, str(device), body=args.body,
                           smpl_dir=args.smpl_dir)
    try:
        data = _crops(args)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    tokens = None
    if args.tokens is not None:
        keep, per_layer, layers = args.tokens
        tokens = TokenPlan(keep, per_layer, layers, mask=args.mask)
    cache = args.cache_dir or default_cache_dir() / "calibration"
    try:
        calibrator = MergeCalibrator(regressor, data, batch_size=args.batch_size,
                                     cache_dir=cache,
                                     root_joint=BODY_PELVIS_INDEX if args.body else 0)
        result = calibrator.calibrate(args.tau_mm, args.rule, tokens, repeats=args.repeats)
    except MergePlanError as exc:
        raise CommandError(str(exc)) from None
    path = save_merge_plan(result.plan, args.output)
    if getattr(regressor, "is_test_asset", False):
        print("WARNING: random-weights test assets: the plan and its errors mean nothing.")
    print(result.summary())
    print(f"plan: {path}")
    print("The accuracy cost on labelled data is yours to measure: run 'fasthmr hands' with and "
          "without --merge-plan on a labelled set and compare with 'fasthmr eval'.")
    return 0
