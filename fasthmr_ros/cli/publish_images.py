"""``fasthmr publish-images SOURCE``: a camera driver over DDS (Image + CameraInfo)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator

import numpy as np

from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.pipeline.results import CameraIntrinsics


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``publish-images`` sub-command."""
    parser = subparsers.add_parser(
        "publish-images",
        help="publish a video, an image folder or a camera as ROS 2 Image + CameraInfo (DDS)",
        description=(
            "Publish frames as sensor_msgs/Image (or CompressedImage on <topic>/compressed) "
            "and sensor_msgs/CameraInfo with identical stamps, over Cyclone DDS in the ROS 2 "
            "wire format (no ROS install needed; domain from ROS_DOMAIN_ID). Videos and "
            "cameras go at their own rate, folders at --rate."
        ),
        epilog="example: fasthmr publish-images clip.mp4 --namespace /camera --loop",
    )
    parser.add_argument("source", nargs="+",
                        help="video files, image folders, images or a camera index (0)")
    parser.add_argument("--rate", type=float, default=None,
                        help="frames per second (default: the source's rate; folders 30)")
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument("--count", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--topic", default="image", help="image topic (default image)")
    parser.add_argument("--camera-info-topic", default="camera_info",
                        help="CameraInfo topic (default camera_info)")
    parser.add_argument("--namespace", default="/", help="namespace of the topics")
    parser.add_argument("--frame-id", default="camera_optical_frame",
                        help="header.frame_id (the camera's optical frame)")
    parser.add_argument("--encoding", choices=("rgb8", "bgr8", "mono8"), default="rgb8",
                        help="raw image encoding (default rgb8)")
    parser.add_argument("--compressed", choices=("jpeg", "png"), default=None,
                        help="publish CompressedImage on <topic>/compressed instead")
    parser.add_argument("--intrinsics", default=None, metavar="FX,FY,CX,CY",
                        help="calibration for CameraInfo (default: all-zero K = uncalibrated)")
    parser.add_argument("--reliable", action="store_true",
                        help="reliable QoS (default: best effort, the sensor-data profile)")
    parser.add_argument("--wait", type=float, default=5.0, metavar="SECONDS",
                        help="wait this long for a subscriber before starting (default 5)")
    parser.set_defaults(func=run)


def parse_intrinsics(text: str | None) -> CameraIntrinsics | None:
    """Parse ``FX,FY,CX,CY`` into :class:`CameraIntrinsics` (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
        return CameraIntrinsics(fx, fy, cx, cy)
    except ValueError as exc:
        raise CommandError(f"--intrinsics must be FX,FY,CX,CY with fx, fy > 0: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Publish the source."""
    import itertools
    import threading

    import cv2
    from tqdm import tqdm

    from fasthmr_ros.pipeline.video import FrameSource
    from fasthmr_ros.ros.dds import DdsError, DdsTransport
    from fasthmr_ros.ros.image_publisher import CameraPublisher, publish_frames, source_rate
    from fasthmr_ros.ros.names import InvalidNameError

    intrinsics = parse_intrinsics(args.intrinsics)
    try:
        source = FrameSource(args.source)
        fps = source_rate(args.source[0], args.rate)
        length = source.total
    except ValueError as exc:
        raise CommandError(str(exc)) from None

    def frames() -> Iterator[np.ndarray]:
        passes = itertools.count() if args.loop else range(1)
        for _ in passes:
            for frame in source:
                yield cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)

    log = logging.getLogger("fasthmr.publish_images")
    try:
        transport = DdsTransport("image_publisher", args.namespace, logger=log)
    except (DdsError, InvalidNameError) as exc:
        raise CommandError(str(exc)) from None
    stop = threading.Event()
    try:
        camera = CameraPublisher(
            transport, args.topic, args.camera_info_topic, args.frame_id, args.compressed,
            args.encoding, intrinsics, args.reliable,
        )
        log.info(f"publishing {' '.join(args.source)} at {fps:.1f} fps on "
                 f"{camera.images.topic} and {camera.camera_info.topic} "
                 f"(DDS domain {transport.domain_id})")
        if args.wait > 0 and not camera.wait_for_subscribers(args.wait):
            log.warning(f"no subscriber on {camera.images.topic} after {args.wait} s; "
                        "publishing anyway")
        total = args.count if args.count is not None else (None if args.loop else length)
        with tqdm(total=total, unit="frame", desc="publish") as bar:
            count = publish_frames(camera, frames(), fps, args.count, stop,
                                   on_frame=lambda _: bar.update(1))
    except KeyboardInterrupt:
        count = None
    except ValueError as exc:  # an unreadable frame
        raise CommandError(str(exc)) from None
    finally:
        transport.close()
    if count is not None:
        log.info(f"published {count} frames")
    return 0
