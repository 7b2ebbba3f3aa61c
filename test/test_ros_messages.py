"""The .msg files: rosbags builds types, hashes, CMake lists.

ROS's own rosidl (Jazzy) validates and builds them in test_ros_rclpy_messages.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fasthmr_ros.models import constants
from fasthmr_ros.ros import messages

ROOT = Path(__file__).resolve().parents[1]
MSG_DIR = ROOT / "msg"
EXPECTED = {"HandMesh", "HandMeshArray", "BodyMesh", "BodyMeshArray", "MeshTopology",
            "HandDetection", "HandDetectionArray", "PersonDetection", "PersonDetectionArray"}


def test_every_expected_message_exists():
    assert {p.stem for p in MSG_DIR.glob("*.msg")} == EXPECTED


def test_typestore_registers_the_package_messages():
    store = messages.load_typestore(MSG_DIR)
    assert set(messages.package_message_types(store)) == {
        f"fasthmr_ros/msg/{n}" for n in EXPECTED
    }


def test_load_typestore_reports_a_missing_folder(tmp_path):
    with pytest.raises(messages.MessageDefinitionError, match="no .msg files"):
        messages.load_typestore(tmp_path)


def test_load_typestore_reports_a_broken_file(tmp_path):
    (tmp_path / "Broken.msg").write_text("float32[ broken\n")
    with pytest.raises(messages.MessageDefinitionError, match="Broken.msg"):
        messages.load_typestore(tmp_path)


def test_hand_mesh_constants_match_the_model_constants():
    hand = messages.typestore().types["fasthmr_ros/msg/HandMesh"]
    assert hand.NUM_JOINTS == constants.NUM_JOINTS
    assert not hasattr(hand, "NUM_VERTICES")  # the topology gives the vertex count
    assert hand.NUM_POSE_JOINTS == constants.NUM_HAND_POSE_JOINTS
    assert hand.NUM_BETAS == constants.NUM_BETAS
    for index, name in enumerate(constants.JOINT_NAMES):
        assert getattr(hand, f"JOINT_{name.upper()}") == index
    assert (hand.SIDE_LEFT, hand.SIDE_RIGHT) == (0, 1)


def test_fixed_array_sizes_follow_the_constants():
    _, fields = messages.typestore().fielddefs["fasthmr_ros/msg/HandMesh"]
    sizes = {name: desc[1][1] for name, desc in fields if desc[0].name == "ARRAY"}
    assert sizes == {
        "box": 4,
        "keypoints_2d": 2 * constants.NUM_JOINTS,
        "joints": constants.NUM_JOINTS,
    }
    # Model-dependent fields are sequences: MANO's are empty for other models.
    sequences = {name for name, desc in fields if desc[0].name == "SEQUENCE"}
    assert {"vertices", "global_orient", "hand_pose", "betas", "model_params"} <= sequences


def test_type_hashes():
    # The hash of sensor_msgs/Image that Jazzy announces (ros2 topic info -v).
    assert messages.type_hash("sensor_msgs/msg/Image").startswith("RIHS01_d31d41a9a4c4bc8e")
    for name in messages.package_message_types():
        assert re.fullmatch(r"RIHS01_[0-9a-f]{64}", messages.type_hash(name))
    # Every message has its own hash.
    hashes = [messages.type_hash(n) for n in messages.package_message_types()]
    assert len(set(hashes)) == len(hashes)


def test_dds_type_names():
    hand = messages.dds_type_name("fasthmr_ros/msg/HandMesh")
    assert hand == "fasthmr_ros::msg::dds_::HandMesh_"
    assert messages.dds_type_name("std_msgs/msg/Header") == "std_msgs::msg::dds_::Header_"
    with pytest.raises(ValueError, match="pkg/msg/Name"):
        messages.dds_type_name("HandMesh")


def test_new_message_fills_ros_defaults():
    msg = messages.new_message("fasthmr_ros/msg/HandMesh")
    assert msg.id == "" and msg.side == 0 and msg.score == 0.0
    assert msg.box.dtype == np.float32 and msg.box.shape == (4,) and not msg.box.any()
    assert len(msg.joints) == constants.NUM_JOINTS
    assert msg.vertices.size == 0
    assert msg.wrist_pose.orientation.w == 0.0
    raw = messages.serialize(msg, "fasthmr_ros/msg/HandMesh")
    back = messages.deserialize(raw, "fasthmr_ros/msg/HandMesh")
    assert back.box.shape == (4,) and len(back.joints) == constants.NUM_JOINTS


def test_new_message_rejects_unknown_fields():
    with pytest.raises(TypeError, match="no field"):
        messages.new_message("fasthmr_ros/msg/HandMeshArray", hands=[], bogus=1)
    with pytest.raises(KeyError, match="unknown message type"):
        messages.new_message("fasthmr_ros/msg/Nope")


def test_time_and_header_helpers():
    t = messages.time_from_ns(1_700_000_000_123_456_789)
    assert (t.sec, t.nanosec) == (1_700_000_000, 123_456_789)
    assert messages.stamp_to_ns(t) == 1_700_000_000_123_456_789
    header = messages.make_header(5, "cam")
    assert header.frame_id == "cam" and header.stamp.nanosec == 5


def test_cmake_generates_every_msg_file_with_its_dependencies():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    block = re.search(r"rosidl_generate_interfaces\(\$\{PROJECT_NAME\}(.*?)\)", cmake, re.S)
    assert block, "CMakeLists.txt must call rosidl_generate_interfaces(${PROJECT_NAME} ...)"
    listed = set(re.findall(r'"msg/(\w+)\.msg"', block.group(1)))
    assert listed == {p.stem for p in MSG_DIR.glob("*.msg")}
    deps = set(block.group(1).split("DEPENDENCIES", 1)[1].split())
    referenced = set()
    for path in MSG_DIR.glob("*.msg"):
        referenced |= set(re.findall(r"^\s*(\w+)/\w+", path.read_text(), re.M))
    referenced.add("builtin_interfaces")  # std_msgs/Header carries builtin_interfaces/Time
    assert referenced <= deps
    for dep in deps:
        assert f"find_package({dep} REQUIRED)" in cmake
