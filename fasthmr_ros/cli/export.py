"""``fasthmr export onnx``: write a regressor's network (backbone + head) as an ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.cli.model_args import (
    CHECKPOINT_HELP,
    MANO_DIR_HELP,
    add_merge_plan_argument,
    load_model,
)

#: Largest max-abs difference between ONNX Runtime and PyTorch accepted by ``--verify``.
DEFAULT_TOLERANCE = 1e-3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command and its ``onnx`` target."""
    parser = subparsers.add_parser(
        "export",
        help="export a model for other runtimes (ONNX)",
        description="Export a hand regressor's network for other runtimes.",
    )
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    onnx = targets.add_parser(
        "onnx",
        help="export the network (backbone + head) to ONNX",
        description=(
            "Export the network of a hand regressor (backbone + MANO head; MANO itself runs in "
            "PyTorch after it) to ONNX at opset 17 with a dynamic batch axis: input 'crops' "
            "(batch, 3, 256, 256) float32, outputs global_orient, hand_pose, betas, cam. Graphs "
            "over 2 GB (the fp32 ViT-H teacher) keep their weights in OUT.data beside OUT. The "
            "file is checked with the ONNX checker and, unless --no-verify, compared with "
            "PyTorch through ONNX Runtime on random crops."
        ),
    )
    onnx.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    onnx.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    onnx.add_argument("--mano-dir", help=MANO_DIR_HELP)
    add_merge_plan_argument(onnx)
    onnx.add_argument(
        "--input-scale",
        type=float,
        default=1.0,
        help="backbone window resolution relative to 256x192 (e.g. 0.75 gives 192x144: faster, "
        "less accurate; default 1.0)",
    )
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, 17-20 (default 17)")
    onnx.add_argument(
        "--external-data",
        choices=("auto", "yes", "no"),
        default="auto",
        help="weights in OUT.data: auto (when over 2 GB, default), yes, no",
    )
    onnx.add_argument("--no-verify", action="store_true",
                      help="skip the ONNX Runtime vs PyTorch comparison")
    onnx.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                      help=f"largest accepted difference when verifying (default "
                      f"{DEFAULT_TOLERANCE})")
    onnx.set_defaults(func=run_onnx)
    parser.set_defaults(func=lambda args: parser.print_help() or 1)


def run_onnx(args: argparse.Namespace) -> int:
    """Export, check and (optionally) verify the graph."""
    from fasthmr_ros.engines.base import EngineError
    from fasthmr_ros.engines.onnx_export import export_onnx

    regressor = load_model(args.checkpoint, args.mano_dir, merge_plan=args.merge_plan)
    external = {"auto": None, "yes": True, "no": False}[args.external_data]
    try:
        path = export_onnx(regressor, args.output, input_scale=args.input_scale,
                           opset=args.opset, external_data=external, progress=True)
    except (EngineError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc}") from None
    print(f"ONNX graph: {path}")
    data = Path(str(path) + ".data")
    if data.is_file():
        print(f"external weights: {data} (keep it beside the graph)")
    if not args.no_verify:
        difference = verify(regressor, path, args.input_scale)
        print(f"ONNX Runtime (CPU) vs PyTorch, max abs difference: {difference:.3g}")
        if difference > args.tolerance:
            raise CommandError(
                f"the exported graph differs from PyTorch by {difference:.3g} > "
                f"{args.tolerance:g}; the export is not faithful (report this as a bug)."
            )
    return 0


def verify(regressor: object, path: Path, input_scale: float) -> float:
    """Max abs difference of network outputs between ONNX Runtime (CPU) and PyTorch."""
    import torch

    from fasthmr_ros.engines.base import create_runner

    crops = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    onnx_out = create_runner(regressor, "onnxruntime", onnx_path=path,
                             input_scale=input_scale).run(crops)
    torch_out = create_runner(regressor, "torch", input_scale=input_scale).run(crops)
    return max(float((onnx_out[k] - torch_out[k]).abs().max()) for k in torch_out)
