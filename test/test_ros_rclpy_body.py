"""The body mesh node under real rclpy (ROS 2 Jazzy from PyPI, scripts/setup-ros.sh).

``fasthmr node bodies --transport rclpy`` runs in its own process with its default estimator
(MediaPipe Pose landmarks fitted with the CC0 Anny body); an rclpy client publishes rendered
people (CC0 Anny bodies, not photographs) with a malformed image mid-stream and checks the
BodyMeshArray, the markers, the latched topology and a clean SIGINT.
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
    assert ("body_mesh_node", "/") in client.node.get_node_names_and_namespaces()
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
