"""Across DDS vendors: the Cyclone DDS transport and rclpy (Fast DDS), both ways.

The DDS transport announces its node on ``ros_discovery_info`` as the ROS 2 RMWs do, so ROS
tools (``get_node_names()``, ``ros2 node list``) see ``hand_mesh_node`` and its endpoints.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy_test_support import (
    ImageStream,
    RosClient,
    rclpy_available,
    ros_environment,
    stamp_ns,
    start_node,
    stop_node,
)
from ros_test_support import Collector, sample_rgb

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")
pytestmark = [pytest.mark.rclpy, pytest.mark.usefixtures(rclpy_available.__name__)]


from fasthmr_ros.ros import messages, qos  # noqa: E402


def test_rclpy_sees_and_drives_the_dds_transport_node(tmp_path, test_assets):
    from fasthmr_ros.msg import HandMeshArray, MeshTopology
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from visualization_msgs.msg import MarkerArray

    env = ros_environment(tmp_path)
    node = start_node(env, test_assets.checkpoint, "dds", "--duration", "300")
    client = RosClient(env)
    stream = None
    try:
        graph = client.node
        assert client.wait_until(
            lambda: ("hand_mesh_node", "/") in graph.get_node_names_and_namespaces(), 120), \
            stop_node(node)[1]
        # Endpoints are attributed to the node (their GUIDs are in its discovery info).
        assert client.wait_until(lambda: graph.count_subscribers("/image") == 1, 30)
        (image_sub,) = graph.get_subscriptions_info_by_topic("/image")
        assert image_sub.node_name == "hand_mesh_node" and image_sub.node_namespace == "/"
        published = dict(graph.get_publisher_names_and_types_by_node("hand_mesh_node", "/"))
        assert published["/hands"] == ["fasthmr_ros/msg/HandMeshArray"]
        assert "/hands/topology" in published and "/diagnostics" in published

        client.subscribe("/hands", HandMeshArray, 10)
        client.subscribe("/hands/markers", MarkerArray, 10)
        client.subscribe("/hands/topology", MeshTopology,
                         QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        stream = ImageStream(client, "/image", np.stack([sample_rgb(256, 192)])).start()
        assert client.wait_for(lambda: len(client.received["/hands"]) >= 3, 60)
        assert client.wait_for(lambda: len(client.received["/hands/topology"]) == 1, 20)
        assert client.wait_for(lambda: len(client.received["/hands/markers"]) >= 1, 20)
        for array in client.received["/hands"]:
            assert stamp_ns(array.header) in set(stream.sent)
            assert len(array.hands) == 1 and len(array.hands[0].vertices) == 778 * 3
        assert len(client.received["/hands/topology"][0].faces) == 1538 * 3
    finally:
        if stream is not None:
            stream.stop()
        code, output = stop_node(node)
        # A closing DDS node withdraws itself from the graph, as rmw does.
        assert client.wait_until(
            lambda: ("hand_mesh_node", "/") not in client.node.get_node_names_and_namespaces(),
            20), client.node.get_node_names_and_namespaces()
        client.close()
    assert code == 0, output


def test_dds_transport_drives_the_rclpy_node(tmp_path, test_assets, monkeypatch):
    from fasthmr_ros.ros.dds import DdsTransport
    from fasthmr_ros.ros.image_publisher import CameraPublisher

    env = ros_environment(tmp_path)
    monkeypatch.setenv("CYCLONEDDS_URI", env["CYCLONEDDS_URI"])
    node = start_node(env, test_assets.checkpoint, "rclpy")
    transport = DdsTransport("dds_camera", "/", domain_id=int(env["ROS_DOMAIN_ID"]))
    collector = Collector()
    try:
        types = {"/hands": "fasthmr_ros/msg/HandMeshArray",
                 "/hands/topology": "fasthmr_ros/msg/MeshTopology"}
        transport.create_subscription("/hands", types["/hands"], qos.DEFAULT,
                                      collector.callback("/hands"))
        transport.create_subscription("/hands/topology", types["/hands/topology"], qos.LATCHED,
                                      collector.callback("/hands/topology"))
        camera = CameraPublisher(transport)
        deadline = time.monotonic() + 120
        while camera.images.subscription_count() < 1:
            assert time.monotonic() < deadline, stop_node(node)[1]
            time.sleep(0.2)
        assert collector.wait_for(lambda: collector.count("/hands/topology") == 1, 30)
        frame = sample_rgb(256, 192)
        sent = []
        for _ in range(60):
            stamp = time.time_ns()
            camera.publish(frame, stamp)
            sent.append(stamp)
            if collector.count("/hands") >= 3:
                break
            time.sleep(1 / 15)
        assert collector.wait_for(lambda: collector.count("/hands") >= 3, 30)
    finally:
        transport.close()
        code, output = stop_node(node)
    assert code == 0, output
    arrays = [messages.deserialize(raw, types["/hands"]) for raw in collector.messages["/hands"]]
    assert {messages.stamp_to_ns(a.header.stamp) for a in arrays} <= set(sent)
    assert all(len(a.hands) == 1 and a.hands[0].vertices.shape == (778 * 3,) for a in arrays)
    (topology,) = [messages.deserialize(r, types["/hands/topology"])
                   for r in collector.messages["/hands/topology"]]
    assert topology.faces.shape == (1538 * 3,)
