"""The body node with ``detector: external`` over real DDS on loopback (in this process).

A peer participant plays the camera and a person detector of the user's own: rendered Anny
people (CC0) as Image + CameraInfo, and PersonDetectionArray messages carrying the image's
stamp, some before and some after their image, and mid-stream one whose detections are all
malformed and one with a bad detection next to a good one. The node pairs them by stamp,
runs MediaPipe Pose inside each box for the landmark fit (or, with estimator hmr2, gives the
boxes straight to the network) and keeps serving. The test drives the node's loop itself
(``spin_once``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from ros_test_support import (
    Collector,
    connected_publisher,
    random_domain_id,
    write_loopback_config,
)
from test_body_external_boxes import boxes_around

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")
pytest.importorskip("mediapipe", reason="the Pose run inside the boxes needs mediapipe")
pytest.importorskip("safetensors")

from fasthmr_ros.pipeline.results import CameraIntrinsics  # noqa: E402
from fasthmr_ros.ros import messages, qos  # noqa: E402
from fasthmr_ros.ros.body_node import BodyMeshNode, create_body_node  # noqa: E402
from fasthmr_ros.ros.camera_info import camera_info_message  # noqa: E402
from fasthmr_ros.ros.dds import DdsTransport  # noqa: E402
from fasthmr_ros.ros.image_codec import encode_image  # noqa: E402
from fasthmr_ros.ros.mesh_messages import PERSON_DETECTION_ARRAY  # noqa: E402
from fasthmr_ros.ros.parameters import BODY_NODE_PARAMETERS, ParameterSet  # noqa: E402

BODIES = "fasthmr_ros/msg/BodyMeshArray"
CAMERA = CameraIntrinsics(300.0, 300.0, 160.0, 120.0)
SIZE = (320, 240)


@pytest.fixture(scope="module")
def scene():
    """A rendered frame with two people and the boxes a person detector would draw."""
    import cv2

    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.sample_image import render_people

    model = AnnyBodyModel.default()
    image, truths = render_people(model, CAMERA, placements=(((-0.6, 0.1, 3.0), 0.3),
                                                             ((0.7, 0.1, 3.4), -0.3)),
                                  size=SIZE)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), truths, boxes_around(truths, CAMERA, SIZE)


class Peer:
    """The camera, the external person detector and the consumer, on the node's domain."""

    def __init__(self, domain: int) -> None:
        self.transport = DdsTransport("peer", "/", domain_id=domain)
        self.out = Collector()
        self.transport.create_subscription("bodies", BODIES, qos.DEFAULT,
                                           self.out.callback("bodies"))
        self.publishers = {}

    def send(self, topic: str, msgtype: str, msg_or_raw) -> None:
        if topic not in self.publishers:
            self.publishers[topic] = connected_publisher(self.transport, topic, msgtype,
                                                         qos.DEFAULT)
        raw = msg_or_raw if isinstance(msg_or_raw, bytes) else messages.serialize(
            msg_or_raw, msgtype)
        self.publishers[topic].publish(raw)

    def frame(self, rgb: np.ndarray, stamp: int) -> None:
        header = messages.make_header(stamp, "camera_optical_frame")
        self.send("camera_info", "sensor_msgs/msg/CameraInfo",
                  camera_info_message(header, rgb.shape[1], rgb.shape[0], CAMERA))
        self.send("image", "sensor_msgs/msg/Image", encode_image(rgb, header))

    def detections(self, stamp: int, entries) -> None:
        det = messages.typestore().types["fasthmr_ros/msg/PersonDetection"]
        self.send("person_detections", PERSON_DETECTION_ARRAY, messages.new_message(
            PERSON_DETECTION_ARRAY, header=messages.make_header(stamp, "camera_optical_frame"),
            detections=[det(score=entry[0], box=np.array(entry[1], np.float32),
                            keypoints_2d=np.asarray(entry[2] if len(entry) > 2 else [],
                                                    np.float32))
                        for entry in entries]))

    def bodies(self) -> list:
        return [messages.deserialize(raw, BODIES) for raw in self.out.messages["bodies"]]


