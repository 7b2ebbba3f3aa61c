"""Measure the hand mesh node's own cost per frame over DDS (everything but the network).

A camera participant publishes Image + CameraInfo, a consumer process subscribes to every
output (as RViz or a grasp planner would, in a process of its own), and the node in between
runs the real pipeline with two fixed hand boxes. The node's stage timings (decode, convert,
serialize, publish) and the message sizes are collected per frame; detection and inference are
reported separately and are not overhead.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fasthmr_ros.pipeline.results import HandBox
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.dds import DdsTransport
from fasthmr_ros.ros.hand_node import HandMeshNode
from fasthmr_ros.ros.hand_setup import build_pipeline
from fasthmr_ros.ros.image_publisher import CameraPublisher
from fasthmr_ros.ros.parameters import ParameterSet

# The consumer process: subscribes to the node's outputs and discards them until killed.
_CONSUMER = """
import sys, time
from fasthmr_ros.ros import qos
from fasthmr_ros.ros.dds import DdsTransport
transport = DdsTransport("overhead_consumer", domain_id=int(sys.argv[1]))
for topic, msgtype, profile in (
    ("hands", "fasthmr_ros/msg/HandMeshArray", qos.DEFAULT),
    ("hands/markers", "visualization_msgs/msg/MarkerArray", qos.DEFAULT),
    ("hands/debug_image", "sensor_msgs/msg/Image", qos.SENSOR_DATA),
    ("/tf", "tf2_msgs/msg/TFMessage", qos.TF),
):
    transport.create_subscription(topic, msgtype, profile, lambda raw: None)
while True:
    time.sleep(1.0)
