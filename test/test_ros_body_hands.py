"""The body node with ``attach_hands``, over real DDS on loopback (in this process).

A peer plays the camera and the hand node: it publishes a rendered person and a HandMeshArray
with a hand at the person's right wrist. The body node's fingers follow that hand for images
whose stamp is near the hands', and stay at rest otherwise; bad hand messages are skipped.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ros_test_support import Collector, random_domain_id, write_loopback_config
from test_body_hand_attachment import _anny_hand

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")
pytest.importorskip("mediapipe", reason="the body node's person detector needs mediapipe")
pytest.importorskip("safetensors")

from fasthmr_ros.pipeline.results import CameraIntrinsics  # noqa: E402
from fasthmr_ros.ros import messages, qos  # noqa: E402
from fasthmr_ros.ros.dds import DdsTransport  # noqa: E402
from fasthmr_ros.ros.parameters import BODY_NODE_PARAMETERS, ParameterSet  # noqa: E402

BODIES = "fasthmr_ros/msg/BodyMeshArray"
HANDS = "fasthmr_ros/msg/HandMeshArray"
CAMERA = CameraIntrinsics(300.0, 300.0, 160.0, 120.0)
STAMP = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def scene():
    """A rendered person, its Pose landmarks and a curled right hand at its right wrist."""
    import cv2
    from scipy.spatial.transform import Rotation

    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector
    from fasthmr_ros.pipeline.pose_landmarks import RIGHT_WRIST
    from fasthmr_ros.pipeline.sample_image import render_people

    model = AnnyBodyModel.default()
    image, _ = render_people(model, CAMERA, placements=(((0.0, 0.1, 2.6), 0.2),),
                             size=(320, 240))
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    with MediaPipePersonDetector() as detector:
        (person,) = detector.detect(rgb)
    local = Rotation.from_rotvec(np.tile([0.0, 0.0, 0.6], (19, 1))).as_matrix()
    hand = _anny_hand("right", Rotation.from_rotvec([0.3, 0.2, 0.1]).as_matrix(), local,
                      person.keypoints_2d[RIGHT_WRIST])
    hand.joints = np.tile(np.float32([0.0, 0.0, 2.6]), (21, 1))  # only checked for shape
    return model, rgb, hand


def _node(domain: int, attach: bool):
    from fasthmr_ros.ros.body_node import create_body_node

    params = ParameterSet(BODY_NODE_PARAMETERS)
    params.initialize({"attach_hands": attach, "smoothing": False, "tracking": False,
                       "score_threshold": 0.0, "use_camera_info": False,
                       "intrinsics": [CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy]})
    transport = DdsTransport("body_mesh_node", "/", domain_id=domain)
    node = create_body_node(transport, params)
    node.start()
    return node, transport


def _publisher(peer, topic, msgtype):
    pub = peer.create_publisher(topic, msgtype, qos.DEFAULT)
    deadline = time.monotonic() + 10
    while pub.subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    return pub


def test_the_body_node_attaches_the_hand_node_hands(scene, tmp_path, monkeypatch):
    from fasthmr_ros.ros.hand_messages import hand_mesh_array_message
    from fasthmr_ros.ros.image_codec import encode_image

    model, rgb, hand = scene
    monkeypatch.setenv("CYCLONEDDS_URI", "file://" + str(write_loopback_config(tmp_path)))
    domain = random_domain_id()
    node, transport = _node(domain, attach=True)
    peer = DdsTransport("peer", "/", domain_id=domain)
    out = Collector()
    peer.create_subscription("bodies", BODIES, qos.DEFAULT, out.callback("bodies"))
    try:
        hands_pub = _publisher(peer, "hands", HANDS)
        image_pub = peer.create_publisher("image", "sensor_msgs/msg/Image", qos.SENSOR_DATA)
        # Cyclone DDS validates CDR before delivery; other RMWs hand corrupt bytes to a raw
        # subscription: feed the node's callback directly.
        node.on_hands(b"\x00\x01\x00\x00 not a message")
        broken = hand_mesh_array_message(messages.make_header(STAMP - 10**6, "camera"),
                                         [hand])
        broken.hands[0].wrist_pose.orientation.w = 0.0
        broken.hands[0].wrist_pose.orientation.x = 0.0
        broken.hands[0].wrist_pose.orientation.y = 0.0
        broken.hands[0].wrist_pose.orientation.z = 0.0
        hands_pub.publish(messages.serialize(broken, HANDS))
        good = hand_mesh_array_message(messages.make_header(STAMP, "camera"), [hand])
        hands_pub.publish(messages.serialize(good, HANDS))
        deadline = time.monotonic() + 10
        while len(node.hands) < 2:
            assert time.monotonic() < deadline, "the node did not receive the hands"
            time.sleep(0.01)
        assert node.stats.messages_rejected >= 1
        deadline = time.monotonic() + 10
        while image_pub.subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        bodies = []
        # Near the hands' stamp (attached), then 1 s later (beyond attach_hands_max_age).
        for stamp in (STAMP + 40_000_000, STAMP + 1_000_000_000):
            image_pub.publish(messages.serialize(
                encode_image(rgb, messages.make_header(stamp, "camera")),
                "sensor_msgs/msg/Image"))
            assert node.spin_once(10.0)
            deadline = time.monotonic() + 10
            while out.count("bodies") < len(bodies) + 1:
                assert time.monotonic() < deadline, "no bodies came back"
                time.sleep(0.01)
            (msg,) = [messages.deserialize(out.messages["bodies"][-1], BODIES)]
            (body,) = msg.bodies
            bodies.append(np.array([[p.x, p.y, p.z] for p in body.joints]))
    finally:
        node.shutdown()
        transport.close()
        peer.close()
    attached, rest = bodies
    right = [model.bone(name) for name in model.assets.bone_names
             if name.startswith("finger") and name.endswith(".R")]
    left = [model.bone(name) for name in model.assets.bone_names
            if name.startswith("finger") and name.endswith(".L")]
    moved = np.linalg.norm((attached - attached[model.bone("wrist.R")])[right]
                           - (rest - rest[model.bone("wrist.R")])[right], axis=1)
    assert moved.max() > 0.01  # the right fingers curled (metres)
    np.testing.assert_allclose(attached[left], rest[left], atol=1e-4)  # the left did not
    # The same pose as the fit's own, offline.
    from fasthmr_ros.pipeline.body_fit import LandmarkBodyFitter
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector

    with MediaPipePersonDetector() as detector:
        people = detector.detect(rgb)
    (offline,) = LandmarkBodyFitter(model).estimate(rgb, people, CAMERA, hands=[hand])
    np.testing.assert_allclose(attached, offline.joints, atol=1e-4)


def test_attach_hands_needs_the_landmark_estimator(body_assets):
    from fasthmr_ros.ros.body_node import create_body_node
    from fasthmr_ros.ros.parameters import ParameterError

    params = ParameterSet(BODY_NODE_PARAMETERS)
    params.initialize({"attach_hands": True, "estimator": "hmr2",
                       "checkpoint": str(body_assets.root)})
    with DdsTransport("body_mesh_node", "/", domain_id=random_domain_id()) as transport:
        with pytest.raises(ParameterError, match="attach_hands needs the landmarks estimator"):
            create_body_node(transport, params)
