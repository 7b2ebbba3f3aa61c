"""``fasthmr make-test-assets``: random-weights checkpoint and synthetic MANO files."""

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
        help="write random-weights model files in HaMeR's layout (to try the package)",
        description=(
            "Write a random-weights checkpoint in the official HaMeR layout "
            "(DIR/_DATA/hamer_ckpts/checkpoints/hamer.ckpt + model_config.yaml) and a "
            "synthetic MANO model (DIR/_DATA/data/mano/MANO_RIGHT.pkl), plus a drawn sample image "
            "(DIR/sample_hand.png), and with --student random-weights students "
            "(DIR/students/NAME.ckpt). Every command runs on them, but the meshes are "
            "meaningless: for real results use HaMeR's data download."
        ),
    )
    parser.add_argument("dir", help="output folder (created if missing)")
    parser.add_argument(
        "--vit-h",
        action="store_true",
        help="full-size ViT-H teacher (2.7 GB file, for benchmarks) instead of a tiny one",
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
