"""The DDS transport: ROS 2 wire format (CDR equality, names, QoS, type hashes) on loopback."""

from __future__ import annotations

import numpy as np
import pytest
from ros_test_support import (
    Collector,
    make_hand_result,
    random_domain_id,
    sample_rgb,
    to_idl_sample,
    write_loopback_config,
)

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")

from fasthmr_ros.models.mano_info import mano_info  # noqa: E402
from fasthmr_ros.ros import messages, qos  # noqa: E402
from fasthmr_ros.ros.camera_info import camera_info_message  # noqa: E402
from fasthmr_ros.ros.dds import (  # noqa: E402
    DdsError,
    DdsTransport,
    domain_id_from_env,
    pad_cdr,
    unpad_cdr,
)
from fasthmr_ros.ros.diagnostics import NodeStatistics, diagnostic_array  # noqa: E402
from fasthmr_ros.ros.hand_messages import (  # noqa: E402
    hand_ids,
    hand_mesh_array_message,
)
from fasthmr_ros.ros.image_codec import encode_compressed_image, encode_image  # noqa: E402
from fasthmr_ros.ros.markers import HandMarkerBuilder  # noqa: E402
from fasthmr_ros.ros.mesh_messages import topology_message  # noqa: E402
from fasthmr_ros.ros.tf_frames import wrist_transforms  # noqa: E402

HEADER = messages.make_header(1_700_000_000_000_000_001, "camera_optical_frame")


@pytest.fixture()
def loopback(tmp_path, monkeypatch):
    """Loopback-only Cyclone DDS on a domain of this test's own."""
    monkeypatch.setenv("CYCLONEDDS_URI", "file://" + str(write_loopback_config(tmp_path)))
    return random_domain_id()


def _sample_messages() -> dict[str, object]:
    rgb = sample_rgb(64, 48)
    results = [make_hand_result("right", 1), make_hand_result("left", 2, track_id=4)]
    faces = np.random.default_rng(0).integers(0, 778, (1538, 3))
    detection = messages.typestore().types["fasthmr_ros/msg/HandDetection"]
    person = messages.typestore().types["fasthmr_ros/msg/PersonDetection"]
    stats = NodeStatistics()
    stats.start(0.0)
    stats.input(0.1)
    return {
        "sensor_msgs/msg/Image": encode_image(rgb, HEADER),
        "sensor_msgs/msg/CompressedImage": encode_compressed_image(rgb, HEADER),
        "sensor_msgs/msg/CameraInfo": camera_info_message(HEADER, 64, 48, None),
        "fasthmr_ros/msg/HandMeshArray": hand_mesh_array_message(HEADER, results),
        "fasthmr_ros/msg/MeshTopology": topology_message(mano_info(faces), HEADER),
        "fasthmr_ros/msg/HandDetectionArray": messages.new_message(
            "fasthmr_ros/msg/HandDetectionArray", header=HEADER,
            detections=[detection(side=1, score=0.5, box=np.array([1, 2, 30, 40], np.float32),
                                  keypoints_2d=np.zeros(42, np.float32))]),
        "fasthmr_ros/msg/PersonDetectionArray": messages.new_message(
            "fasthmr_ros/msg/PersonDetectionArray", header=HEADER,
            detections=[person(score=0.75, box=np.array([3, 4, 50, 60], np.float32),
                               keypoints_2d=np.arange(66, dtype=np.float32)),
                        person(score=0.5, box=np.array([0, 0, 9, 9], np.float32),
                               keypoints_2d=np.zeros(0, np.float32))]),
        "visualization_msgs/msg/MarkerArray": HandMarkerBuilder(faces).build(
            HEADER, results, hand_ids(results)).full_message(),
        "tf2_msgs/msg/TFMessage": wrist_transforms(HEADER, results, hand_ids(results)),
        "diagnostic_msgs/msg/DiagnosticArray": diagnostic_array(
            HEADER, "n", "cpu", stats.snapshot(1.0)),
    }


@pytest.mark.parametrize("msgtype", list(_sample_messages()))
def test_cdr_of_the_dds_type_equals_rosbags(msgtype):
    # The struct type announced in discovery, serialised by cyclonedds itself, gives exactly the
    # bytes rosbags writes: a peer using the typed struct (e.g. rmw_cyclonedds) decodes us.
    msg = _sample_messages()[msgtype]
    store = messages.typestore()
    rosbags_bytes = messages.serialize(msg, msgtype)
    assert to_idl_sample(msg, msgtype, store).serialize() == rosbags_bytes


def test_messages_cross_dds_byte_identical(loopback):
    node = DdsTransport("node", "/cam", domain_id=loopback)
    peer = DdsTransport("peer", "/", domain_id=loopback)
    try:
        collector = Collector()
        sent = _sample_messages()
        publishers = {}
        for index, msgtype in enumerate(sent):
            topic = f"/cam/topic_{index}"
            peer.create_subscription(topic, msgtype, qos.DEFAULT, collector.callback(msgtype))
            publishers[msgtype] = node.create_publisher(f"topic_{index}", msgtype, qos.DEFAULT)
            assert publishers[msgtype].topic == topic
        for publisher in publishers.values():
            assert _wait(lambda p=publisher: p.subscription_count() == 1)
        raw = {t: messages.serialize(m, t) for t, m in sent.items()}
        for msgtype, publisher in publishers.items():
            publisher.publish(raw[msgtype])
        assert collector.wait_for(lambda: all(collector.count(t) for t in sent), 10)
        for msgtype in sent:
            received = collector.messages[msgtype][0]
            assert len(received) % 4 == 0
            assert unpad_cdr(received) == raw[msgtype], msgtype
            assert received == pad_cdr(raw[msgtype])
            # rosbags reads the padded payload as it is.
            back = messages.deserialize(received, msgtype)
            assert messages.serialize(back, msgtype) == raw[msgtype]
    finally:
        node.close()
        peer.close()


