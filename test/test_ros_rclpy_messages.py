"""The messages as ROS 2 Jazzy's own rosidl builds them agree with the rosbags codec.

``scripts/setup-ros.sh`` generated the ``fasthmr_ros.msg`` classes with the package's
CMakeLists.txt (rosidl_generate_interfaces). Here ROS's rosidl_adapter validates the ``.msg``
files, and the bytes and type hashes of the generated classes are compared with those of the
rosbags typestore the DDS transport and the node core use.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rclpy_test_support import rclpy_available
from ros_test_support import make_hand_result

pytestmark = [pytest.mark.rclpy, pytest.mark.usefixtures(rclpy_available.__name__)]

ROOT = Path(__file__).resolve().parents[1]
MSG_DIR = ROOT / "msg"
HAND_MESH_ARRAY = "fasthmr_ros/msg/HandMeshArray"


def test_rosidl_adapter_accepts_every_msg_file_and_rejects_a_bad_name(tmp_path):
    from rosidl_adapter.parser import InvalidResourceName, parse_message_file

    for path in sorted(MSG_DIR.glob("*.msg")):
        spec = parse_message_file("fasthmr_ros", str(path))
        assert spec.fields, path
    bad = tmp_path / "Bad.msg"
    bad.write_text("float32 Score\n")
    with pytest.raises((InvalidResourceName, NameError, ValueError), match="Score"):
        parse_message_file("fasthmr_ros", str(bad))


def test_generated_type_hashes_equal_the_announced_ones():
    from fasthmr_ros.ros import messages

    share = Path(sys.prefix) / "share"
    checked = set()
    for package in ("fasthmr_ros", "tf2_msgs"):
        for path in sorted((share / package / "msg").glob("*.json")):
            for entry in json.loads(path.read_text())["type_hashes"]:
                assert entry["hash_string"] == messages.type_hash(entry["type_name"]), entry
                checked.add(entry["type_name"])
    assert set(messages.package_message_types()) | {"tf2_msgs/msg/TFMessage"} <= checked


def normalized(raw: bytes, msgtype: str) -> bytes:
    """Re-encode CDR with rosbags: Fast CDR leaves alignment padding uninitialised."""
    from fasthmr_ros.ros import messages

    return messages.serialize(messages.deserialize(raw, msgtype), msgtype)


def test_generated_classes_read_and_write_the_rosbags_bytes():
    from fasthmr_ros.msg import HandMeshArray
    from rclpy.serialization import deserialize_message, serialize_message

    from fasthmr_ros.ros import messages
    from fasthmr_ros.ros.hand_messages import hand_mesh_array_message

    header = messages.make_header(1_700_000_000_123_456_789, "camera_optical_frame")
    results = [make_hand_result("right", seed=1, track_id=3), make_hand_result("left", seed=2)]
    raw = messages.serialize(hand_mesh_array_message(header, results), HAND_MESH_ARRAY)
    msg = deserialize_message(raw, HandMeshArray)
    assert msg.header.frame_id == "camera_optical_frame"
    assert msg.header.stamp.nanosec == 123_456_789 and len(msg.hands) == 2
    assert normalized(serialize_message(msg), HAND_MESH_ARRAY) == raw
    for msgtype in messages.package_message_types():
        package, _, name = msgtype.split("/")
        cls = getattr(__import__(f"{package}.msg", fromlist=[name]), name)
        empty = messages.serialize(messages.new_message(msgtype), msgtype)
        assert normalized(serialize_message(deserialize_message(empty, cls)), msgtype) == empty


def test_generated_person_detections_carry_the_rosbags_bytes():
    """A PersonDetectionArray from an rclpy detector reaches the body node's parser intact."""
    import numpy as np
    from fasthmr_ros.msg import PersonDetection, PersonDetectionArray
    from rclpy.serialization import serialize_message

    from fasthmr_ros.ros import messages
    from fasthmr_ros.ros.mesh_messages import (
        PERSON_DETECTION_ARRAY,
        boxes_from_person_detections,
    )

    msg = PersonDetectionArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 5
    msg.header.frame_id = "camera_optical_frame"
    msg.detections = [PersonDetection(score=0.75, box=[3.0, 4.0, 50.0, 90.0],
                                      keypoints_2d=[float(v) for v in range(66)]),
                      PersonDetection(score=0.5, box=[10.0, 10.0, 5.0, 20.0])]  # inverted
    raw = normalized(serialize_message(msg), PERSON_DETECTION_ARRAY)
    boxes, problems = boxes_from_person_detections(
        messages.deserialize(raw, PERSON_DETECTION_ARRAY))
    assert [b.xyxy.tolist() for b in boxes] == [[3.0, 4.0, 50.0, 90.0]]
    np.testing.assert_array_equal(boxes[0].keypoints_2d, np.arange(66).reshape(33, 2))
    assert len(problems) == 1 and "x2 > x1" in problems[0]
