"""``fasthmr engine build``: build (or find) the cached TensorRT engine of a model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.cli.model_args import (
    CHECKPOINT_HELP,
    MANO_DIR_HELP,
    add_merge_plan_argument,
    load_model,
)
from fasthmr_ros.engines.base import PRECISIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``engine`` sub-command and its ``build`` action."""
    parser = subparsers.add_parser(
        "engine",
        help="build TensorRT engines ahead of time",
        description="Manage the TensorRT engines kept in the engine cache.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="build the TensorRT engine of a model into the engine cache",
        description=(
            "Build a TensorRT engine for a hand regressor's network (backbone + head) with the "
            "TensorRT Python API (8.6, 10.x or 11.x) and store it in the engine cache, keyed by "
            "the ONNX file's hash, the TensorRT version, the GPU, the precision and the batch "
            "profile. Nodes and 'create_engine(engine=\"tensorrt\")' then load it in seconds "
            "instead of building it on first use. An engine already in the cache is reused "
            "unless --force. Prints the engine file and its cache key."
        ),
        epilog=(
            "Give --checkpoint (the network is exported to ONNX first, into the cache or into "
            "--onnx FILE), or --onnx alone (an existing graph from 'fasthmr export onnx'). "
            "Needs an NVIDIA GPU and TensorRT's Python bindings (python3-libnvinfer on "
            "JetPack, 'pip install tensorrt' elsewhere)."
        ),
    )
    build.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    build.add_argument("--onnx", metavar="FILE",
                       help="exported graph to build from; with --checkpoint, where to export it "
                       "(reused when it already holds that checkpoint's network)")
    build.add_argument("--precision", choices=PRECISIONS, default="fp16",
                       help="engine precision (default fp16; bf16 needs TensorRT >= 10)")
    build.add_argument("--max-batch", type=int, default=8,
                       help="largest batch of crops per call (default 8)")
    build.add_argument("--opt-batch", type=int, default=None,
                       help="batch the kernels are tuned for (default 4, or --max-batch if "
                       "smaller)")
    build.add_argument("--workspace-gib", type=float, default=2.0,
                       help="builder scratch memory limit in GiB (default 2)")
    build.add_argument("--input-scale", type=float, default=1.0,
                       help="backbone window resolution for the export (default 1.0)")
    build.add_argument("--mano-dir", help=MANO_DIR_HELP)
    add_merge_plan_argument(build)
    build.add_argument("--device", default="cuda:0", help="CUDA device (default cuda:0)")
    build.add_argument("--cache-dir", metavar="DIR",
                       help="package cache root; engines go to DIR/engines (default "
                       "~/.cache/fasthmr_ros, or $FASTHMR_CACHE)")
    build.add_argument("--force", action="store_true",
                       help="rebuild even if the cache holds the engine")
    build.set_defaults(func=run_build)
    parser.set_defaults(func=lambda args: parser.print_help() or 1)


def _settings(args: argparse.Namespace) -> object:
    from fasthmr_ros.engines.base import EngineError
    from fasthmr_ros.engines.tensorrt import settings_from_options

    options: dict[str, object] = {"max_batch": args.max_batch,
                                  "workspace_gib": args.workspace_gib}
    if args.opt_batch is not None:
        options["opt_batch"] = args.opt_batch
    try:
        return settings_from_options(args.precision, options)
    except EngineError as exc:
        raise CommandError(f"{exc} (--max-batch, --opt-batch, --workspace-gib)") from None


def _checked_graph(path: str) -> Path:
    """``path`` if it holds this package's network graph, else a :class:`CommandError`."""
    from fasthmr_ros.engines.base import EngineError
    from fasthmr_ros.engines.onnx_export import check_graph_signature

    try:
        check_graph_signature(path)
    except EngineError as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own errors for non-ONNX files
        raise CommandError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc}); "
                           "write it with 'fasthmr export onnx'.") from None
    return Path(path)


def _exported_graph(args: argparse.Namespace) -> Path:
    """The checkpoint's network exported: into the cache, or to --onnx unless it holds it."""
    from fasthmr_ros.engines.base import EngineError
    from fasthmr_ros.engines.onnx_export import cached_export, export_unless_current

    regressor = load_model(args.checkpoint, args.mano_dir, merge_plan=args.merge_plan)
    try:
        if args.onnx is None:
            return cached_export(regressor, args.cache_dir, input_scale=args.input_scale,
                                 progress=True)
        return export_unless_current(regressor, args.onnx, input_scale=args.input_scale,
                                     progress=True)
    except (EngineError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write the ONNX graph: {exc}") from None


def run_build(args: argparse.Namespace) -> int:
    """Check the arguments, then export (if needed), build or load, and report the engine."""
    if args.checkpoint is None and args.onnx is None:
        raise CommandError("give --checkpoint PATH (exported first) or --onnx FILE (an "
                           "exported graph); see 'fasthmr engine build --help'.")
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise CommandError(f"checkpoint {args.checkpoint} does not exist.")
    if args.checkpoint is None and not Path(args.onnx).is_file():
        raise CommandError(f"ONNX file {args.onnx} does not exist; write it with 'fasthmr "
                           "export onnx' or pass --checkpoint.")
    settings = _settings(args)
    # Before TensorRT: a wrong file is the first thing to fix.
    given_graph = _checked_graph(args.onnx) if args.checkpoint is None else None

    from fasthmr_ros.engines.base import EngineError
    from fasthmr_ros.engines.tensorrt import cuda_device, load_or_build_engine
    from fasthmr_ros.engines.tensorrt_build import import_tensorrt

    try:
        trt = import_tensorrt()
        cuda_device(args.device)
    except EngineError as exc:
        raise CommandError(str(exc)) from None
    onnx_path = given_graph or _exported_graph(args)
    started = time.perf_counter()
    try:
        cached = load_or_build_engine(onnx_path, settings, args.device,
                                      cache_dir=args.cache_dir, force_rebuild=args.force,
                                      progress=True)
    except EngineError as exc:
        raise CommandError(str(exc)) from None
    elapsed = time.perf_counter() - started
    key = cached.key
    minimum, optimum, maximum = key.input_shapes
    print(f"engine: {cached.path}")
    print(f"cache key: {key.digest()}")
    print(f"  model sha256 {key.model_sha256}, {key.precision}, TensorRT {trt.__version__}, "
          f"{key.gpu_name} (sm {key.compute_capability}), batch {minimum[0]}..{maximum[0]} "
          f"(opt {optimum[0]})")
    print(f"{'built' if cached.built else 'found in the cache'} in {elapsed:.1f} s")
    return 0