def test_topic_names_and_type_hashes_on_the_wire(loopback):
    with DdsTransport("hand_mesh_node", "/cam", ["image:=/camera/rgb"],
                      domain_id=loopback) as node:
        publisher = node.create_publisher("hands", "fasthmr_ros/msg/HandMeshArray", qos.DEFAULT)
        subscription = node.create_subscription("image", "sensor_msgs/msg/Image",
                                                qos.SENSOR_DATA, lambda raw: None)
        writer = publisher._writer
        assert writer.topic.name == "rt/cam/hands"
        assert writer.topic.typename == "fasthmr_ros::msg::dds_::HandMeshArray_"
        assert subscription.reader.topic.name == "rt/camera/rgb"
        from cyclonedds.qos import Policy

        for entity, msgtype in ((writer, "fasthmr_ros/msg/HandMeshArray"),
                                (subscription.reader, "sensor_msgs/msg/Image")):
            qos_ = entity.get_qos()
            expected = f"typehash={messages.type_hash(msgtype)};".encode()
            assert Policy.Userdata(data=expected) in qos_
            assert Policy.DataRepresentation(use_cdrv0_representation=True) in qos_
        assert Policy.Reliability.BestEffort in subscription.reader.get_qos()
        assert Policy.History.KeepLast(5) in subscription.reader.get_qos()


def test_qos_matching_mirrors_ros(loopback):
    # A best-effort reader (the node's image subscription) matches a reliable publisher;
    # a reliable reader does not match a best-effort publisher.
    with DdsTransport("a", "/", domain_id=loopback) as a, DdsTransport(
            "b", "/", domain_id=loopback) as b:
        reliable_pub = a.create_publisher("x", "sensor_msgs/msg/Image", qos.DEFAULT)
        b.create_subscription("x", "sensor_msgs/msg/Image", qos.SENSOR_DATA, lambda r: None)
        assert _wait(lambda: reliable_pub.subscription_count() == 1)
        best_effort_pub = a.create_publisher("y", "sensor_msgs/msg/Image", qos.SENSOR_DATA)
        b.create_subscription("y", "sensor_msgs/msg/Image", qos.DEFAULT, lambda r: None)
        assert not _wait(lambda: best_effort_pub.subscription_count() > 0, timeout=1.0)


def test_latched_topic_reaches_late_subscribers(loopback):
    with DdsTransport("a", "/", domain_id=loopback) as a, DdsTransport(
            "b", "/", domain_id=loopback) as b:
        publisher = a.create_publisher("topology", "fasthmr_ros/msg/MeshTopology", qos.LATCHED)
        msg = _sample_messages()["fasthmr_ros/msg/MeshTopology"]
        raw = messages.serialize(msg, "fasthmr_ros/msg/MeshTopology")
        publisher.publish(raw)
        collector = Collector()
        b.create_subscription("topology", "fasthmr_ros/msg/MeshTopology", qos.LATCHED,
                              collector.callback("t"))
        assert collector.wait_for(lambda: collector.count("t") == 1, 10)
        assert unpad_cdr(collector.messages["t"][0]) == raw


def test_a_failing_callback_does_not_stop_the_others(loopback):
    with DdsTransport("a", "/", domain_id=loopback) as a, DdsTransport(
            "b", "/", domain_id=loopback) as b:
        collector = Collector()

        def broken(raw: bytes) -> None:
            raise RuntimeError("user bug")

        b.create_subscription("x", "std_msgs/msg/Header", qos.DEFAULT, broken)
        b.create_subscription("y", "std_msgs/msg/Header", qos.DEFAULT, collector.callback("y"))
        px = a.create_publisher("x", "std_msgs/msg/Header", qos.DEFAULT)
        py = a.create_publisher("y", "std_msgs/msg/Header", qos.DEFAULT)
        assert _wait(lambda: px.subscription_count() and py.subscription_count())
        raw = messages.serialize(HEADER, "std_msgs/msg/Header")
        for _ in range(3):
            px.publish(raw)
            py.publish(raw)
        assert collector.wait_for(lambda: collector.count("y") == 3, 10)


def test_cdr_padding_is_announced_in_the_options():
    raw = messages.serialize(messages.make_header(0, "ab"), "std_msgs/msg/Header")
    assert len(raw) % 4 == 3
    padded = pad_cdr(raw)
    assert len(padded) == len(raw) + 1 and padded[3] == 1 and padded[-1] == 0
    assert unpad_cdr(padded) == raw
    aligned = messages.serialize(messages.make_header(0, "abc"), "std_msgs/msg/Header")
    assert pad_cdr(aligned) == aligned == unpad_cdr(aligned)


def test_domain_id_from_env():
    assert domain_id_from_env({}) == 0
    assert domain_id_from_env({"ROS_DOMAIN_ID": " 42 "}) == 42
    with pytest.raises(DdsError, match="integer"):
        domain_id_from_env({"ROS_DOMAIN_ID": "x"})
    with pytest.raises(DdsError, match="between 0 and 232"):
        domain_id_from_env({"ROS_DOMAIN_ID": "300"})


def _wait(predicate, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
