"""``fasthmr distill``: train a fast student from a HaMeR teacher by knowledge distillation."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from fasthmr_ros.cli.hands import add_detector_options, check_box_source_options
from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.cli.model_args import (
    MANO_DIR_HELP,
    RANDOM_WEIGHTS_WARNING,
    load_model,
    parse_device_arg,
)
from fasthmr_ros.pipeline.results import SIDES

DATASETS = ("folder", "freihand", "ho3d")
DEFAULT_SPLITS = {"freihand": "training", "ho3d": "train"}

_DESCRIPTION = """\
Train a student hand mesh regressor (a light backbone with HaMeR's MANO head) to reproduce a
HaMeR teacher, as Fast-HaMeR does, with its faults fixed: the teacher runs frozen in eval mode,
the feature projection is trained, teacher and student see the same crop, and the student
checkpoint never contains the teacher.

Data: a folder of your own images/videos (no labels: hands come from the MediaPipe detector,
--boxes or --full-frame; the teacher's outputs are the targets), or FreiHAND / HO3D (labels add
HaMeR's ground-truth loss; HaMeR-style augmentation).

Outputs in --out: student.ckpt (load it anywhere a checkpoint is accepted, e.g.
'fasthmr hands --checkpoint OUT/student.ckpt'), train_state.pt (resume with --resume),
tb/ (TensorBoard curves: tensorboard --logdir OUT/tb), crops/ (hand crops of a folder)."""

_EPILOG = """\
distillation kinds (--kd):
  output   match the teacher's 2D/3D joints, rotations and shape (Fast-HaMeR's weights)
  feature  match the teacher's feature map through a trained 1x1 projection; only with
           labels (the MANO head gets no other signal)
  both     output + feature (Fast-HaMeR found feature distillation helps the
           higher-capacity students most: ResNet-50, ConvNeXt)

examples:
  fasthmr distill --teacher _DATA --student mobilenetv3_large_100 --pretrained-backbone \\
      --dataset freihand --data FreiHAND_pub_v2 --out runs/mnv3 --steps 100000 --device cuda --amp
  fasthmr distill --teacher _DATA --init runs/mnv3/student.ckpt --data robot_footage/ \\
      --out runs/mnv3_robot --steps 20000 --device cuda --amp
  fasthmr distill --teacher _DATA --data robot_footage/ --out runs/mnv3_robot --steps 40000 \\
      --resume
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``distill`` sub-command."""
    parser = subparsers.add_parser(
        "distill",
        help="train a fast student from a HaMeR teacher (knowledge distillation)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--teacher", required=True,
        help="teacher checkpoint: hamer.ckpt, its _DATA or hamer_ckpts folder",
    )
    models.add_argument("--mano-dir", help=MANO_DIR_HELP)
    models.add_argument(
        "--student", metavar="NAME|CONFIG",
        help="a timm backbone (mobilenetv3_large_100, mobilevit_s, resnet50, convnext_large, "
             "or another timm name), a ViT preset (vit-tiny, vit-small, vit-base) or a "
             "regressor configuration file (.yaml/.json); optional with --resume or --init",
    )
    models.add_argument(
        "--pretrained-backbone", nargs="?", const="download", metavar="FILE",
        help="start a timm student's backbone from ImageNet weights, as Fast-HaMeR does: "
             "fetched by timm (network), or read from FILE (the timm model's checkpoint)",
    )
    models.add_argument(
        "--init", metavar="CKPT",
        help="start from a student checkpoint (e.g. an earlier run's student.ckpt, to adapt "
             "it to new footage); its architecture is the student's",
    )
    models.add_argument(
        "--init-head-from-teacher", action="store_true",
        help="start the student's MANO head from the teacher's weights where shapes match "
             "(default: fresh head, as Fast-HaMeR; the mean parameters are always copied)",
    )

    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", required=True, metavar="DIR", help="footage folder or dataset root"
    )
    data.add_argument(
        "--dataset", choices=DATASETS, default="folder",
        help="folder: unlabelled images/videos (default); freihand or ho3d: labelled",
    )
    data.add_argument("--split", help="dataset split (freihand: training; ho3d: train)")
    boxes = data.add_mutually_exclusive_group()
    boxes.add_argument(
        "--boxes", metavar="FILE",
        help="JSON hand boxes for a folder (format of 'fasthmr hands --help'; key frames by "
             "image file name or <video stem>_<frame:06d>: bare frame numbers count the frames "
             "distill reads, after --frame-step, which may differ from 'fasthmr hands')",
    )
    boxes.add_argument(
        "--full-frame", action="store_true",
        help="every image of the folder is already cropped to one hand (needs --side)",
    )
    data.add_argument("--side", choices=SIDES, help="hand side for --full-frame")
    data.add_argument(
        "--frame-step", type=int, default=1, metavar="N", help="use every N-th video frame"
    )
    data.add_argument(
        "--min-score", type=float, default=0.0, help="drop detected hands scoring below this"
    )
    data.add_argument(
        "--targets", choices=("online", "cached"), default="online",
        help="teacher outputs: computed every step (default; allows augmentation and feature "
             "distillation) or computed once and stored in OUT/crops (folder, --kd output)",
    )
    data.add_argument(
        "--no-augment", action="store_true",
        help="train on the crops as they are (no scale/rotation/shift/colour augmentation)",
    )
    data.add_argument(
        "--val-size", type=int, default=64, metavar="N",
        help="crops held out to measure the student (at most a fifth of the data)",
    )

    add_detector_options(
        parser.add_argument_group("hand detector (folders without --boxes / --full-frame)")
    )

    train = parser.add_argument_group("training")
    train.add_argument("--out", required=True, metavar="DIR", help="output folder")
    train.add_argument(
        "--steps", type=int, default=10_000, help="optimiser steps in total (default 10000)"
    )
    train.add_argument("--batch-size", type=int, help="crops per step (default 8)")
    train.add_argument("--lr", type=float, help="peak learning rate of AdamW (default 1e-4)")
    train.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-4)")
    train.add_argument(
        "--warmup", type=int, metavar="STEPS",
        help="linear warm-up steps before the cosine decay (default: min(500, steps / 10))",
    )
    train.add_argument(
        "--grad-clip", type=float, default=1.0, help="gradient norm limit (0: no clipping)"
    )
    train.add_argument("--kd", choices=("output", "feature", "both"),
                       help="what the student learns from the teacher (default output; below)")
    train.add_argument("--kd-weight", type=float,
                       help="lambda_KD, weight of the distillation loss (default 0.3, as "
                            "Fast-HaMeR)")
    train.add_argument("--feature-weight", type=float,
                       help="feature-loss scaler inside the distillation loss (default 6, as "
                            "Fast-HaMeR)")
    train.add_argument("--gt-weight", type=float,
                       help="weight of the ground-truth loss on labelled data (default 1)")
    train.add_argument("--seed", type=int,
                       help="seed of the weights, data order and augmentation (default 0)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved in --out; options left out take the saved "
                            "values (--steps may grow)")
    train.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    train.add_argument("--amp", action="store_true",
                       help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    train.add_argument("--workers", type=int, default=0, help="data-loading processes")
    train.add_argument("--save-every", type=int, default=1000, metavar="STEPS",
                       help="checkpoint interval (also saved at the end and on Ctrl-C)")
    train.add_argument("--log-every", type=int, default=10, metavar="STEPS",
                       help="TensorBoard scalar interval")
    train.add_argument("--eval-every", type=int, default=500, metavar="STEPS",
                       help="validation interval (student vs teacher PA-MPJPE)")
    parser.set_defaults(func=_run)


#: Options a resumed run keeps from the saved run unless given, with their fresh-run defaults.
RUN_DEFAULTS: dict[str, Any] = {
    "kd": "output",
    "batch_size": 8,
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "kd_weight": 0.3,
    "feature_weight": 6.0,
    "gt_weight": 1.0,
    "seed": 0,
}
#: Where each option lives in a saved ``DistillConfig`` dict.
_SAVED_AS: dict[str, tuple[str, ...]] = {
    "kd": ("kd",),
    "batch_size": ("batch_size",),
    "lr": ("lr",),
    "weight_decay": ("weight_decay",),
    "kd_weight": ("weights", "kd"),
    "feature_weight": ("weights", "feature"),
    "gt_weight": ("weights", "ground_truth"),
    "seed": ("seed",),
    "warmup": ("warmup_steps",),
}


def fill_defaults(args: argparse.Namespace, saved: dict | None) -> None:
    """Give options left out the saved run's values (``--resume``) or the fresh-run defaults."""
    for name, path in _SAVED_AS.items():
        if getattr(args, name) is not None:
            continue
        if saved is not None:
            value: Any = saved
            for part in path:
                value = value[part]
            setattr(args, name, value)
        elif name in RUN_DEFAULTS:
            setattr(args, name, RUN_DEFAULTS[name])
    if args.warmup is None:
        args.warmup = min(500, args.steps // 10)


def _check_args(args: argparse.Namespace) -> None:
    if args.dataset == "folder":
        if args.kd == "feature":
            raise CommandError(
                "--kd feature trains only the backbone; without labels the MANO head gets no "
                "training signal. Use --kd both (or output) on unlabelled footage"
            )
    else:
        if args.boxes or args.full_frame:
            raise CommandError(f"--boxes/--full-frame apply to folders; {args.dataset} has boxes")
        if args.targets == "cached":
            raise CommandError(
                "--targets cached serves un-augmented folder crops; labelled datasets are "
                "augmented, so their teacher targets are computed online"
            )
    check_box_source_options(args)
    if args.targets == "cached" and args.kd != "output":
        raise CommandError(
            "--targets cached stores the teacher's outputs only; feature distillation needs its "
            "feature maps every step: use --targets online"
        )
    for name in ("steps", "batch_size", "frame_step"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("lr", "weight_decay", "grad_clip", "kd_weight", "feature_weight", "gt_weight"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise CommandError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
    if args.lr == 0:
        raise CommandError("--lr must be positive")
    for name in ("workers", "val_size", "save_every", "log_every", "eval_every"):
        if getattr(args, name) < 0:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 0")
    if not 0 <= args.warmup < args.steps:
        raise CommandError(f"--warmup must be in [0, --steps), got {args.warmup}")
    if not args.resume and args.student is None and args.init is None:
        raise CommandError(
            "--student is required (a name such as mobilenetv3_large_100, or a config file), "
            "unless --init or --resume gives the architecture"
        )
    if args.resume and (args.init or args.pretrained_backbone):
        raise CommandError("--init and --pretrained-backbone start runs; --resume continues one")
    if args.init and args.pretrained_backbone:
        raise CommandError("--init already gives the backbone weights; drop --pretrained-backbone")


def _distill_config(args: argparse.Namespace) -> Any:
    from fasthmr_ros.training.distiller import DistillConfig
    from fasthmr_ros.training.losses import LossWeights

    return DistillConfig(
        kd=args.kd,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup,
        grad_clip=args.grad_clip,
        amp=args.amp,
        seed=args.seed,
        weights=LossWeights(
            kd=args.kd_weight, feature=args.feature_weight, ground_truth=args.gt_weight
        ),
        save_every=args.save_every,
        log_every=args.log_every,
        eval_every=args.eval_every,
        workers=args.workers,
    )


def _student_config(args: argparse.Namespace, state: dict | None, init: Any) -> dict:
    from fasthmr_ros.training.student_specs import resolve_student_config, same_architecture

    requested = None
    if args.student is not None:
        try:
            requested = resolve_student_config(args.student)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
    if state is not None:
        given, origin = dict(state["student_config"]), f"the saved run in {args.out}"
    elif init is not None:
        given, origin = dict(init.config), f"--init {args.init}"
    else:
        assert requested is not None
        return requested
    if requested is not None and not same_architecture(requested, given):
        raise CommandError(
            f"--student {args.student} differs from the student of {origin}; drop --student"
        )
    return given


def _build_student(args: argparse.Namespace, teacher: Any, state: dict | None) -> Any:
    from fasthmr_ros.training.student_specs import (
        copy_head_weights,
        load_pretrained_backbone,
        student_for_teacher,
    )

    init = None if args.init is None else load_model(args.init, what="--init")
    try:
        student = student_for_teacher(_student_config(args, state, init), teacher)
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"cannot build the student: {exc}") from None
    if state is not None:
        return student  # its weights come from the training state
    if init is not None:
        weights = {k: v for k, v in init.state_dict().items() if not k.startswith("mano.")}
        student.load_state_dict(weights, strict=False)
        print(f"student starts from {args.init}")
    elif args.pretrained_backbone:
        source = None if args.pretrained_backbone == "download" else args.pretrained_backbone
        try:
            load_pretrained_backbone(student, source)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        print(f"backbone starts from ImageNet weights ({source or 'timm download'})")
    if args.init_head_from_teacher and init is None:
        copied = copy_head_weights(teacher, student)
        print(f"MANO head: {len(copied)} entries copied from the teacher")
    return student


def _folder_dataset(args: argparse.Namespace, out_dir: Path, augment: bool) -> Any:
    from tqdm import tqdm

    from fasthmr_ros.cli.hands import make_detector
    from fasthmr_ros.pipeline.box_sources import JsonBoxes
    from fasthmr_ros.pipeline.datasets.media import MediaFolder
    from fasthmr_ros.training.data import CachedCrops, CropCache, detector_boxes, file_boxes

    try:
        media = MediaFolder(args.data, frame_step=args.frame_step)
        if args.boxes:
            boxes = file_boxes(JsonBoxes.load(args.boxes))
            box_source = f"file:{Path(args.boxes).resolve()}:{Path(args.boxes).stat().st_mtime}"
        else:
            boxes = detector_boxes(make_detector(args))
            box_source = f"full-frame:{args.side}" if args.full_frame else (
                f"mediapipe:max_hands={args.max_hands}:threshold={args.detection_threshold}:"
                f"mirrored={args.mirrored}:pose={not args.no_pose}:tiles={args.search_tiles}"
            )
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    recipe = {
        "data": str(Path(args.data).resolve()),
        "files": len(media.files),
        "frame_step": args.frame_step,
        "boxes": box_source,
    }
    try:
        cache = CropCache.build(
            media, boxes, out_dir / "crops", recipe, min_score=args.min_score,
            progress=lambda frames: tqdm(frames, desc="finding hands", unit="frame"),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(f"{len(cache)} hand crops from {len(media.files)} files in {args.data}")
    return CachedCrops(cache, seed=args.seed, augment=augment)


def _labelled_dataset(args: argparse.Namespace, teacher: Any, augment: bool) -> Any:
    from fasthmr_ros.pipeline.datasets import HO3D, DatasetFormatError, FreiHAND
    from fasthmr_ros.training.data import LabelledCrops

    split = args.split or DEFAULT_SPLITS[args.dataset]
    try:
        reader = FreiHAND(args.data, split) if args.dataset == "freihand" else HO3D(
            args.data, split
        )
    except (FileNotFoundError, ValueError, DatasetFormatError) as exc:
        raise CommandError(str(exc)) from None
    hand_mean = teacher.mano.hand_mean.detach().cpu().numpy()
    return LabelledCrops(reader, hand_mean, seed=args.seed, augment=augment)


def _run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from fasthmr_ros.training.data import IndexSubset, validation_batch, validation_split
    from fasthmr_ros.training.distiller import (
        STATE_FILE,
        STUDENT_FILE,
        Distiller,
        TrainingStateError,
        read_training_state,
        seed_everything,
    )
    from fasthmr_ros.training.scalar_log import ScalarLog
    from fasthmr_ros.training.teacher_targets import TeacherTargets, WithTeacherTargets

    out_dir = Path(args.out)
    state_path = out_dir / STATE_FILE
    state = None
    if args.resume:
        try:
            state = read_training_state(state_path)
        except (FileNotFoundError, TrainingStateError) as exc:
            raise CommandError(f"cannot resume: {exc}") from None
    elif state_path.exists():
        raise CommandError(
            f"{out_dir} already holds a distillation run; pass --resume to continue it or "
            "choose another --out"
        )
    fill_defaults(args, None if state is None else dict(state["config"]))
    _check_args(args)
    try:
        config = _distill_config(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    device = parse_device_arg(args.device)

    teacher = load_model(args.teacher, args.mano_dir, what="the teacher")
    test_asset = bool(getattr(teacher, "is_test_asset", False))
    if test_asset:
        tqdm.write(RANDOM_WEIGHTS_WARNING)
    seed_everything(args.seed)
    student = _build_student(args, teacher, state)

    cached = args.targets == "cached"
    augment = not args.no_augment and not cached
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.dataset == "folder":
        dataset = _folder_dataset(args, out_dir, augment)
    else:
        dataset = _labelled_dataset(args, teacher, augment)
    train_indices, val_indices = validation_split(len(dataset), args.val_size)
    validation = validation_batch(dataset, val_indices) if val_indices else None
    if cached:
        targets = TeacherTargets.for_dataset(
            out_dir / "crops" / "teacher_targets.npz", teacher.to(device), dataset,
            config.batch_size, device,
            torch.float16 if args.amp and device.type == "cuda" else None,
            progress=lambda starts: tqdm(starts, desc="teacher targets", unit="batch"),
        )
        dataset = WithTeacherTargets(dataset, targets)
    train_set = IndexSubset(dataset, train_indices)

    try:
        distiller = Distiller(student, teacher, config, device, teacher_source=args.teacher)
        if state is not None:
            distiller.resume(state)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None
    student_params = sum(p.numel() for p in student.parameters())
    teacher_params = sum(p.numel() for p in teacher.parameters())
    print(
        f"student {student_params / 1e6:.1f} M parameters, teacher {teacher_params / 1e6:.1f} M; "
        f"{len(train_set)} training crops, {len(val_indices)} held out; kd={config.kd}; "
        f"steps {distiller.step} -> {config.steps}"
    )
    log = ScalarLog(out_dir / "tb")
    try:
        summary = distiller.fit(
            train_set, validation, out_dir=out_dir, log=log, test_asset=test_asset
        )
    except KeyboardInterrupt:
        print(f"interrupted at step {distiller.step}; continue with --resume")
        return 130
    except (ValueError, FloatingPointError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        log.close()
    print(f"student -> {out_dir / STUDENT_FILE} (step {distiller.step}); "
          f"training state -> {out_dir / STATE_FILE}")
    if "val/teacher_pa_mpjpe_mm" in summary:
        agreement = summary["val/teacher_pa_mpjpe_mm"]
        line = f"held-out crops: student vs teacher PA-MPJPE {agreement:.2f} mm"
        if "val/gt_pa_mpjpe_mm" in summary:
            line += (
                f"; vs labels: student {summary['val/gt_pa_mpjpe_mm']:.2f} mm, teacher "
                f"{summary['val/teacher_gt_pa_mpjpe_mm']:.2f} mm"
            )
        print(line)
    if test_asset:
        print(RANDOM_WEIGHTS_WARNING)
    return 0
