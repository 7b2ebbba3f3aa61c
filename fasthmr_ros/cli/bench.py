"""``fasthmr bench``: per-stage latency over model x engine x precision x batch x input scale."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.cli.model_args import MANO_DIR_HELP, SMPL_DIR_HELP

T = TypeVar("T")


def _listed(kind: Callable[[str], T], what: str) -> Callable[[str], list[T]]:
    """An argparse type for comma-separated lists of ``kind``."""

    def parse(text: str) -> list[T]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list of {what}")
        try:
            return [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad list of {what}: {text!r}") from None

    return parse


#: ``--cuda-graphs`` words and the torch engine's ``cuda_graphs`` option each stands for.
CUDA_GRAPH_SETTINGS: dict[str, bool | None] = {"default": None, "on": True, "off": False}


def cuda_graph_setting(word: str) -> bool | None:
    """``on`` / ``off`` / ``default`` as the engine option (``ValueError`` for other words)."""
    if word not in CUDA_GRAPH_SETTINGS:
        raise ValueError(word)
    return CUDA_GRAPH_SETTINGS[word]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help="measure per-stage latency of models, engines, precisions and batch sizes",
        description=(
            "Time decode, crop, network, mesh model (MANO or SMPL) and post-processing for "
            "every combination of "
            "--models x --engines x --precisions x --input-scales x --batches on a synthetic "
            "640x480 frame (warm-up first, GPU synchronised around each stage; median, p90, "
            "p99). Prints a markdown table; --json and --plot write the full results and a PNG. "
            "Speed-ups compare variants of the same run against the first measured variant (or "
            "--baseline). With body and hand models, a second table sets each body variant's "
            "stages beside those of the hand variant alike but for the model (e.g. --models "
            "small,body-small). Combinations an engine cannot run (fp16 on CPU, ...) are listed "
            "as skipped with the reason. Example: fasthmr bench --models teacher,"
            "mobilenetv3_large_100 --engines torch,onnxruntime --batches 1,4 --json bench.json "
            "--plot bench.png"
        ),
    )
    parser.add_argument(
        "--models",
        type=_listed(str, "models"),
        default=["small"],
        help="comma-separated: 'teacher' (ViT-H, random weights unless teacher=CHECKPOINT), "
        "'small' (tiny test model), a timm student backbone (mobilenetv3_large_100, "
        "mobilevit_s, resnet50, convnext_large, ...: random weights) or a checkpoint path "
        "(NAME=PATH to label it); bodies: 'body' (HMR2.0's ViT-H, random weights, synthetic "
        "SMPL), 'body-small' or body=CHECKPOINT (HMR2.0's epoch=35-step=1000000.ckpt or its "
        "4DHumans folder); default small",
    )
    parser.add_argument("--engines", type=_listed(str, "engines"), default=["torch"],
                        help="comma-separated: torch, onnxruntime, tensorrt (default torch)")
    parser.add_argument("--precisions", type=_listed(str, "precisions"), default=["fp32"],
                        help="comma-separated: fp32, fp16, bf16 (default fp32)")
    parser.add_argument("--batches", type=_listed(int, "batch sizes"), default=[1],
                        help="comma-separated hands (people, for body models) per frame, e.g. "
                        "1,2,8 (default 1)")
    parser.add_argument(
        "--input-scales",
        type=_listed(float, "input scales"),
        default=[1.0],
        help="comma-separated backbone resolutions relative to 256x192, e.g. 1,0.75 (training-"
        "free speed-up; the table's output change column shows its effect; default 1)",
    )
    parser.add_argument(
        "--cuda-graphs",
        type=_listed(cuda_graph_setting, "CUDA-graph settings (on, off, default)"),
        default=[None],
        help="comma-separated on, off, default: CUDA graphs of the torch engine as a variant "
        "dimension, e.g. on,off to compare replayed graphs (label /graphs) with eager launches "
        "(/eager); 'on' is skipped on CPU and by other engines (default: default, i.e. on for "
        "CUDA)",
    )
    parser.add_argument(
        "--merge-plans",
        type=_listed(str, "merge plans"),
        default=["none"],
        help="comma-separated FastHMR merge plan files for the ViT teachers, 'none' for the "
        "model as trained, e.g. none,plan.json: every plan is measured in the same run, with "
        "its output change (mm) against the unmerged model and its counted MACs (default none)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up frames (default 3)")
    parser.add_argument("--iterations", type=int, default=20,
                        help="timed frames per variant (default 20)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for PyTorch and ONNX Runtime (default: their own)")
    parser.add_argument("--mano-dir", help=f"for the checkpoints in --models: {MANO_DIR_HELP}")
    parser.add_argument("--smpl-dir", help=f"for the body checkpoints: {SMPL_DIR_HELP}")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="package cache root for exported ONNX graphs and TensorRT engines "
                        "(default ~/.cache/fasthmr_ros, or $FASTHMR_CACHE)")
    parser.add_argument("--baseline", help="variant label the speed-ups refer to "
                        "(e.g. teacher/torch/fp32/b1; default: the first measured)")
    parser.add_argument("--detector", choices=("auto", "mediapipe", "none"), default="auto",
                        help="time this hand detector on the frame too; its boxes are not used, "
                        "every variant reconstructs --batches hands (default auto: mediapipe "
                        "when installed, else no detect stage)")
    parser.add_argument(
        "--fit", type=_listed(int, "hand counts"), metavar="N,...",
        help="also time the default hand path (MediaPipe landmarks fitted with the Anny hand, "
        "no network) with N hands per frame on the rendered sample image, e.g. 1,2,4; 'fit' "
        "is the fit, skinning and camera placement of all N hands. --fit alone (with "
        "--models none) measures only this path",
    )
    parser.add_argument("--no-serialize", action="store_true",
                        help="leave out the HandMeshArray serialisation stage")
    parser.add_argument("--body-fit", action="store_true",
                        help="time the landmark-fit body path instead (person detection, fit "
                        "per body, skinning, Anny's own forward for comparison)")
    parser.add_argument("--json", metavar="FILE", help="write the full results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG plot (needs matplotlib)")
    parser.set_defaults(func=run)


def _optional_stages(args: argparse.Namespace) -> Any:
    """The detector and the message serializer, from the layers above the engines."""
    from fasthmr_ros.engines.benchmark import OptionalStages, is_body_model

    bodies = [is_body_model(spec) for spec in args.models]
    detector = body_detector = None
    if args.detector != "none":
        try:
            from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector
            from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

            # Each detector only when a model of its kind is measured (each loads models).
            if not all(bodies):
                detector = MediaPipeHandDetector(video_mode=True).detect
            if any(bodies):
                body_detector = MediaPipePersonDetector().detect
        except ImportError as exc:
            if args.detector == "mediapipe":
                raise CommandError(str(exc)) from None
            print(f"note: no detect stage ({exc})")
    serializer = body_serializer = None
    if not args.no_serialize:
        from fasthmr_ros.ros import messages
        from fasthmr_ros.ros.hand_messages import HAND_MESH_ARRAY, hand_mesh_array_message
        from fasthmr_ros.ros.mesh_messages import BODY_MESH_ARRAY, body_mesh_array_message

        store = messages.typestore()
        header = messages.make_header(0, "camera_optical_frame", store)

        def serialize(build: Any, msgtype: str) -> Any:
            def run(results: list) -> bytes:
                return messages.serialize(build(header, results, store), msgtype, store)

            return run

        serializer = serialize(hand_mesh_array_message, HAND_MESH_ARRAY)
        body_serializer = serialize(body_mesh_array_message, BODY_MESH_ARRAY)
    return OptionalStages(detector=detector, serializer=serializer, body_detector=body_detector,
                          body_serializer=body_serializer)


def _run_fit(args: argparse.Namespace) -> None:
    """Time the landmark-fit hand path and print (and with --json/--markdown, write) it."""
    import json

    from fasthmr_ros.engines.fit_benchmark import fit_markdown_table, run_fit_benchmark

    try:
        from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector
    except ImportError as exc:
        raise CommandError(f"--fit needs the MediaPipe detector: {exc}") from None
    optional = _optional_stages(args)
    with MediaPipeHandDetector(max_hands=4, video_mode=True) as detector:
        try:
            results = run_fit_benchmark(
                args.fit, detector.detect, args.warmup, args.iterations,
                time_detector=args.detector != "none", serializer=optional.serializer)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    table = fit_markdown_table(results)
    print("Landmark fit (default hand path, no network):\n\n" + table)
    if args.json:
        path = args.json.rsplit(".", 1)[0] + "_fit.json"
        with open(path, "w", encoding="utf-8") as stream:
            json.dump([r.to_dict() for r in results], stream, indent=2)
        print(f"fit json: {path}")


def engine_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Options of each engine from ``--threads`` and ``--cache-dir``."""
    options: dict[str, dict[str, Any]] = {"onnxruntime": {}, "tensorrt": {}}
    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f"--threads must be >= 1, got {args.threads}")
        options["onnxruntime"]["threads"] = args.threads
    if args.cache_dir:
        for engine in ("onnxruntime", "tensorrt"):
            options[engine]["cache_dir"] = args.cache_dir
    return options


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write its outputs."""
    if args.body_fit:
        return _run_body_fit(args)
    import torch

    from fasthmr_ros.engines.base import EngineError
    from fasthmr_ros.engines.benchmark import (
        markdown_table,
        run_benchmark,
        write_json,
        write_plot,
    )
    from fasthmr_ros.models.checkpoint import CheckpointError

    options = engine_options(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.fit:
        _run_fit(args)
        if args.models == ["none"]:
            return 0
    try:
        report = run_benchmark(
            args.models, args.engines, args.precisions, args.batches, args.input_scales,
            device=args.device, warmup=args.warmup, iterations=args.iterations,
            mano_dir=args.mano_dir, engine_options=options, baseline=args.baseline,
            optional=_optional_stages(args), cuda_graphs=args.cuda_graphs,
            merge_plans=args.merge_plans, smpl_dir=args.smpl_dir,
        )
    except (EngineError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    table = markdown_table(report)
    print(table)
    try:
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as stream:
                stream.write(table)
            print(f"table: {args.markdown}")
        if args.json:
            print(f"json: {write_json(report, args.json)}")
        if args.plot:
            print(f"plot: {write_plot(report, args.plot)}")
    except ImportError as exc:
        raise CommandError(f"--plot needs matplotlib ({exc}); pip install matplotlib") from None
    except OSError as exc:
        raise CommandError(f"cannot write the results: {exc}") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not report.measured():
        raise CommandError("every variant was skipped (see the list above)")
    return 0


def _run_body_fit(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from fasthmr_ros.models.anny_body import AnnyAssetsError
    from fasthmr_ros.pipeline.body_benchmark import body_markdown, run_body_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = run_body_benchmark(args.warmup, args.iterations,
                                    detector=args.detector != "none")
    except (AnnyAssetsError, ImportError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None
    table = body_markdown(report)
    print(table)
    try:
        if args.markdown:
            Path(args.markdown).write_text(table + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
    except OSError as exc:
        raise CommandError(f"cannot write the results: {exc}") from None
    return 0
