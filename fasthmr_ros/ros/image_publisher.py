"""Publish frames as a camera driver does: ``Image`` (or ``CompressedImage``) + ``CameraInfo``.

Both messages of a frame carry the same stamp (wall-clock time of publication) and the
camera's optical frame, so the hand mesh node can be driven without ROS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.pipeline.video import IMAGE_SUFFIXES
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.camera_info import CAMERA_INFO, camera_info_message
from fasthmr_ros.ros.image_codec import (
    COMPRESSED_IMAGE,
    IMAGE,
    encode_compressed_image,
    encode_image,
)
from fasthmr_ros.ros.qos import DEFAULT, SENSOR_DATA
from fasthmr_ros.ros.transport import Transport


class CameraPublisher:
    """Publishes one camera's frames and calibration.

    Args:
        transport: where to publish.
        image_topic: base image topic (``image``); compressed frames go to ``<topic>/compressed``.
        camera_info_topic: CameraInfo topic.
        frame_id: the camera's optical frame.
        compression: ``None`` for raw images, ``"jpeg"`` or ``"png"``.
        encoding: raw image encoding (``rgb8``, ``bgr8`` or ``mono8``).
        intrinsics: calibration to announce; ``None`` announces an uncalibrated camera.
        reliable: reliable QoS instead of the sensor-data (best effort) profile.

    """

    def __init__(
        self,
        transport: Transport,
        image_topic: str = "image",
        camera_info_topic: str = "camera_info",
        frame_id: str = "camera_optical_frame",
        compression: str | None = None,
        encoding: str = "rgb8",
        intrinsics: CameraIntrinsics | None = None,
        reliable: bool = False,
    ) -> None:
        self.store = messages.typestore()
        self.frame_id = frame_id
        self.compression = compression
        self.encoding = encoding
        self.intrinsics = intrinsics
        qos = DEFAULT if reliable else SENSOR_DATA
        if compression is None:
            self.image_type = IMAGE
            self.images = transport.create_publisher(image_topic, IMAGE, qos)
        else:
            self.image_type = COMPRESSED_IMAGE
            self.images = transport.create_publisher(f"{image_topic}/compressed",
                                                     COMPRESSED_IMAGE, qos)
        self.camera_info = transport.create_publisher(camera_info_topic, CAMERA_INFO, qos)

    def image_message(self, rgb: np.ndarray, stamp_ns: int) -> Any:
        """Return the image message of a frame."""
        header = messages.make_header(stamp_ns, self.frame_id, self.store)
        if self.compression is None:
            return encode_image(rgb, header, self.encoding, self.store)
        return encode_compressed_image(rgb, header, self.compression, store=self.store)

    def publish(self, rgb: np.ndarray, stamp_ns: int) -> int:
        """Publish the frame and its CameraInfo with stamp ``stamp_ns``; return image bytes."""
        raw = messages.serialize(self.image_message(rgb, stamp_ns), self.image_type, self.store)
        header = messages.make_header(stamp_ns, self.frame_id, self.store)
        info = camera_info_message(header, rgb.shape[1], rgb.shape[0], self.intrinsics,
                                   self.store)
        self.camera_info.publish(messages.serialize(info, CAMERA_INFO, self.store))
        self.images.publish(raw)
        return len(raw)

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """Wait until the image topic has a subscriber; return whether one came."""
        deadline = time.monotonic() + timeout_s
        while self.images.subscription_count() == 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True


def source_rate(spec: str, rate: float | None = None, default: float = 30.0) -> float:
    """Return the frame rate to publish ``spec`` at.

    That is ``rate`` if given, else the rate the video file or camera reports, else ``default``
    (image files and folders).

    Raises:
        ValueError: for a rate that is not positive.

    """
    if rate is not None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        return float(rate)
    path = Path(spec)
    is_camera = spec.isdigit() and not path.exists()
    if not is_camera and (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES):
        return default
    capture = cv2.VideoCapture(int(spec) if is_camera else spec)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return float(fps) if fps and fps > 0 else default


def publish_frames(
    publisher: CameraPublisher,
    frames: Iterable[np.ndarray],
    fps: float,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Publish frames at ``fps`` (a fixed schedule: slow frames do not shift later ones).

    Returns:
        The number of frames published.

    """
    period = 1.0 / fps
    start = time.monotonic()
    count = 0
    for rgb in frames:
        if stop is not None and stop.is_set():
            break
        if max_frames is not None and count >= max_frames:
            break
        delay = start + count * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        publisher.publish(rgb, time.time_ns())
        count += 1
        if on_frame is not None:
            on_frame(count)
    return count
