"""ROS 2 over plain Cyclone DDS (the ``cyclonedds`` package), without an rclpy install.

Speaks the wire format of the ROS 2 RMWs: topic ``/a/b`` is DDS topic ``rt/a/b``, message
``pkg/msg/Name`` is DDS type ``pkg::msg::dds_::Name_`` (final extensibility, XCDR1), QoS mirrors
the ROS profile, and every reader and writer announces ``typehash=RIHS01_...;`` in its USER_DATA
as Iron and Jazzy RMWs do. Payloads are encoded and decoded by ``rosbags`` from the package's
``.msg`` files (:mod:`fasthmr_ros.ros.messages`): the DDS type class only supplies the type
description for discovery; its ``serialize`` returns the rosbags bytes unchanged.

The domain is ``ROS_DOMAIN_ID`` (default 0); ``CYCLONEDDS_URI`` is read by Cyclone DDS itself,
as under ``rmw_cyclonedds_cpp``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from fasthmr_ros.ros import messages
from fasthmr_ros.ros.names import NameResolver, dds_topic_name
from fasthmr_ros.ros.qos import BEST_EFFORT, LATCHED, TRANSIENT_LOCAL, QosProfile
from fasthmr_ros.ros.transport import RawCallback

_wire_types: dict[str, type] = {}
_wire_lock = threading.Lock()

#: The DDS topic on which ROS 2 participants say which nodes they hold (no ``rt/`` prefix).
DISCOVERY_TOPIC = "ros_discovery_info"
DISCOVERY_INFO = "rmw_dds_common/msg/ParticipantEntitiesInfo"
#: Its Jazzy type hash, as rmw_dds_common 3.1 records it (share/rmw_dds_common/msg/
#: ParticipantEntitiesInfo.json). rosbags' hash of its copy of the definition differs (it hashes
#: ``string<=256`` as unbounded), so the announced value is taken from the real package.
DISCOVERY_INFO_HASH = "RIHS01_91a0593bacdcc50ea9bdcf849a938b128412cc1ea821245c663bcd26f83c295e"

#: Largest valid ROS domain id (``ROS_DOMAIN_ID``); higher ids collide with UDP port ranges.
MAX_DOMAIN_ID = 232


class DdsError(RuntimeError):
    """The DDS transport cannot start (missing ``cyclonedds``, bad domain id, ...)."""


def _require_cyclonedds() -> None:
    try:
        import cyclonedds  # noqa: F401
    except ImportError as exc:
        raise DdsError(
            "the dds transport needs the 'cyclonedds' package: pip install 'fasthmr_ros[dds]'"
        ) from exc


def domain_id_from_env(environ: dict[str, str] | None = None) -> int:
    """Return ``ROS_DOMAIN_ID`` as an int (0 when unset), validated like ROS does."""
    environ = dict(os.environ) if environ is None else environ
    text = environ.get("ROS_DOMAIN_ID", "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise DdsError(f"ROS_DOMAIN_ID must be an integer, got {text!r}") from None
    if not 0 <= value <= MAX_DOMAIN_ID:
        raise DdsError(f"ROS_DOMAIN_ID must be between 0 and {MAX_DOMAIN_ID}, got {value}")
    return value


def pad_cdr(raw: bytes) -> bytes:
    """Pad CDR to a multiple of 4 bytes, recording the padding in the encapsulation options.

    DDS requires serialized payloads to be 4-byte multiples; XTypes 1.3 (7.6.3.1.2) puts the
    number of padding bytes in the two low bits of the options field, as Cyclone DDS does.
    """
    pad = -len(raw) % 4
    if not pad:
        return raw
    return raw[:3] + bytes([(raw[3] & 0xFC) | pad]) + raw[4:] + bytes(pad)


def unpad_cdr(raw: bytes) -> bytes:
    """Undo :func:`pad_cdr`: drop the padding announced in the options, clear the count."""
    pad = raw[3] & 0x03
    if not pad:
        return raw
    return raw[:3] + bytes([raw[3] & 0xFC]) + raw[4 : len(raw) - pad]


class RawSample:
    """What a reader returns: the CDR bytes of one message (decoded later by rosbags)."""

    __slots__ = ("data", "sample_info")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sample_info: Any = None


def _idl_member(desc: tuple[Any, Any], store: Any) -> Any:
    from cyclonedds.idl import types as T
    from rosbags.interfaces import Nodetype

    primitives = {
        "bool": bool, "byte": T.byte, "char": T.uint8, "int8": T.int8, "uint8": T.uint8,
        "int16": T.int16, "uint16": T.uint16, "int32": T.int32, "uint32": T.uint32,
        "int64": T.int64, "uint64": T.uint64, "float32": T.float32, "float64": T.float64,
    }
    kind, spec = desc
    if kind == Nodetype.BASE:
        name, bound = spec
        if name == "string":
            return T.bounded_str[bound] if bound else str
        return primitives[name]
    if kind == Nodetype.NAME:
        return _wire_type(spec, store)
    sub, size = spec
    if kind == Nodetype.ARRAY:
        return T.array[_idl_member(sub, store), size]
    return T.sequence[_idl_member(sub, store), size] if size else T.sequence[
        _idl_member(sub, store)]


def _wire_type(msgtype: str, store: Any) -> type:
    """Return the cyclonedds struct type of ``msgtype`` (fields generated from the typestore)."""
    from cyclonedds.idl import make_idl_struct

    cached = _wire_types.get(msgtype)
    if cached is not None:
        return cached
    _, fielddefs = store.fielddefs[msgtype]
    members = {name: _idl_member(desc, store) for name, desc in fielddefs}
    if not members:  # rosidl gives empty messages one placeholder member
        from cyclonedds.idl import types as T

        members = {"structure_needs_at_least_one_member": T.uint8}
    class_name = msgtype.replace("/", "__")
    cls = make_idl_struct(class_name, messages.dds_type_name(msgtype), members)
    _wire_types[msgtype] = cls
    return cls


def wire_type(msgtype: str, store: Any | None = None) -> type:
    """Return the DDS topic type of a ROS message type, carrying rosbags CDR bytes.

    Writing requires an instance made by :func:`wire_sample`; reading returns
    :class:`RawSample` objects.
    """
    store = store if store is not None else messages.typestore()
    with _wire_lock:
        key = "raw:" + msgtype
        cached = _wire_types.get(key)
        if cached is not None:
            return cached
        from cyclonedds.idl import make_idl_struct

        base = _wire_type(msgtype, store)
        members = dict(base.__annotations__)
        cls = make_idl_struct("raw__" + msgtype.replace("/", "__"),
                              messages.dds_type_name(msgtype), members)

        def serialize(self: Any, use_version_2: bool | None = None, **_: Any) -> bytes:
            if use_version_2:
                raise DdsError("ROS 2 peers use XCDR1; this writer was set up for XCDR2")
            return pad_cdr(self._raw)

        def deserialize(klass: type, data: bytes, has_header: bool = True,
                        use_version_2: bool | None = None) -> RawSample:
            return RawSample(bytes(data))

        def deserialize_key(klass: type, data: bytes, *args: Any, **kwargs: Any) -> None:
            return None  # ROS topics are keyless: a dispose notice carries nothing to decode

        cls.serialize = serialize
        cls.deserialize = classmethod(deserialize)
        cls.deserialize_key = classmethod(deserialize_key)
        _wire_types[key] = cls
        return cls


def wire_sample(cls: type, raw: bytes) -> Any:
    """Wrap CDR bytes into an instance of a :func:`wire_type` class, ready to write."""
    sample = cls.__new__(cls)
    sample._raw = raw
    return sample


def dds_qos(profile: QosProfile, type_hash: str | None = None) -> Any:
    """Translate a :class:`QosProfile` to Cyclone DDS QoS as ``rmw_cyclonedds`` sets it."""
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.util import duration

    policies = [
        Policy.Reliability.BestEffort
        if profile.reliability == BEST_EFFORT
        else Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.Durability.TransientLocal
        if profile.durability == TRANSIENT_LOCAL
        else Policy.Durability.Volatile,
        Policy.History.KeepLast(profile.depth),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    ]
    if type_hash:
        policies.append(Policy.Userdata(data=f"typehash={type_hash};".encode()))
    return Qos(*policies)


class DdsPublisher:
    """A ROS 2 publisher on Cyclone DDS; publishes CDR bytes."""

    def __init__(self, writer: Any, cls: type, topic: str, msgtype: str) -> None:
        self._writer = writer
        self._cls = cls
        self.topic = topic
        self.msgtype = msgtype

    def publish(self, raw: bytes) -> None:
        """Send one message given as CDR bytes."""
        self._writer.write(wire_sample(self._cls, raw))

    def subscription_count(self) -> int:
        """Return the number of matched readers."""
        return len(self._writer.get_matched_subscriptions())


class DdsSubscription:
    """A ROS 2 subscription on Cyclone DDS."""

    def __init__(self, reader: Any, condition: Any, topic: str, msgtype: str,
                 callback: RawCallback) -> None:
        self.reader = reader
        self.condition = condition
        self.topic = topic
        self.msgtype = msgtype
        self.callback = callback

    def publisher_count(self) -> int:
        """Return the number of matched writers."""
        return len(self.reader.get_matched_publications())


class DdsTransport:
    """A node's publishers and subscriptions on Cyclone DDS.

    Subscription callbacks run on one background thread that waits on a DDS wait set (like a
    single-threaded executor). Call :meth:`close` to stop it and free the DDS entities.

    Args:
        node_name: the node's name (used for ``~`` names and logging).
        namespace: the node's namespace.
        remaps: ``FROM:=TO`` rules (``__ns`` and ``__node`` included).
        domain_id: DDS domain; ``ROS_DOMAIN_ID`` when omitted.
        logger: where to log; a ``logging`` logger named after the node when omitted.

    """

    def __init__(
        self,
        node_name: str,
        namespace: str = "/",
        remaps: Iterable[str] = (),
        domain_id: int | None = None,
        logger: Any | None = None,
    ) -> None:
        _require_cyclonedds()
        from cyclonedds.core import GuardCondition, WaitSet
        from cyclonedds.domain import DomainParticipant
        from cyclonedds.qos import Policy, Qos

        self.resolver = NameResolver.from_rules(node_name, namespace, remaps)
        self.node_name = self.resolver.node_name
        self.namespace = self.resolver.namespace
        self.logger = logger or logging.getLogger(self.resolver.fully_qualified_node_name)
        self.domain_id = domain_id_from_env() if domain_id is None else int(domain_id)
        self.store = messages.typestore()
        # ROS 2 participants announce their security enclave; the root enclave is "/".
        self.participant = DomainParticipant(
            self.domain_id, qos=Qos(Policy.Userdata(data=b"enclave=/;"))
        )
        self._topics: dict[str, Any] = {}
        self._subscriptions: list[DdsSubscription] = []
        self._publishers: list[DdsPublisher] = []
        self._lock = threading.Lock()
        self._waitset = WaitSet(self.participant)
        self._wakeup = GuardCondition(self.participant)
        self._waitset.attach(self._wakeup)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._discovery = self._discovery_writer()
        self.announce()

    def resolve(self, topic: str) -> str:
        """Return the fully qualified, remapped ROS name of ``topic``."""
        return self.resolver.resolve(topic)

    def _discovery_writer(self) -> Any:
        from cyclonedds.pub import DataWriter
        from cyclonedds.topic import Topic

        cls = wire_type(DISCOVERY_INFO, self.store)
        topic = Topic(self.participant, DISCOVERY_TOPIC, cls)
        self._topics[DISCOVERY_TOPIC] = topic
        return DataWriter(self.participant, topic, qos=dds_qos(LATCHED, DISCOVERY_INFO_HASH))

    def discovery_info(self, with_node: bool = True) -> Any:
        """Return this participant's ``ParticipantEntitiesInfo`` (what ``rmw`` announces).

        It names the node and the GUIDs of its readers and writers, so ROS tools
        (``ros2 node list``, ``get_node_names()``) see the node and which topics it uses.
        """
        import numpy as np

        types = self.store.types
        gid = types["rmw_dds_common/msg/Gid"]

        def gid_of(entity: Any) -> Any:
            return gid(data=np.frombuffer(entity.guid.bytes, dtype=np.uint8).copy())

        nodes = []
        if with_node:
            nodes.append(types["rmw_dds_common/msg/NodeEntitiesInfo"](
                node_namespace=self.namespace,
                node_name=self.node_name,
                reader_gid_seq=[gid_of(s.reader) for s in self._subscriptions],
                writer_gid_seq=[gid_of(p._writer) for p in self._publishers],
            ))
        return types[DISCOVERY_INFO](gid=gid_of(self.participant), node_entities_info_seq=nodes)

    def announce(self, with_node: bool = True) -> None:
        """Publish :meth:`discovery_info` on ``ros_discovery_info`` (latched)."""
        raw = messages.serialize(self.discovery_info(with_node), DISCOVERY_INFO, self.store)
        self._discovery.write(wire_sample(wire_type(DISCOVERY_INFO, self.store), raw))

    def _topic(self, name: str, msgtype: str) -> tuple[Any, type]:
        from cyclonedds.topic import Topic

        cls = wire_type(msgtype, self.store)
        dds_name = dds_topic_name(name)
        if dds_name not in self._topics:
            self._topics[dds_name] = Topic(self.participant, dds_name, cls)
        return self._topics[dds_name], cls

    def create_publisher(self, topic: str, msgtype: str, qos: QosProfile) -> DdsPublisher:
        """Create a writer for ``topic``."""
        from cyclonedds.pub import DataWriter

        name = self.resolve(topic)
        with self._lock:
            dds_topic, cls = self._topic(name, msgtype)
            writer = DataWriter(self.participant, dds_topic,
                                qos=dds_qos(qos, messages.type_hash(msgtype, self.store)))
            publisher = DdsPublisher(writer, cls, name, msgtype)
            self._publishers.append(publisher)
            self.announce()
        self.logger.debug(f"publishing {msgtype} on {name}")
        return publisher

    def create_subscription(
        self, topic: str, msgtype: str, qos: QosProfile, callback: RawCallback
    ) -> DdsSubscription:
        """Create a reader for ``topic``; ``callback`` gets each message's CDR bytes."""
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState
        from cyclonedds.sub import DataReader

        name = self.resolve(topic)
        with self._lock:
            dds_topic, _ = self._topic(name, msgtype)
            reader = DataReader(self.participant, dds_topic,
                                qos=dds_qos(qos, messages.type_hash(msgtype, self.store)))
            condition = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
            subscription = DdsSubscription(reader, condition, name, msgtype, callback)
            self._subscriptions.append(subscription)
            self._waitset.attach(condition)
            self.announce()
            if self._thread is None:
                self._thread = threading.Thread(target=self._spin, name="dds-spin", daemon=True)
                self._thread.start()
        self.logger.debug(f"subscribed to {msgtype} on {name}")
        return subscription

    def now_ns(self) -> int:
        """Return the wall-clock time in nanoseconds."""
        import time

        return time.time_ns()

    def take_available(self, subscription: DdsSubscription, limit: int = 64) -> int:
        """Take pending samples of one subscription and run its callback; return the count."""
        try:
            samples = subscription.reader.take(N=limit)
        except Exception as exc:  # DDSException, or a failure inside cyclonedds' wrapper
            self.logger.error(f"DDS take on {subscription.topic} failed: {exc}")
            return 0
        count = 0
        for sample in samples:
            if not isinstance(sample, RawSample):  # dispose / unregister notifications
                continue
            count += 1
            try:
                subscription.callback(sample.data)
            except Exception as exc:  # a callback bug must not stop the spin thread
                self.logger.error(f"callback for {subscription.topic} failed: "
                                  f"{type(exc).__name__}: {exc}")
        return count

    def _spin(self) -> None:
        from cyclonedds.util import duration

        while not self._closed.is_set():
            self._waitset.wait(duration(milliseconds=200))
            if self._closed.is_set():
                break
            with self._lock:
                subscriptions = list(self._subscriptions)
            for subscription in subscriptions:
                self.take_available(subscription)

    def close(self) -> None:
        """Stop the spin thread and delete every DDS entity of this node."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wakeup.set(True)
        try:
            self.announce(with_node=False)  # as rmw does when a node is destroyed
        except Exception as exc:  # a closing participant must still free its entities
            self.logger.debug(f"could not withdraw the node from {DISCOVERY_TOPIC}: {exc}")
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            for subscription in self._subscriptions:
                self._waitset.detach(subscription.condition)
            self._subscriptions.clear()
            self._publishers.clear()
            self._topics.clear()
        self._discovery = None
        self._waitset = None
        self._wakeup = None
        self.participant = None

    def __enter__(self) -> DdsTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