@pytest.fixture()
def external_node(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLONEDDS_URI", "file://" + str(write_loopback_config(tmp_path)))
    made = []

    def make(overrides: dict) -> tuple[BodyMeshNode, DdsTransport, Peer]:
        domain = random_domain_id()
        params = ParameterSet(BODY_NODE_PARAMETERS)
        params.initialize({"detector": "external", "score_threshold": 0.3,
                           "publish_markers": False, **overrides})
        transport = DdsTransport("body_mesh_node", "/", domain_id=domain)
        node = create_body_node(transport, params)
        node.start()
        peer = Peer(domain)
        made.append((node, transport, peer))
        return node, transport, peer

    yield make
    for node, transport, peer in made:
        node.shutdown()
        transport.close()
        peer.transport.close()


def _wait_received(node: BodyMeshNode, count: int) -> None:
    deadline = time.monotonic() + 10
    while node.stats.snapshot(time.monotonic()).frames_received < count:
        assert time.monotonic() < deadline, "the node did not receive the images"
        time.sleep(0.01)


def test_external_people_are_paired_by_stamp_and_fitted(external_node, scene, caplog):
    caplog.set_level(logging.WARNING)
    rgb, truths, boxes = scene
    node, _, peer = external_node({})
    assert node.detector is None  # no MediaPipe person detection: boxes come from the topic
    assert node.pipeline.landmarker is not None  # but Pose runs inside them for the fit
    people = [(0.9, boxes[0]), (0.8, boxes[1]), (0.1, [0, 0, 20, 20])]  # the last: too low

    peer.detections(101, people)  # detections before their image
    time.sleep(0.3)
    peer.frame(rgb, 101)
    _wait_received(node, 1)
    assert node.spin_once(5.0)

    # Mid-stream: a message that does not decode, then one with a bad detection in it.
    # (Bytes that do not decode cannot be sent: the DDS writer checks them against the type.)
    peer.detections(150, [(2.0, boxes[0]), (0.9, [0, float("nan"), 10, 10]),
                          (0.9, boxes[0], np.zeros(42, np.float32))])
    peer.frame(rgb, 102)  # image before its detections
    _wait_received(node, 2)
    assert not node.spin_once(0.3)  # no detections for 102 yet
    peer.detections(102, [(0.9, [50, 50, 10, 60]), (0.8, boxes[1])])  # inverted, good
    assert node.spin_once(5.0)
    peer.frame(rgb, 103)  # never gets detections: never answered
    _wait_received(node, 3)
    assert not node.spin_once(0.3)
    peer.frame(rgb, 104)
    peer.detections(104, people[:1])
    assert node.spin_once(5.0)  # still serving

    assert peer.out.wait_for(lambda: peer.out.count("bodies") == 3, 10)
    arrays = peer.bodies()
    assert [messages.stamp_to_ns(a.header.stamp) for a in arrays] == [101, 102, 104]
    assert [len(a.bodies) for a in arrays] == [2, 1, 1]
    first = arrays[0]
    assert sorted(round(b.score, 2) for b in first.bodies) == [0.8, 0.9]  # external scores
    for body in first.bodies:
        assert body.model == "anny_body" and np.isfinite(body.vertices).all()
        assert any(np.allclose(body.box, box, atol=1e-3) for box in boxes)
        assert 0.0 <= body.fit_residual_px < 20.0
        truth = min(truths, key=lambda t: abs(t[0][0] - body.root_pose.position.x))
        assert abs(body.root_pose.position.z - truth[0][2]) < 0.4  # rendered 3.0-3.4 m away
    np.testing.assert_allclose(arrays[1].bodies[0].box, boxes[1], atol=1e-3)
    # Tracking runs on external boxes too: the person seen in 101, 102 and 104 keeps an id.
    ids = [{b.id for b in a.bodies} for a in arrays]
    assert ids[1] <= ids[0] and ids[2] <= ids[0]
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    # The first problem of the malformed message is logged; the rest are throttled.
    assert "skipped an external person detection 0: score must be in [0, 1]" in warnings


def test_external_people_go_straight_to_hmr2(external_node, scene, body_assets, monkeypatch):
    from fasthmr_ros.pipeline import person_detector

    def refuse(*args, **kwargs):
        raise AssertionError("MediaPipe must not be built for hmr2 on external boxes")

    monkeypatch.setattr(person_detector.MediaPipePersonDetector, "__init__", refuse)
    rgb, _, boxes = scene
    node, _, peer = external_node({"estimator": "hmr2", "checkpoint": str(body_assets.root)})
    assert node.detector is None and node.pipeline.landmarker is None
    peer.frame(rgb, 7)
    peer.detections(7, [(0.9, boxes[0]), (0.6, boxes[1])])
    assert node.spin_once(10.0)
    assert peer.out.wait_for(lambda: peer.out.count("bodies") == 1, 10)
    (array,) = peer.bodies()
    assert len(array.bodies) == 2 and {b.model for b in array.bodies} == {"smpl"}
    assert all(b.vertices.shape == (6890 * 3,) for b in array.bodies)


def test_bag_bodies_with_external_people(scene, tmp_path, capsys):
    """``fasthmr bag bodies`` pairs a bag's PersonDetectionArray messages with its images."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from test_ros_bag import read_bag

    from fasthmr_ros.cli.main import main

    rgb, _, boxes = scene
    store = messages.typestore()
    det = store.types["fasthmr_ros/msg/PersonDetection"]
    start = 1_700_000_000_000_000_000
    with Writer(tmp_path / "in", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
        info = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo",
                                     typestore=store)
        people = writer.add_connection("/people", PERSON_DETECTION_ARRAY, typestore=store)
        for i in range(3):
            stamp = start + i * 33_000_000
            header = messages.make_header(stamp, "cam_optical")
            entries = [(0.9, boxes[0]), (0.7, boxes[1] if i != 1 else [5, 5, 1, 9])]
            writer.write(people, stamp + 500, messages.serialize(messages.new_message(
                PERSON_DETECTION_ARRAY, header=header,
                detections=[det(score=s, box=np.array(b, np.float32),
                                keypoints_2d=np.zeros(0, np.float32)) for s, b in entries]),
                PERSON_DETECTION_ARRAY))
            writer.write(image, stamp + 1000, messages.serialize(
                encode_image(rgb, header), "sensor_msgs/msg/Image"))
            writer.write(info, stamp + 2000, messages.serialize(
                camera_info_message(header, SIZE[0], SIZE[1], CAMERA),
                "sensor_msgs/msg/CameraInfo"))
    output = tmp_path / "bodies.mcap"
    assert main(["bag", "bodies", str(tmp_path / "in"), str(output), "--param",
                 "detector=external", "--remap", "person_detections:=/people"]) == 0
    assert "3 of 3 images processed" in capsys.readouterr().out
    out, _, _ = read_bag(output)
    assert [len(array.bodies) for _, array in out["/bodies"]] == [2, 1, 2]
    for _, array in out["/bodies"]:
        assert all(any(np.allclose(b.box, box, atol=1e-3) for box in boxes)
                   for b in array.bodies)
