"""Helpers shared by the test_ros_* files: images, hand results, loopback DDS, collectors."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation
from shared_data import PHOTO_DIR

from fasthmr_ros.models.constants import NUM_BETAS, NUM_JOINTS, NUM_VERTICES
from fasthmr_ros.pipeline.results import HandResult

PHOTO = PHOTO_DIR / "test1.jpg"

LOOPBACK_XML = """<?xml version="1.0" encoding="UTF-8"?>
<CycloneDDS xmlns="https://cdds.io/config">
  <Domain Id="any">
    <General>
      <Interfaces><NetworkInterface name="lo" multicast="false"/></Interfaces>
      <AllowMulticast>false</AllowMulticast>
    </General>
    <Discovery>
      <ParticipantIndex>auto</ParticipantIndex>
      <MaxAutoParticipantIndex>40</MaxAutoParticipantIndex>
      <Peers><Peer address="127.0.0.1"/></Peers>
    </Discovery>
  </Domain>
</CycloneDDS>
"""


def sample_rgb(width: int = 640, height: int = 480) -> np.ndarray:
    """A real photograph of hands when available, else the package's drawn sample hand."""
    bgr = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR) if PHOTO.exists() else None
    if bgr is None:
        from fasthmr_ros.pipeline.sample_image import draw_sample_hand

        bgr = draw_sample_hand(width, height)
    bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def make_hand_result(side: str = "right", seed: int = 0, track_id: int | None = None,
                     score: float = 0.9) -> HandResult:
    """A HandResult with plausible geometry: a hand about 0.5 m in front of the camera."""
    rng = np.random.default_rng(seed)
    cam_t = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), 0.5])
    vertices = rng.normal(0.0, 0.03, (NUM_VERTICES, 3)) + cam_t
    joints = rng.normal(0.0, 0.03, (NUM_JOINTS, 3)) + cam_t
    focal, cx, cy = 600.0, 320.0, 240.0
    keypoints = np.stack([focal * joints[:, 0] / joints[:, 2] + cx,
                          focal * joints[:, 1] / joints[:, 2] + cy], axis=1)
    x1, y1 = keypoints.min(axis=0) - 5
    x2, y2 = keypoints.max(axis=0) + 5
    rotations = Rotation.random(17, random_state=seed).as_matrix()
    return HandResult(
        side=side,
        score=score,
        box=np.array([x1, y1, x2, y2]),
        keypoints_2d=keypoints.astype(np.float32),
        joints=joints.astype(np.float32),
        vertices=vertices.astype(np.float32),
        global_orient=rotations[0],
        hand_pose=rotations[1:16],
        betas=rng.normal(0, 1, NUM_BETAS),
        cam_t=cam_t,
        wrist_rotation=rotations[16],
        track_id=track_id,
    )


def write_loopback_config(folder: Path) -> Path:
    """Write a loopback-only Cyclone DDS configuration and return its path."""
    path = folder / "cyclonedds-loopback.xml"
    path.write_text(LOOPBACK_XML)
    return path


def random_domain_id() -> int:
    """A domain id for one test (random, so concurrent runs on one machine do not meet)."""
    return random.Random(os.getpid() ^ time.time_ns()).randint(30, 229)


def connected_publisher(transport: Any, topic: str, msgtype: str, profile: Any,
                        timeout: float = 10.0) -> Any:
    """A publisher of ``transport`` that has waited (up to ``timeout`` s) for a subscriber."""
    publisher = transport.create_publisher(topic, msgtype, profile)
    deadline = time.monotonic() + timeout
    while publisher.subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    return publisher


class Collector:
    """Collects raw messages from subscriptions (thread-safe) and waits for conditions."""

    def __init__(self) -> None:
        self.messages: dict[str, list[bytes]] = {}
        self._cond = threading.Condition()

    def callback(self, topic: str) -> Callable[[bytes], None]:
        """Return a subscription callback storing into ``topic``'s list."""
        self.messages.setdefault(topic, [])

        def store(raw: bytes) -> None:
            with self._cond:
                self.messages[topic].append(raw)
                self._cond.notify_all()

        return store

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (checked on every new message) or time is up."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.2))
            return True

    def count(self, topic: str) -> int:
        """Number of messages received on ``topic``."""
        with self._cond:
            return len(self.messages.get(topic, []))


def to_idl_sample(msg: Any, msgtype: str, store: Any) -> Any:
    """Fill the cyclonedds struct type of ``msgtype`` field by field from a rosbags message."""
    from rosbags.interfaces import Nodetype

    from fasthmr_ros.ros.dds import _wire_type

    cls = _wire_type(msgtype, store)
    _, fielddefs = store.fielddefs[msgtype]

    def convert(value: Any, desc: Any) -> Any:
        kind, spec = desc
        if kind == Nodetype.BASE:
            return value.item() if hasattr(value, "item") else value
        if kind == Nodetype.NAME:
            return to_idl_sample(value, spec, store)
        sub = spec[0]
        return [convert(v, sub) for v in (value.tolist() if isinstance(value, np.ndarray)
                                          else value)]

    return cls(**{name: convert(getattr(msg, name), desc) for name, desc in fielddefs})
