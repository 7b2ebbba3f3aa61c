"""``lifecycle:=true``: the hand node as a managed node, driven through the lifecycle services."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy_test_support import (
    ImageStream,
    RosClient,
    rclpy_available,
    ros_environment,
    start_node,
    stop_node,
)
from ros_test_support import sample_rgb

pytestmark = [pytest.mark.rclpy, pytest.mark.usefixtures(rclpy_available.__name__)]

NODE = "/hand_mesh_node"


def _transition(client: RosClient, change, label: str) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request()
    request.transition = Transition(label=label)
    return client.call(change, request, timeout=120).success


def _state(client: RosClient, get) -> str:
    from lifecycle_msgs.srv import GetState

    return client.call(get, GetState.Request()).current_state.label


def test_lifecycle_transitions_load_subscribe_unsubscribe_release(tmp_path, test_assets):
    from fasthmr_ros.msg import HandMeshArray, MeshTopology
    from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
    from rclpy.qos import DurabilityPolicy, QoSProfile

    env = ros_environment(tmp_path)
    node = start_node(env, test_assets.checkpoint, "rclpy", "--param", "lifecycle:=true")
    client = RosClient(env)
    stream = None
    try:
        change = client.node.create_client(ChangeState, NODE + "/change_state")
        get = client.node.create_client(GetState, NODE + "/get_state")
        available = client.node.create_client(GetAvailableTransitions,
                                               NODE + "/get_available_transitions")
        assert _state(client, get) == "unconfigured", stop_node(node)[1]
        labels = {t.transition.label for t in client.call(
            available, GetAvailableTransitions.Request()).available_transitions}
        assert "configure" in labels
        graph = client.node
        assert graph.count_publishers("/hands") == 0 and graph.count_subscribers("/image") == 0

        # configure: model loaded, publishers made; still not listening to the camera.
        assert _transition(client, change, "configure")
        assert _state(client, get) == "inactive"
        assert client.wait_until(lambda: graph.count_publishers("/hands") == 1, 10)
        assert graph.count_subscribers("/image") == 0

        # activate: subscribed, topology latched, images become meshes.
        client.subscribe("/hands", HandMeshArray, 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        client.subscribe("/hands/topology", MeshTopology, latched)
        assert _transition(client, change, "activate")
        assert _state(client, get) == "active"
        assert client.wait_until(lambda: graph.count_subscribers("/image") == 1, 10)
        assert client.wait_for(lambda: len(client.received["/hands/topology"]) == 1, 20)
        frames = np.stack([sample_rgb(256, 192)])
        stream = ImageStream(client, "/image", frames).start()
        assert client.wait_for(lambda: len(client.received["/hands"]) >= 3, 60)

        # deactivate: unsubscribed, nothing more is published.
        assert _transition(client, change, "deactivate")
        assert _state(client, get) == "inactive"
        assert client.wait_until(lambda: graph.count_subscribers("/image") == 0, 10)
        settled = len(client.received["/hands"])
        client.wait_for(lambda: False, 1.5)
        assert len(client.received["/hands"]) <= settled + 1  # at most a frame in flight

        # activate again works; cleanup releases the publishers; shutdown finalizes.
        assert _transition(client, change, "activate")
        before = len(client.received["/hands"])
        assert client.wait_for(lambda: len(client.received["/hands"]) > before + 1, 60)
        assert _transition(client, change, "deactivate")
        assert _transition(client, change, "cleanup")
        assert _state(client, get) == "unconfigured"
        assert client.wait_until(lambda: graph.count_publishers("/hands") == 0, 10)
        assert _transition(client, change, "shutdown")
        assert _state(client, get) == "finalized"
    finally:
        if stream is not None:
            stream.stop()
        client.close()
        code, output = stop_node(node)
    assert code == 0, output
    assert "Traceback" not in output


def test_configure_fails_with_the_reason_and_can_be_retried(tmp_path, test_assets):
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    env = ros_environment(tmp_path)
    node = start_node(env, tmp_path / "missing.ckpt", "rclpy", "--param", "lifecycle:=true")
    client = RosClient(env)
    try:
        change = client.node.create_client(ChangeState, NODE + "/change_state")
        get = client.node.create_client(GetState, NODE + "/get_state")
        assert not _transition(client, change, "configure"), stop_node(node)[1]
        assert _state(client, get) == "unconfigured"
        # checkpoint is read-only once running, so a wrong one cannot be fixed at run time.
        parameters = AsyncParameterClient(client.node, NODE)
        assert parameters.wait_for_services(timeout_sec=20)
        refused = client.result(parameters.set_parameters(
            [Parameter("checkpoint", Parameter.Type.STRING, str(test_assets.checkpoint))]))
        assert not refused.results[0].successful
    finally:
        client.close()
        code, output = stop_node(node)
    assert code == 0, output
    assert "configure failed: cannot load the model" in output
