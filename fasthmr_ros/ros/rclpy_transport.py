"""The mesh nodes on ``rclpy`` (``ros2 run fasthmr_ros hand_mesh_node`` / ``body_mesh_node``).

rclpy is imported only inside the functions that need it, so this module imports on machines
without ROS. Messages travel serialized: subscriptions are created with ``raw=True`` and
publishers are given CDR bytes (``Publisher.publish`` accepts ``bytes``), so the node logic and
the CDR bytes are exactly those of the DDS transport.
"""

from __future__ import annotations

import array
import sys
import threading
from collections.abc import Sequence
from typing import Any

from fasthmr_ros.ros import messages
from fasthmr_ros.ros.mesh_node import MeshNode
from fasthmr_ros.ros.node_configurations import NodeConfiguration, node_configuration
from fasthmr_ros.ros.parameters import (
    BOOL,
    DOUBLE,
    DOUBLE_ARRAY,
    HAND_NODE_PARAMETERS,
    INTEGER,
    STRING,
    ParameterError,
    ParameterSet,
    ParameterSpec,
)
from fasthmr_ros.ros.qos import BEST_EFFORT, TRANSIENT_LOCAL, QosProfile
from fasthmr_ros.ros.transport import RawCallback

#: What to do when rclpy is missing.
RCLPY_MISSING = (
    "the mesh nodes need ROS 2 (rclpy): source /opt/ros/<distro>/setup.bash first, or run "
    "without ROS: fasthmr node hands|bodies --transport dds"
)


class RosSetupError(RuntimeError):
    """The ROS 2 environment lacks something the node needs (generated message classes)."""


_PARAMETER_TYPE_CONSTANTS = {
    BOOL: "PARAMETER_BOOL",
    INTEGER: "PARAMETER_INTEGER",
    DOUBLE: "PARAMETER_DOUBLE",
    STRING: "PARAMETER_STRING",
    DOUBLE_ARRAY: "PARAMETER_DOUBLE_ARRAY",
}


def parameter_descriptor_fields(spec: ParameterSpec, store: Any | None = None) -> dict[str, Any]:
    """Return the fields of the ``rcl_interfaces/ParameterDescriptor`` for ``spec``.

    Ranges are given as lists of field dicts (``FloatingPointRange`` / ``IntegerRange``), one
    entry at most, as the message requires.
    """
    store = store if store is not None else messages.typestore()
    type_constants = store.types["rcl_interfaces/msg/ParameterType"]
    fields: dict[str, Any] = {
        "name": spec.name,
        "type": int(getattr(type_constants, _PARAMETER_TYPE_CONSTANTS[spec.type])),
        "description": spec.description,
        "additional_constraints": spec.constraints,
        "read_only": spec.read_only,
        "dynamic_typing": False,
        "floating_point_range": [],
        "integer_range": [],
    }
    if spec.value_range is not None:
        low, high = spec.value_range
        if spec.type == INTEGER:
            fields["integer_range"] = [{"from_value": int(low), "to_value": int(high),
                                        "step": 1}]
        else:
            fields["floating_point_range"] = [{"from_value": float(low),
                                               "to_value": float(high), "step": 0.0}]
    return fields


def plain_value(value: Any) -> Any:
    """Convert an rclpy parameter value to plain Python (arrays become lists)."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def changes_for_node(
    parameters: Sequence[tuple[str, Any]], known: Sequence[str]
) -> dict[str, Any]:
    """Keep the ``(name, value)`` changes that concern the node's own parameters."""
    return {name: plain_value(value) for name, value in parameters if name in known}


