"""Run the hand or body mesh node over a rosbag2 recording and write its outputs to a new bag.

The node logic is exactly the live node's (:class:`~fasthmr_ros.ros.mesh_node.MeshNode`, in
its hand or body configuration);
only the transport differs: input messages are replayed from the bag in time order, and every
publication is written at the bag time of the image it came from. Unlike the live node no
frame is dropped: each image is processed once the messages recorded up to the next image
(its CameraInfo, external detections) have been delivered.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.hand_node import HAND_NODE
from fasthmr_ros.ros.image_codec import COMPRESSED_IMAGE, IMAGE
from fasthmr_ros.ros.mesh_node import (
    CAMERA_INFO_TOPIC,
    COMPRESSED_SUFFIX,
    IMAGE_TOPIC,
    BoxDetector,
    MeshNode,
    MeshPipeline,
    NodeKind,
)
from fasthmr_ros.ros.names import NameResolver
from fasthmr_ros.ros.parameters import ParameterSet
from fasthmr_ros.ros.qos import BEST_EFFORT, TRANSIENT_LOCAL, QosProfile
from fasthmr_ros.ros.transport import RawCallback


class BagError(ValueError):
    """A bag that cannot be read or written as asked."""


def _rosbags_qos(profile: QosProfile) -> Any:
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=profile.depth,
        reliability=QosReliability.BEST_EFFORT
        if profile.reliability == BEST_EFFORT
        else QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL
        if profile.durability == TRANSIENT_LOCAL
        else QosDurability.VOLATILE,
        deadline=QosTime(0, 0),
        lifespan=QosTime(0, 0),
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=QosTime(0, 0),
        avoid_ros_namespace_conventions=False,
    )


class BagPublisher:
    """Writes a topic's messages into the output bag at the transport's current time."""

    def __init__(self, transport: BagTransport, connection: Any, topic: str) -> None:
        self._transport = transport
        self._connection = connection
        self.topic = topic

    def publish(self, raw: bytes) -> None:
        """Write one message."""
        self._transport.write(self._connection, raw)

    def subscription_count(self) -> int:
        """A bag records every topic: always one subscriber."""
        return 1


@dataclass
class BagTransport:
    """A :class:`~fasthmr_ros.ros.transport.Transport` that writes to a rosbags ``Writer``."""

    writer: Any
    resolver: NameResolver
    logger: Any
    now: int = 0
    subscriptions: dict[str, tuple[str, RawCallback]] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)

    @property
    def node_name(self) -> str:
        """The node's name."""
        return self.resolver.node_name

    def create_publisher(self, topic: str, msgtype: str, qos: QosProfile) -> BagPublisher:
        """Add an output connection (with the QoS a live publisher would offer)."""
        name = self.resolver.resolve(topic)
        connection = self.writer.add_connection(
            name, msgtype, typestore=messages.typestore(),
            offered_qos_profiles=[_rosbags_qos(qos)],
        )
        return BagPublisher(self, connection, name)

    def create_subscription(
        self, topic: str, msgtype: str, qos: QosProfile, callback: RawCallback
    ) -> str:
        """Register a callback for an input topic of the bag."""
        name = self.resolver.resolve(topic)
        self.subscriptions[name] = (msgtype, callback)
        return name

    def resolve(self, topic: str) -> str:
        """Return the fully qualified, remapped name of ``topic``."""
        return self.resolver.resolve(topic)

    def now_ns(self) -> int:
        """Return the bag time of the message being replayed."""
        return self.now

    def write(self, connection: Any, raw: bytes) -> None:
        """Write ``raw`` on ``connection`` at the current bag time."""
        self.writer.write(connection, self.now, raw)
        self.written[connection.topic] = self.written.get(connection.topic, 0) + 1


@dataclass
class BagReport:
    """What a bag run did."""

    images: int
    processed: int
    rejected: int
    written: dict[str, int]
    output: Path


def find_image_topic(topics: dict[str, str], compressed: bool) -> str:
    """Return the one image topic of a bag (``topics`` maps names to message types).

    Raises:
        BagError: when the bag has no such topic or several (name one with ``--image-topic``).

    """
    wanted = COMPRESSED_IMAGE if compressed else IMAGE
    found = sorted(name for name, msgtype in topics.items() if msgtype == wanted)
    if len(found) == 1:
        return found[0]
    if not found:
        raise BagError(
            f"the bag has no {wanted} topic (topics: "
            + ", ".join(f"{n} [{t}]" for n, t in sorted(topics.items()))
            + ("); for compressed images set image_transport=compressed" if not compressed
               else ")")
        )
    raise BagError(f"the bag has several {wanted} topics ({', '.join(found)}); choose one "
                   "with --image-topic")


def _open_writer(output: Path, storage: str) -> tuple[Any, Path]:
    from rosbags.rosbag2 import StoragePlugin, Writer

    if output.exists():
        raise BagError(f"{output} exists already; choose a new output path")
    if output.suffix == ".mcap":
        # A single MCAP file: write a bag folder next to it, then keep only its .mcap.
        folder = output.with_name(output.name + ".bag-tmp")
        if folder.exists():
            raise BagError(f"{folder} exists already; remove it")
        return Writer(folder, version=8, storage_plugin=StoragePlugin.MCAP), folder
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
    if plugin is None:
        raise BagError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    return Writer(output, version=8, storage_plugin=plugin), output


