"""``fasthmr make-test-assets``: random-weights checkpoints and synthetic MANO/SMPL files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from fasthmr_ros.cli.main import CommandError

if TYPE_CHECKING:  # pragma: no cover
    from fasthmr_ros.models.test_assets import TestAssets


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``make-test-assets`` sub-command."""
    parser = subparsers.add_parser(
        "make-test-assets",
        help="write random-weights model files in HaMeR's and HMR2.0's layouts (to try the "
        "package)",
        description=(
            "Write a random-weights checkpoint in the official HaMeR layout "
            "(DIR/_DATA/hamer_ckpts/checkpoints/hamer.ckpt + model_config.yaml) and a "
            "synthetic MANO model (DIR/_DATA/data/mano/MANO_RIGHT.pkl), plus a drawn sample image "
            "(DIR/sample_hand.png), and with --student random-weights students "
            "(DIR/students/NAME.ckpt). For bodies, a random-weights HMR2.0 checkpoint in "
            "4D-Humans' layout (DIR/4DHumans/logs/train/multiruns/hmr2/0/checkpoints/"
            "epoch=35-step=1000000.ckpt + model_config.yaml, its training configuration pickled "
            "as an omegaconf DictConfig as Hydra writes it; run 1 beside it holds the same "
            "weights with a yacs configuration) and a synthetic SMPL data folder "
            "(DIR/4DHumans/data/: smpl/SMPL_NEUTRAL.pkl, SMPL_to_J19.pkl, smpl_mean_params.npz). "
            "Every command runs on them, but the meshes are meaningless: for real results use "
            "HaMeR's and 4D-Humans' downloads."
        ),
    )
    parser.add_argument("dir", help="output folder (created if missing)")
    parser.add_argument(
        "--models",
        choices=("all", "hands", "bodies"),
        default="all",
        help="which assets to write: HaMeR hands, HMR2.0 bodies or both (default)",
    )
    parser.add_argument(
        "--vit-h",
        action="store_true",
        help="full-size ViT-H networks (2.7 GB per file, for benchmarks) instead of tiny ones",
    )
    parser.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="NAME",
        help="also write a random-weights Fast-HaMeR student with this timm backbone to "
        "DIR/students/NAME.ckpt (e.g. mobilenetv3_large_100, mobilevit_s, resnet50, "
        "convnext_large; repeat for several)",
    )
    parser.add_argument(
        "--student-head",
        choices=("hamer", "small"),
        default="hamer",
        help="head of the students: HaMeR's full-size head (default) or a tiny one for tests",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the assets and print where they are."""
    from fasthmr_ros.models.regressor import SMALL_CONFIG, RegressorConfig
    from fasthmr_ros.models.test_assets import RANDOM_WEIGHTS_NOTICE, write_test_assets

    config = RegressorConfig() if args.vit_h else SMALL_CONFIG
    if args.models in ("all", "bodies"):
        _write_bodies(args, config)
    if args.models == "bodies":
        return 0
    try:
        assets = write_test_assets(args.dir, config=config, seed=args.seed)
    except OSError as exc:
        raise CommandError(f"cannot write test assets to {args.dir}: {exc}") from None
    import cv2

    from fasthmr_ros.pipeline.sample_image import draw_sample_hand

    sample = assets.root / "sample_hand.png"
    cv2.imwrite(str(sample), draw_sample_hand())
    print(f"checkpoint: {assets.checkpoint}")
    print(f"model config: {assets.model_config}")
    print(f"MANO folder: {assets.mano_dir}")
    print(f"sample image (a drawing of a hand): {sample}")
    for name in args.student:
        print(f"student {name}: {_write_student(args, assets, name)}")
    print(f"WARNING: {RANDOM_WEIGHTS_NOTICE}")
    return 0


def _write_bodies(args: argparse.Namespace, config: object) -> None:
    """Write the HMR2.0 assets and print where they are."""
    from fasthmr_ros.models.test_assets import BODY_RANDOM_WEIGHTS_NOTICE, write_body_test_assets

    try:
        bodies = write_body_test_assets(args.dir, config=config, seed=args.seed)
    except OSError as exc:
        raise CommandError(f"cannot write test assets to {args.dir}: {exc}") from None
    print(f"body checkpoint (HMR2.0 layout): {bodies.checkpoint}")
    print(f"body checkpoint, yacs configuration: {bodies.yacs_checkpoint}")
    print(f"SMPL data folder (4D-Humans' data/): {bodies.data_dir}")
    print(f"WARNING: {BODY_RANDOM_WEIGHTS_NOTICE}")


def _write_student(args: argparse.Namespace, assets: TestAssets, name: str) -> Path:
    """Write one student checkpoint next to the teacher assets; return its path."""
    from fasthmr_ros.models.mano import ManoLayer
    from fasthmr_ros.models.mano_files import find_mano_file, load_mano_file
    from fasthmr_ros.models.students import SMALL_STUDENT_HEAD, write_student_asset

    mano = ManoLayer(load_mano_file(find_mano_file(assets.mano_dir)))
    head = SMALL_STUDENT_HEAD if args.student_head == "small" else None
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    try:
        return write_student_asset(
            assets.root / "students" / f"{safe}.ckpt", name, mano, head=head, seed=args.seed
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