"""


class FixedBoxes:
    """A box source that returns the same boxes for every image."""

    def __init__(self, boxes: list[HandBox]) -> None:
        self.boxes = boxes

    def detect(self, image_rgb: np.ndarray) -> list[HandBox]:
        """Return the fixed boxes."""
        return list(self.boxes)


def two_hand_boxes(width: int, height: int) -> list[HandBox]:
    """A left and a right hand box side by side in a ``width x height`` image."""
    w, h = width / 4, height / 3
    return [
        HandBox(width * 0.15, height * 0.3, width * 0.15 + w, height * 0.3 + h, side="left",
                score=0.9),
        HandBox(width * 0.6, height * 0.3, width * 0.6 + w, height * 0.3 + h, side="right",
                score=0.9),
    ]


def measure_node_overhead(
    frames: int = 30,
    width: int = 640,
    height: int = 480,
    overrides: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    image: np.ndarray | None = None,
    domain_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    landmark_fit: bool = False,
) -> dict[str, Any]:
    """Run ``frames`` frames through the node over DDS and summarise its per-frame cost.

    Args:
        frames: frames to measure (after two warm-up frames).
        width: image width.
        height: image height.
        overrides: node parameters (e.g. ``{"publish_markers": False}``).
        checkpoint: model checkpoint; random-weights test assets when omitted (inference time
            then means nothing, the overhead does not depend on the weights).
        image: the RGB frame to send (a gradient when omitted).
        domain_id: DDS domain (``ROS_DOMAIN_ID`` when omitted).
        progress: called with the number of frames done.
        landmark_fit: measure the default path instead (no checkpoint: Anny hands fitted to
            MediaPipe landmarks, 1609 vertices per hand) on the rendered sample image, with
            the two hands MediaPipe finds there as the fixed boxes.

    Returns:
        Median milliseconds per stage, the overhead (decode + convert + serialize + publish)
        median and p95 in wall time and its median in CPU time of the node's thread (robust
        to other processes competing for the CPU), and the median bytes per output topic.

    """
    with tempfile.TemporaryDirectory() as scratch:
        boxes = None
        if landmark_fit:
            from fasthmr_ros.pipeline.mediapipe_detector import MediaPipeHandDetector
            from fasthmr_ros.pipeline.sample_image import render_sample_hands

            checkpoint, detector_name = "", "mediapipe"
            if image is None:
                image = render_sample_hands(width, height)[:, :, ::-1].copy()
            with MediaPipeHandDetector(max_hands=2) as detector:
                boxes = detector.detect(image)
        elif checkpoint is None:
            from fasthmr_ros.models.test_assets import write_test_assets

            checkpoint = str(write_test_assets(Path(scratch)).checkpoint)
        if not landmark_fit:
            detector_name = "full_frame"
        params = ParameterSet()
        # The boxes come from FixedBoxes below (no detector model is loaded or timed).
        params.initialize({"checkpoint": checkpoint, "detector": detector_name,
                           **(overrides or {})})
        pipeline, model = build_pipeline(params)
        rgb = image if image is not None else _gradient(width, height)
        height, width = rgb.shape[:2]
        if boxes is None:
            boxes = two_hand_boxes(width, height)
        node_transport = DdsTransport("hand_mesh_node", domain_id=domain_id)
        peer = DdsTransport("overhead_camera", domain_id=domain_id)
        root = str(Path(__file__).resolve().parents[2])
        consumer = subprocess.Popen(
            [sys.executable, "-c", _CONSUMER, str(node_transport.domain_id)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (root, os.environ.get("PYTHONPATH", "")) if p)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            node = HandMeshNode(node_transport, params, pipeline, model,
                                FixedBoxes(boxes))
            node.start()
            camera = CameraPublisher(peer, reliable=True)
            camera.wait_for_subscribers(10.0)
            _wait_for_consumer(node, consumer)
            rows = []
            for index in range(frames + 2):
                stamp = time.time_ns()
                camera.publish(rgb, stamp)
                frame = _wait_for_frame(node)
                timings = node.process_frame(frame)
                if timings is None:
                    raise RuntimeError("the node rejected the measurement frame")
                if index >= 2:
                    rows.append(timings)
                    if progress is not None:
                        progress(len(rows))
        finally:
            consumer.kill()
            consumer.wait()
            node_transport.close()
            peer.close()

    def median_ms(values: list[float]) -> float:
        return round(1e3 * statistics.median(values), 3)

    # The subscription callback's CDR decode (zero-copy for the pixels) is part of decoding.
    raw_image = messages.serialize(camera.image_message(rgb, 0), camera.image_type)
    cdr_times = []
    for _ in range(len(rows)):
        start = time.perf_counter()
        messages.deserialize(raw_image, camera.image_type)
        cdr_times.append(time.perf_counter() - start)
    for timings, cdr in zip(rows, cdr_times, strict=True):
        timings.decode += cdr
        timings.overhead_cpu += cdr
    overheads = sorted(t.overhead for t in rows)
    return {
        "frames": len(rows),
        "image": f"{width}x{height}",
        "hands": len(boxes),
        "model": model.name,
        "decode_ms": median_ms([t.decode for t in rows]),
        "convert_ms": median_ms([t.convert for t in rows]),
        "serialize_ms": median_ms([t.serialize for t in rows]),
        "publish_ms": median_ms([t.publish for t in rows]),
        "overhead_ms": median_ms(overheads),
        "overhead_p95_ms": round(1e3 * overheads[int(0.95 * (len(overheads) - 1))], 3),
        "overhead_cpu_ms": median_ms([t.overhead_cpu for t in rows]),
        "inference_ms": median_ms([t.infer for t in rows]),
        "bytes": {key: int(statistics.median(t.sizes.get(key, 0) for t in rows))
                  for key in sorted({k for t in rows for k in t.sizes})},
        "image_bytes": len(raw_image),
    }


def _wait_for_consumer(node: HandMeshNode, consumer: subprocess.Popen,
                       timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    publishers = [node._publishers[key] for key in ("hands", "markers")]
    while not all(p.subscription_count() for p in publishers):
        if consumer.poll() is not None:
            raise RuntimeError("the consumer process exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the consumer process did not subscribe within {timeout} s")
        time.sleep(0.05)
    time.sleep(0.3)


def _wait_for_frame(node: HandMeshNode, timeout: float = 10.0) -> Any:
    frame = node.slot.take(timeout)
    if frame is None:
        raise RuntimeError("the node received no image within 10 s")
    return frame


def _gradient(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to((x + y) / 2, (height, width, 3)).astype(np.uint8)