def process_bag(
    input_path: str | Path,
    output_path: str | Path,
    params: ParameterSet,
    pipeline: MeshPipeline,
    model: MeshModelInfo,
    detector: BoxDetector | None,
    logger: Any,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    remaps: Iterable[str] = (),
    storage: str = "mcap",
    copy_inputs: bool = False,
    progress: Callable[[int, int], None] | None = None,
    kind: NodeKind = HAND_NODE,
) -> BagReport:
    """Run the mesh node over ``input_path`` and write its outputs to ``output_path``.

    Args:
        input_path: a rosbag2 folder, or a single ``.mcap`` / ``.db3`` file.
        output_path: a new rosbag2 folder, or a single ``.mcap`` file when it ends in ``.mcap``.
        params: node parameters.
        pipeline: the hand mesh pipeline.
        model: the pipeline's mesh model (``pipeline.info``).
        detector: box source (``None`` for ``detector: external``).
        logger: where the node logs.
        image_topic: the image topic in the bag (found automatically when there is one).
        camera_info_topic: the CameraInfo topic (default: ``camera_info`` next to the image).
        remaps: extra ``FROM:=TO`` rules (for example for ``hand_detections``).
        storage: ``mcap`` or ``sqlite3`` for folder outputs.
        copy_inputs: also copy the input topics the node reads into the output bag.
        progress: called with (messages done, messages total).
        kind: the node configuration (hands by default; ``BODY_NODE`` for bodies).

    """
    from rosbags.rosbag2 import Reader

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BagError(f"input bag {input_path} does not exist")
    compressed = params["image_transport"] == "compressed"
    with Reader(input_path) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        image_topic = image_topic or find_image_topic(topics, compressed)
        base = image_topic
        if compressed:
            if not image_topic.endswith(COMPRESSED_SUFFIX):
                raise BagError(f"compressed image topics end in {COMPRESSED_SUFFIX}, got "
                               f"{image_topic}")
            base = image_topic[: -len(COMPRESSED_SUFFIX)]
        if camera_info_topic is None:
            camera_info_topic = base.rsplit("/", 1)[0] + "/camera_info"
        rules = [f"{IMAGE_TOPIC}:={base}", f"{CAMERA_INFO_TOPIC}:={camera_info_topic}",
                 *remaps]
        resolver = NameResolver.from_rules(kind.node_name, "/", rules)
        writer, folder = _open_writer(output_path, storage)
        images = 0
        try:
            with writer:
                transport = BagTransport(writer, resolver, logger)
                node = MeshNode(transport, params, kind, pipeline, model, detector,
                                clock=lambda: transport.now * 1e-9)
                if params["use_camera_info"] and camera_info_topic not in topics:
                    logger.warning(f"the bag has no {camera_info_topic}: using the default "
                                   "focal length (set --camera-info-topic)")
                transport.now = reader.start_time
                node.start()  # subscribes (fills transport.subscriptions), writes the topology
                connections = [c for c in reader.connections if c.topic in
                               transport.subscriptions]
                if not connections:
                    raise BagError(f"the bag has none of the topics the node reads: "
                                   f"{', '.join(sorted(transport.subscriptions))}")
                copies = {}
                if copy_inputs:
                    for c in connections:
                        copies[c.id] = writer.add_connection(
                            c.topic, c.msgtype, typestore=messages.typestore())
                total = sum(c.msgcount for c in connections)
                pending: int | None = None  # bag time of the image not processed yet

                def process_pending() -> None:
                    # Outputs are written at the bag time of their image.
                    if pending is not None:
                        now, transport.now = transport.now, pending
                        node.spin_once(0.0)
                        transport.now = now

                for done, (connection, timestamp, raw) in enumerate(
                    reader.messages(connections=connections), start=1
                ):
                    msgtype, callback = transport.subscriptions[connection.topic]
                    if connection.msgtype != msgtype:
                        raise BagError(f"{connection.topic} holds {connection.msgtype}, the "
                                       f"node expects {msgtype}")
                    transport.now = timestamp
                    if msgtype in (IMAGE, COMPRESSED_IMAGE):
                        # The previous image, now that everything recorded before this one
                        # (its CameraInfo, its detections) has been delivered.
                        process_pending()
                        pending = timestamp
                        images += 1
                    if connection.id in copies:
                        transport.write(copies[connection.id], bytes(raw))
                    callback(bytes(raw))
                    if progress is not None:
                        progress(done, total)
                process_pending()
                node.publish_diagnostics()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    if folder != output_path:
        (folder / f"{folder.name}.mcap").rename(output_path)
        shutil.rmtree(folder)
    snapshot = node.stats.snapshot(node.clock())
    return BagReport(images=images, processed=snapshot.frames_processed,
                     rejected=snapshot.messages_rejected, written=dict(transport.written),
                     output=output_path)
