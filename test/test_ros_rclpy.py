"""The hand mesh node under real ROS 2 (rclpy, Fast DDS), driven and checked by rclpy.

The node runs as ``fasthmr node hands --transport rclpy`` in its own process on the small
random-weights test checkpoint; this process publishes camera images and subscribes to the
outputs with rclpy, and uses the node's real parameter services. Runs in ``.venv-ros``
(scripts/setup-ros.sh); in CI a missing rclpy fails instead of skipping.
"""

from __future__ import annotations

import signal
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
from ros_test_support import sample_rgb

pytestmark = [pytest.mark.rclpy, pytest.mark.usefixtures(rclpy_available.__name__)]

NODE = "/hand_mesh_node"


def latched_qos():
    """The subscription profile of a late joiner wanting the latched topology."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_qos_profiles_translate_to_rclpy():
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

    from fasthmr_ros.ros.qos import LATCHED, SENSOR_DATA, TF
    from fasthmr_ros.ros.rclpy_transport import rclpy_qos

    sensor = rclpy_qos(SENSOR_DATA)
    assert sensor.reliability == ReliabilityPolicy.BEST_EFFORT and sensor.depth == 5
    assert sensor.history == HistoryPolicy.KEEP_LAST
    assert rclpy_qos(LATCHED).durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert rclpy_qos(TF).depth == 100


@pytest.fixture(scope="module")
def ros(tmp_path_factory, test_assets):
    """One rclpy node process and one rclpy client for the tests of this module."""
    from diagnostic_msgs.msg import DiagnosticArray
    from fasthmr_ros.msg import HandMeshArray
    from visualization_msgs.msg import MarkerArray

    folder = tmp_path_factory.mktemp("rclpy")
    env = ros_environment(folder)
    node = start_node(env, test_assets.checkpoint, "rclpy", "--param", "publish_tf=true")
    client = RosClient(env)
    client.subscribe("/hands", HandMeshArray, 10)
    client.subscribe("/hands/markers", MarkerArray, 10)
    client.subscribe("/diagnostics", DiagnosticArray, 10)
    frames = np.stack([sample_rgb(256, 192), sample_rgb(256, 192)[:, ::-1].copy()])
    stream = ImageStream(client, "/image", frames)
    stream.bad_at = {40}
    try:
        assert client.wait_until(lambda: client.node.count_subscribers("/image") >= 1, 120), \
            stop_node(node)[1]
        stream.start()
        yield env, client, stream, node
    finally:
        stream.stop()
        client.close()
        stop_node(node)


def test_node_is_a_real_ros_node_with_the_documented_qos(ros):
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    _, client, _, _ = ros
    # The fixture waited for the image subscription; the node's name travels in a separate
    # discovery announcement, and its publishers may be seen a moment later too.
    graph = client.node
    assert client.wait_until(
        lambda: ("hand_mesh_node", "/") in graph.get_node_names_and_namespaces()
        and graph.count_publishers("/hands/topology") >= 1
        and graph.count_publishers("/hands") >= 1, 30), graph.get_node_names_and_namespaces()
    (image_sub,) = client.node.get_subscriptions_info_by_topic("/image")
    assert image_sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert image_sub.node_name == "hand_mesh_node"
    (topology_pub,) = client.node.get_publishers_info_by_topic("/hands/topology")
    assert topology_pub.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    (hands_pub,) = client.node.get_publishers_info_by_topic("/hands")
    assert hands_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert hands_pub.topic_type == "fasthmr_ros/msg/HandMeshArray"


def test_images_from_rclpy_give_hand_meshes_and_markers(ros):
    _, client, stream, _ = ros
    assert client.wait_for(lambda: len(client.received["/hands"]) >= 5, 120)
    arrays = list(client.received["/hands"])
    sent = set(stream.sent)
    for array in arrays:
        assert stamp_ns(array.header) in sent  # the image's stamp is kept
        assert array.header.frame_id == "camera_optical_frame"
        (hand,) = array.hands
        vertices = np.asarray(hand.vertices)
        assert vertices.shape == (778 * 3,) and np.isfinite(vertices).all()
        assert len(hand.joints) == 21
    assert client.wait_for(lambda: len(client.received["/hands/markers"]) >= 3, 30)
    markers = client.received["/hands/markers"][-1]
    assert len(markers.markers) == 3
    assert stamp_ns(markers.markers[0].header) in sent


def test_late_subscriber_gets_the_latched_topology(ros):
    from fasthmr_ros.msg import MeshTopology
    from rclpy.qos import DurabilityPolicy, QoSProfile

    _, client, _, _ = ros
    topic = "/hands/topology"
    client.subscribe(topic, MeshTopology, latched_qos())  # long after the node published it
    assert client.wait_for(lambda: len(client.received[topic]) == 1, 20)
    topology = client.received[topic][0]
    assert topology.model == "mano" and len(topology.faces) == 1538 * 3
    volatile = "/hands/topology_volatile_check"
    client.received[volatile] = []
    # A volatile subscriber does not match a transient-local history: nothing arrives.
    volatile_qos = QoSProfile(depth=1, durability=DurabilityPolicy.VOLATILE)
    client.node.create_subscription(MeshTopology, topic,
                                    lambda m: client.received[volatile].append(m),
                                    volatile_qos)
    time.sleep(2.0)
    assert client.received[volatile] == []


def test_parameters_through_the_real_services(ros):
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    _, client, _, _ = ros
    parameters = AsyncParameterClient(client.node, NODE)
    assert parameters.wait_for_services(timeout_sec=20)

    result = client.result(parameters.set_parameters(
        [Parameter("score_threshold", Parameter.Type.DOUBLE, 0.3)]))
    assert result.results[0].successful
    values = client.result(parameters.get_parameters(["score_threshold", "detector"])).values
    assert values[0].double_value == pytest.approx(0.3)
    assert values[1].string_value == "full_frame"

    refused = client.result(parameters.set_parameters(
        [Parameter("checkpoint", Parameter.Type.STRING, "/elsewhere")])).results[0]
    assert not refused.successful and "read-only" in refused.reason
    out_of_range = client.result(parameters.set_parameters(
        [Parameter("score_threshold", Parameter.Type.DOUBLE, 2.0)])).results[0]
    assert not out_of_range.successful and out_of_range.reason
    wrong_type = client.result(parameters.set_parameters(
        [Parameter("max_hands", Parameter.Type.STRING, "two")])).results[0]
    assert not wrong_type.successful and wrong_type.reason

    (described,) = client.result(parameters.describe_parameters(["max_hands"])).descriptors
    assert described.type == ParameterType.PARAMETER_INTEGER and described.description
    assert described.integer_range[0].step == 1
    (checkpoint,) = client.result(parameters.describe_parameters(["checkpoint"])).descriptors
    assert checkpoint.read_only
    names = client.result(parameters.list_parameters()).result.names
    assert {"checkpoint", "lifecycle", "publish_markers", "use_sim_time"} <= set(names)


def test_bad_message_mid_stream_is_counted_and_the_node_keeps_serving(ros):
    _, client, stream, _ = ros
    assert client.wait_until(lambda: len(stream.bad) == 1, 60)
    bad = stream.bad[0]
    assert client.wait_for(lambda: any(stamp_ns(a.header) > bad
                                       for a in client.received["/hands"]), 60)
    assert not {stamp_ns(a.header) for a in client.received["/hands"]} & set(stream.bad)

    def rejected() -> int:
        if not client.received["/diagnostics"]:
            return 0
        status = client.received["/diagnostics"][-1].status[0]
        return int({kv.key: kv.value for kv in status.values}["messages_rejected"])

    assert client.wait_for(lambda: rejected() >= 1, 20)
    status = client.received["/diagnostics"][-1].status[0]
    assert status.name.startswith("hand_mesh_node")
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["frames_processed"]) >= 1


def test_sensor_data_profile_is_what_the_image_stream_uses(ros):
    from rclpy.qos import qos_profile_sensor_data

    _, client, _, _ = ros
    (publisher,) = client.node.get_publishers_info_by_topic("/image")
    assert publisher.qos_profile.reliability == qos_profile_sensor_data.reliability


def test_sigint_shuts_the_node_down_cleanly(ros):
    _, client, _, node = ros
    code, output = stop_node(node, signal.SIGINT)
    assert code == 0, output
    assert "Traceback" not in output
    assert client.wait_until(
        lambda: ("hand_mesh_node", "/") not in client.node.get_node_names_and_namespaces(), 20)


def test_rclpy_node_with_a_missing_checkpoint_exits_with_the_reason(tmp_path):
    env = ros_environment(tmp_path)
    process = start_node(env, tmp_path / "missing.ckpt", "rclpy")
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 2, output
    assert "cannot load the model" in output