def rclpy_qos(profile: QosProfile) -> Any:
    """Translate a :class:`QosProfile` to ``rclpy.qos.QoSProfile``."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=profile.depth,
        reliability=ReliabilityPolicy.BEST_EFFORT
        if profile.reliability == BEST_EFFORT
        else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL
        if profile.durability == TRANSIENT_LOCAL
        else DurabilityPolicy.VOLATILE,
    )


def message_class(msgtype: str) -> Any:
    """Return the rclpy class generated for ``msgtype`` (``pkg/msg/Name``).

    Raises:
        RosSetupError: when the class cannot be imported.

    """
    from rosidl_runtime_py.utilities import get_message

    try:
        return get_message(msgtype)
    except (ImportError, AttributeError, ValueError) as exc:
        raise RosSetupError(
            f"no rclpy message class for {msgtype} ({exc}): build this package with colcon "
            "and source install/setup.bash (a source checkout earlier on PYTHONPATH hides the "
            "generated fasthmr_ros.msg module)"
        ) from exc


class RclpyPublisher:
    """An rclpy publisher that sends CDR bytes."""

    def __init__(self, publisher: Any, topic: str) -> None:
        self._publisher = publisher
        self.topic = topic

    def publish(self, raw: bytes) -> None:
        """Publish one serialized message."""
        self._publisher.publish(raw)

    def subscription_count(self) -> int:
        """Return the number of matched subscriptions."""
        return int(self._publisher.get_subscription_count())


class RclpyTransport:
    """The :class:`~fasthmr_ros.ros.transport.Transport` of an ``rclpy`` node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.node_name = node.get_name()
        self.logger = node.get_logger()

    def create_publisher(self, topic: str, msgtype: str, qos: QosProfile) -> RclpyPublisher:
        """Create a publisher of ``msgtype`` (the generated rclpy class is looked up by name)."""
        publisher = self.node.create_publisher(message_class(msgtype), topic, rclpy_qos(qos))
        return RclpyPublisher(publisher, publisher.topic_name)

    def create_subscription(
        self, topic: str, msgtype: str, qos: QosProfile, callback: RawCallback
    ) -> Any:
        """Subscribe with ``raw=True``: the callback receives CDR bytes."""
        return self.node.create_subscription(
            message_class(msgtype), topic, callback, rclpy_qos(qos), raw=True
        )

    def resolve(self, topic: str) -> str:
        """Return the fully qualified, remapped name of ``topic`` (``rcl`` rules)."""
        return str(self.node.resolve_topic_name(topic))

    def now_ns(self) -> int:
        """Return the node clock's time (simulated time when ``use_sim_time`` is set)."""
        return int(self.node.get_clock().now().nanoseconds)


def declare_hand_parameters(
    node: Any, specs: Sequence[ParameterSpec] = HAND_NODE_PARAMETERS
) -> ParameterSet:
    """Declare every node parameter (``specs``) with its descriptor; return the values.

    Raises:
        ParameterError: when a value given at start-up is invalid.

    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    params = ParameterSet(specs)
    values = {}
    for spec in specs:
        fields = parameter_descriptor_fields(spec)
        fields["floating_point_range"] = [FloatingPointRange(**r)
                                          for r in fields["floating_point_range"]]
        fields["integer_range"] = [IntegerRange(**r) for r in fields["integer_range"]]
        node.declare_parameter(spec.name, spec.default, ParameterDescriptor(**fields))
        values[spec.name] = plain_value(node.get_parameter(spec.name).value)
    params.initialize(values)
    return params


class MeshRosNode:
    """A mesh node inside an rclpy node: parameters, callbacks and a worker thread."""

    def __init__(self, node: Any, configuration: NodeConfiguration | None = None) -> None:
        configuration = configuration or node_configuration("hands")
        self.node = node
        self.params = declare_hand_parameters(node, configuration.parameters)
        self.core: MeshNode = configuration.create(RclpyTransport(node), self.params)
        node.add_on_set_parameters_callback(self._on_set_parameters)
        self.core.start()
        self._running = True
        self._worker = threading.Thread(target=self._work, name=f"{configuration.name}-mesh",
                                        daemon=True)
        self._worker.start()

    def _work(self) -> None:
        import rclpy

        def alive() -> bool:
            return self._running and rclpy.ok(context=self.node.context)

        while alive():
            try:
                self.core.spin_once(0.1)
            except Exception as exc:  # e.g. publishing diagnostics while ROS shuts down
                if not alive():
                    return  # Ctrl-C invalidated the context under a frame in flight: stop
                self.node.get_logger().error(
                    f"mesh worker: {type(exc).__name__}: {exc}; continuing"
                )

    def _on_set_parameters(self, parameters: Sequence[Any]) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        changes = changes_for_node([(p.name, p.value) for p in parameters],
                                   list(self.params.specs))
        ok, reason = self.core.set_parameters(changes) if changes else (True, "")
        return SetParametersResult(successful=ok, reason=reason)

    def shutdown(self) -> None:
        """Stop the worker thread."""
        self._running = False
        self.core.shutdown()
        self._worker.join(timeout=5.0)


#: The hand node's name for :class:`MeshRosNode`.
HandMeshRosNode = MeshRosNode


def main(args: Sequence[str] | None = None, kind: str = "hands") -> int:
    """Entry point of ``ros2 run fasthmr_ros hand_mesh_node`` (``kind="bodies"``: bodies)."""
    try:
        import rclpy
        from rclpy.exceptions import ParameterException
        from rclpy.executors import ExternalShutdownException
    except ImportError:
        print(RCLPY_MISSING, file=sys.stderr)
        return 2
    rclpy.init(args=list(args) if args is not None else None)
    configuration = node_configuration(kind)
    node = rclpy.create_node(configuration.node_name)
    hand_node = None
    status = 0
    try:
        hand_node = MeshRosNode(node, configuration)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParameterError, ParameterException, RosSetupError) as exc:
        # ParameterException: rclpy refused a start-up value (wrong type, outside its range).
        node.get_logger().fatal(str(exc))
        status = 2
    finally:
        if hand_node is not None:
            hand_node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return status
