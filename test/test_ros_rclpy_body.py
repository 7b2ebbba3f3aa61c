"""The body mesh node under real rclpy (ROS 2 Jazzy from PyPI, scripts/setup-ros.sh).

``fasthmr node bodies --transport rclpy`` runs in its own process with its default estimator
(MediaPipe Pose landmarks fitted with the CC0 Anny body); an rclpy client publishes rendered
people (CC0 Anny bodies, not photographs) with a malformed image mid-stream and checks the
BodyMeshArray, the markers, the latched topology and a clean SIGINT. With ``detector:
external`` a second node takes the people from ``PersonDetectionArray`` messages the client
publishes with each image's header (every fifth one with an inverted box next to a good one).
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from rclpy_test_support import (
    ImageStream,
    RosClient,
    rclpy_available,
    ros_environment,
    stamp_ns,
    start_mesh_node,
    stop_node,
)

pytestmark = [pytest.mark.rclpy, pytest.mark.usefixtures(rclpy_available.__name__)]


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    """One body node process and one rclpy client, streaming two rendered people."""
    pytest.importorskip("mediapipe", reason="the body node's person detector needs mediapipe")
    import cv2
    from fasthmr_ros.msg import BodyMeshArray
    from visualization_msgs.msg import MarkerArray

    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.results import CameraIntrinsics
    from fasthmr_ros.pipeline.sample_image import render_people

    bgr, _ = render_people(AnnyBodyModel.default(), CameraIntrinsics(600.0, 600.0, 320.0, 240.0))
    frames = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None].copy()
    env = ros_environment(tmp_path_factory.mktemp("rclpy_body"))
    node = start_mesh_node(env, "bodies", "rclpy", "--param", "detector_max_people=2")
    client = RosClient(env)
    client.subscribe("/bodies", BodyMeshArray, 10)
    client.subscribe("/bodies/markers", MarkerArray, 10)
    stream = ImageStream(client, "/image", frames, rate_hz=5.0)
    stream.bad_at = {8}
    try:
        assert client.wait_until(lambda: client.node.count_subscribers("/image") >= 1, 120), \
            stop_node(node)[1]
        stream.start()
        yield client, stream, node
    finally:
        stream.stop()
        client.close()
        stop_node(node)


def test_rendered_people_give_anny_bodies_over_rclpy(ros):
    client, stream, node = ros
    assert client.wait_for(lambda: len(client.received["/bodies"]) >= 3, 180), \
        stop_node(node)[1]
    # The node's name travels in its own discovery announcement, which may come later.
    assert client.wait_until(
        lambda: ("body_mesh_node", "/") in client.node.get_node_names_and_namespaces(), 30), \
        client.node.get_node_names_and_namespaces()
    sent = set(stream.sent)
    found = 0
    for array in client.received["/bodies"]:
        assert stamp_ns(array.header) in sent
        assert array.header.frame_id == "camera_optical_frame"
        for body in array.bodies:
            found += 1
            assert body.model == "anny_body"
            vertices = np.asarray(body.vertices)
            assert vertices.shape == (13718 * 3,) and np.isfinite(vertices).all()
            assert len(body.global_orient) == 0 and len(body.body_pose) == 0  # not SMPL
            assert 0.0 <= body.fit_residual_px < 20.0
    assert found >= 2
    assert client.wait_for(lambda: len(client.received["/bodies/markers"]) >= 1, 30)


def test_late_subscriber_gets_the_body_topology(ros):
    from fasthmr_ros.msg import MeshTopology
    from test_ros_rclpy import latched_qos

    client, _, _ = ros
    client.subscribe("/bodies/topology", MeshTopology, latched_qos())
    assert client.wait_for(lambda: len(client.received["/bodies/topology"]) == 1, 30)
    topology = client.received["/bodies/topology"][0]
    assert topology.model == "anny_body" and topology.num_vertices == 13718
    assert len(topology.faces) == 27420 * 3 and topology.licence


def test_body_node_stops_cleanly_on_sigint(ros):
    client, _, node = ros
    code, output = stop_node(node, signal.SIGINT)
    assert code == 0, output
    assert "Traceback" not in output
    assert client.wait_until(
        lambda: ("body_mesh_node", "/") not in client.node.get_node_names_and_namespaces(), 20)


def test_external_person_detections_over_rclpy(tmp_path):
    pytest.importorskip("mediapipe", reason="the Pose run inside the boxes needs mediapipe")
    import cv2
    from fasthmr_ros.msg import BodyMeshArray, PersonDetection, PersonDetectionArray
    from rclpy.qos import QoSProfile
    from test_body_external_boxes import boxes_around

    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.results import CameraIntrinsics
    from fasthmr_ros.pipeline.sample_image import render_people

    camera = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)
    bgr, truths = render_people(AnnyBodyModel.default(), camera)
    boxes = boxes_around(truths, camera, (640, 480))
    frames = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None].copy()
    env = ros_environment(tmp_path)
    node = start_mesh_node(env, "bodies", "rclpy", "--param", "detector:=external")
    client = RosClient(env)
    client.subscribe("/bodies", BodyMeshArray, 10)
    detections = client.node.create_publisher(PersonDetectionArray, "/person_detections",
                                              QoSProfile(depth=10))
    stream = ImageStream(client, "/image", frames, rate_hz=4.0)
    sent: dict[int, int] = {}

    def publish_detections(index: int, stamp: int) -> None:
        msg = PersonDetectionArray()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.header.frame_id = "camera_optical_frame"
        msg.detections = [PersonDetection(score=0.9, box=[float(v) for v in boxes[0]])]
        if index % 5 == 4:
            msg.detections.append(PersonDetection(score=0.8, box=[50.0, 50.0, 10.0, 60.0]))
        else:
            msg.detections.append(PersonDetection(score=0.8, box=[float(v) for v in boxes[1]]))
        sent[stamp] = 1 if index % 5 == 4 else 2
        detections.publish(msg)

    stream.on_sent = publish_detections
    try:
        assert client.wait_until(
            lambda: client.node.count_subscribers("/image") >= 1
            and client.node.count_subscribers("/person_detections") >= 1, 120), \
            stop_node(node)[1]
        stream.start()
        # Until both kinds of frame were answered (the node drops frames when it falls behind).
        assert client.wait_for(lambda: {sent.get(stamp_ns(a.header)) for a in list(
            client.received["/bodies"])} >= {1, 2}, 180), stop_node(node)[1]
    finally:
        stream.stop()
        code, output = stop_node(node)
        client.close()
    assert code == 0, output
    counts = set()
    for array in client.received["/bodies"]:
        stamp = stamp_ns(array.header)
        assert stamp in sent, output
        assert len(array.bodies) <= sent[stamp]
        counts.add((sent[stamp], len(array.bodies)))
        for body in array.bodies:
            assert body.model == "anny_body" and round(body.score, 2) in (0.8, 0.9)
            assert any(np.allclose(np.asarray(body.box), box, atol=1e-3) for box in boxes)
    assert (2, 2) in counts, output  # both people, from the external boxes
    # The malformed detection is skipped with a warning and its good neighbour still served.
    assert (1, 1) in counts, output
    assert "skipped an external person detection 1: person box must have x2 > x1" in output


def test_attached_hands_over_rclpy(tmp_path):
    """``attach_hands``: the body node takes the hand node's HandMeshArray from an rclpy peer."""
    pytest.importorskip("mediapipe", reason="the body node's person detector needs mediapipe")
    import cv2
    from fasthmr_ros.msg import BodyMeshArray, HandMeshArray
    from rclpy.qos import QoSProfile
    from rclpy.serialization import deserialize_message
    from scipy.spatial.transform import Rotation
    from test_body_hand_attachment import _anny_hand

    from fasthmr_ros.models.anny_body import AnnyBodyModel
    from fasthmr_ros.pipeline.body_fit import LandmarkBodyFitter
    from fasthmr_ros.pipeline.person_detector import MediaPipePersonDetector
    from fasthmr_ros.pipeline.pose_landmarks import RIGHT_WRIST
    from fasthmr_ros.pipeline.results import CameraIntrinsics
    from fasthmr_ros.pipeline.sample_image import render_people
    from fasthmr_ros.ros import messages
    from fasthmr_ros.ros.hand_messages import HAND_MESH_ARRAY, hand_mesh_array_message

    model = AnnyBodyModel.default()
    camera = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)
    bgr, _ = render_people(model, camera, placements=(((0.0, 0.1, 2.6), 0.2),))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with MediaPipePersonDetector() as detector:
        people = detector.detect(rgb)
    (rest,) = LandmarkBodyFitter(model).estimate(rgb, people, camera)
    local = Rotation.from_rotvec(np.tile([0.0, 0.0, 0.6], (19, 1))).as_matrix()
    hand = _anny_hand("right", Rotation.from_rotvec([0.3, 0.2, 0.1]).as_matrix(), local,
                      people[0].keypoints_2d[RIGHT_WRIST])
    env = ros_environment(tmp_path)
    node = start_mesh_node(env, "bodies", "rclpy", "--param", "attach_hands:=true",
                           "--param", "attach_hands_max_age:=1.0",
                           "--param", "smoothing:=false", "--param", "use_camera_info:=false",
                           "--param", "intrinsics:=[600.0, 600.0, 320.0, 240.0]")
    client = RosClient(env)
    client.subscribe("/bodies", BodyMeshArray, 10)
    hands = client.node.create_publisher(HandMeshArray, "/hands", QoSProfile(depth=10))
    stream = ImageStream(client, "/image", rgb[None].copy(), rate_hz=4.0)

    def publish_hands(index: int, stamp: int) -> None:
        header = messages.make_header(stamp, "camera_optical_frame")
        raw = messages.serialize(hand_mesh_array_message(header, [hand]), HAND_MESH_ARRAY)
        hands.publish(deserialize_message(raw, HandMeshArray))  # our bytes, rclpy's class

    stream.on_sent = publish_hands
    fingers = [model.bone(name) for name in model.assets.bone_names
               if name.startswith("finger") and name.endswith(".R")]
    wrist = model.bone("wrist.R")

    def curled() -> bool:
        for array in list(client.received["/bodies"]):
            for body in array.bodies:
                joints = np.array([[p.x, p.y, p.z] for p in body.joints])
                moved = np.linalg.norm((joints - joints[wrist])[fingers]
                                       - (rest.joints - rest.joints[wrist])[fingers], axis=1)
                if moved.max() > 0.01:
                    return True
        return False

    try:
        assert client.wait_until(
            lambda: client.node.count_subscribers("/image") >= 1
            and client.node.count_subscribers("/hands") >= 1, 120), stop_node(node)[1]
        stream.start()
        assert client.wait_for(curled, 180), stop_node(node)[1]
    finally:
        stream.stop()
        code, output = stop_node(node)
        client.close()
    assert code == 0, output
