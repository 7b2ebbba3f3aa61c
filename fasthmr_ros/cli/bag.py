"""``fasthmr bag hands|bodies IN OUT``: a mesh node over a rosbag2 recording."""

from __future__ import annotations

import argparse
import logging

from fasthmr_ros.cli.main import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bag`` sub-command."""
    parser = subparsers.add_parser(
        "bag",
        help="run a node over a rosbag2 recording (mcap or sqlite3) into a new bag",
        description="Run a node of this package offline over a rosbag2 recording.",
    )
    nodes = parser.add_subparsers(dest="node", metavar="NODE", required=True)
    hands = nodes.add_parser(
        "hands",
        help="hand meshes for every image of a bag",
        description=(
            "Replay IN (a rosbag2 folder, or a .mcap / .db3 file) through the hand mesh node "
            "and write its outputs (hands, hands/markers, hands/topology, /diagnostics, ...) "
            "stamped like the images to OUT: a single MCAP file when OUT ends in .mcap, else a "
            "rosbag2 folder. Every image is processed (no frame is dropped)."
        ),
        epilog="example: fasthmr bag hands recording/ hands.mcap --param checkpoint=/data/_DATA",
    )
    _add_bag_options(hands, "hand_detections:=/my/detections")
    hands.set_defaults(func=run_hands)
    bodies = nodes.add_parser(
        "bodies",
        help="body meshes for every image of a bag",
        description=(
            "Replay IN through the body mesh node and write its outputs (bodies, "
            "bodies/markers, bodies/topology, /diagnostics, ...) stamped like the images to "
            "OUT. Default estimator: MediaPipe Pose landmarks fitted with the Anny body "
            "(nothing to download)."
        ),
        epilog="example: fasthmr bag bodies recording/ bodies.mcap --param max_people=2",
    )
    _add_bag_options(bodies, "person_detections:=/my/people (detector external)")
    bodies.set_defaults(func=run_bodies)


def _add_bag_options(parser: argparse.ArgumentParser, remap_example: str) -> None:
    hands = parser  # the options are the same for both nodes
    hands.add_argument("input", help="input bag (folder, .mcap or .db3)")
    hands.add_argument("output", help="output: file.mcap, or a new rosbag2 folder")
    hands.add_argument("--image-topic", default=None,
                       help="image topic in the bag (default: the only Image topic)")
    hands.add_argument("--camera-info-topic", default=None,
                       help="CameraInfo topic (default: camera_info next to the image topic)")
    hands.add_argument("--params", action="append", default=[], metavar="FILE",
                       help="ROS 2 parameter YAML; repeatable")
    hands.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="set a parameter (value read as YAML); repeatable")
    hands.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                       help=f"remap another topic, e.g. {remap_example}")
    hands.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                       help="storage of a folder output (default mcap)")
    hands.add_argument("--copy-inputs", action="store_true",
                       help="also copy the input topics the node reads into the output")


def run_hands(args: argparse.Namespace) -> int:
    """Process the bag with the hand mesh node."""
    return _run("hands", args)


def run_bodies(args: argparse.Namespace) -> int:
    """Process the bag with the body mesh node."""
    return _run("bodies", args)


def _run(name: str, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fasthmr_ros.ros.bag import BagError, process_bag
    from fasthmr_ros.ros.dds_node import resolve_parameters
    from fasthmr_ros.ros.names import InvalidNameError
    from fasthmr_ros.ros.node_configurations import node_configuration
    from fasthmr_ros.ros.parameters import ParameterError

    configuration = node_configuration(name)
    log = logging.getLogger(configuration.node_name)
    try:
        params = resolve_parameters(f"/{configuration.node_name}", args.params, args.param,
                                    log, specs=configuration.parameters)
        if name == "hands":
            from fasthmr_ros.ros.hand_node import HAND_NODE
            from fasthmr_ros.ros.hand_setup import build_detector, build_pipeline

            kind = HAND_NODE
            pipeline, model = build_pipeline(params, log)
            detector = build_detector(params, log)
        else:
            from fasthmr_ros.ros.body_node import BODY_NODE, build_body_parts

            kind = BODY_NODE
            pipeline, detector = build_body_parts(params, log)
            model = pipeline.info
        with tqdm(unit="msg", desc="bag") as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = process_bag(
                args.input, args.output, params, pipeline, model, detector, log,
                image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                remaps=args.remap, storage=args.storage, copy_inputs=args.copy_inputs,
                progress=progress, kind=kind,
            )
    except (ParameterError, BagError, InvalidNameError) as exc:
        raise CommandError(str(exc)) from None
    print(f"{report.processed} of {report.images} images processed, {report.rejected} "
          f"messages rejected; wrote {report.output}:")
    for topic, count in sorted(report.written.items()):
        print(f"  {topic}: {count}")
    return 0
