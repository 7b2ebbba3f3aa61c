"""Parameter declarations, validation, ROS parameter files, names and the rclpy glue logic."""

from __future__ import annotations

import array
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fasthmr_ros.ros import messages
from fasthmr_ros.ros.names import (
    InvalidNameError,
    NameResolver,
    dds_topic_name,
    expand_topic_name,
    normalize_namespace,
    parse_remap,
)
from fasthmr_ros.ros.parameters import (
    BODY_NODE_PARAMETERS,
    HAND_NODE_PARAMETERS,
    ParameterError,
    ParameterSet,
    load_parameter_file,
    parse_override,
)
from fasthmr_ros.ros.rclpy_transport import (
    changes_for_node,
    parameter_descriptor_fields,
    plain_value,
    wants_lifecycle,
)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ parameters
def test_defaults_validate():
    params = ParameterSet()
    assert params["score_threshold"] == 0.3 and params["device"] == "cpu"
    assert params["intrinsics"] == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("name,value,reason", [
    ("score_threshold", 1.5, "between 0.0 and 1.0"),
    ("score_threshold", "high", "must be a double"),
    ("score_threshold", float("nan"), "finite"),
    ("max_hands", 0, "between 1 and 16"),
    ("max_hands", 2.5, "must be a integer"),
    ("max_hands", True, "must be a integer"),
    ("publish_tf", 1, "must be a bool"),
    ("intrinsics", [600.0, 600.0, 320.0], "4 values"),
    ("intrinsics", [-600.0, 600.0, 320.0, 240.0], "positive"),
    ("intrinsics", [600.0, "a", 320.0, 240.0], "double array"),
    ("marker_lifetime", -1.0, "between"),
])
def test_invalid_runtime_values_are_rejected_with_a_reason(name, value, reason):
    params = ParameterSet()
    with pytest.raises(ParameterError, match=reason):
        params.update({name: value})
    assert params[name] == ParameterSet()[name]  # unchanged


@pytest.mark.parametrize("name,value,reason", [
    ("device", "gpu", "cpu', 'cuda' or 'cuda:N"),
    ("detector", "yolo", "must be one of mediapipe, external, full_frame"),
    ("image_transport", "theora", "must be one of raw, compressed"),
])
def test_invalid_startup_values(name, value, reason):
    with pytest.raises(ParameterError, match=reason):
        ParameterSet().initialize({name: value})


def test_read_only_parameters_cannot_change_at_run_time():
    params = ParameterSet()
    with pytest.raises(ParameterError, match="read-only"):
        params.update({"device": "cuda"})
    params.initialize({"device": "cuda:1"})
    assert params["device"] == "cuda:1"


def test_updates_are_all_or_nothing_and_report_changes():
    params = ParameterSet()
    with pytest.raises(ParameterError):
        params.update({"max_hands": 4, "score_threshold": 2.0})
    assert params["max_hands"] == 2
    assert params.update({"max_hands": 4, "score_threshold": 0.3}) == {"max_hands": 4}
    assert params.update({"score_threshold": 1}) == {"score_threshold": 1.0}  # int -> double


def test_unknown_parameter_lists_the_known_ones():
    with pytest.raises(ParameterError, match="unknown parameter 'nope'.*checkpoint"):
        ParameterSet().update({"nope": 1})


def test_parse_override():
    assert parse_override("score_threshold=0.5") == ("score_threshold", 0.5)
    assert parse_override("publish_tf:=true") == ("publish_tf", True)
    assert parse_override("intrinsics=[600, 600, 320, 240]") == (
        "intrinsics", [600, 600, 320, 240])
    assert parse_override("checkpoint=/data/_DATA") == ("checkpoint", "/data/_DATA")
    assert parse_override("mano_dir=") == ("mano_dir", "")
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_override("score_threshold")
    with pytest.raises(ParameterError, match="not valid YAML"):
        parse_override("intrinsics=[1, 2")


def test_parameter_file_sections_and_wildcards(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "/**": {"ros__parameters": {"max_hands": 3, "score_threshold": 0.4}},
        "/cam/hand_mesh_node": {"ros__parameters": {"max_hands": 5}},
        "/other/hand_mesh_node": {"ros__parameters": {"max_hands": 9}},
        "/cam/*": {"ros__parameters": {"publish_tf": True}},
        "hand_mesh_node": {"ros__parameters": {"device": "cuda"}},
        "/**/hand_mesh_node": {"ros__parameters": {"nested": {"value": 1}}},
    }, sort_keys=False))
    values = load_parameter_file(path, "/cam/hand_mesh_node")
    assert values == {"max_hands": 5, "score_threshold": 0.4, "publish_tf": True,
                      "nested.value": 1}
    root = load_parameter_file(path, "/hand_mesh_node")
    assert root["device"] == "cuda" and "publish_tf" not in root


def test_parameter_file_errors(tmp_path):
    with pytest.raises(ParameterError, match="cannot read"):
        load_parameter_file(tmp_path / "missing.yaml", "/n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  max_hands: 3\n")
    with pytest.raises(ParameterError, match="ros__parameters"):
        load_parameter_file(bad, "/n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**: [\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        load_parameter_file(broken, "/n")


@pytest.mark.parametrize(("config", "node", "declared"), [
    ("hands.yaml", "hand_mesh_node", HAND_NODE_PARAMETERS),
    ("bodies.yaml", "body_mesh_node", BODY_NODE_PARAMETERS),
])
def test_shipped_config_declares_every_parameter_with_its_default(config, node, declared):
    values = load_parameter_file(ROOT / "config" / config, f"/any/ns/{node}")
    specs = {s.name: s for s in declared}
    assert set(values) == set(specs)
    for name, value in values.items():
        assert specs[name].validate(value) == specs[name].validate(specs[name].default), name


# ------------------------------------------------------------------ rclpy glue
def test_descriptor_fields_build_a_real_parameter_descriptor():
    store = messages.typestore()
    types = store.types
    ptype = types["rcl_interfaces/msg/ParameterType"]
    by_name = {}
    for spec in HAND_NODE_PARAMETERS:
        fields = parameter_descriptor_fields(spec)
        fields["floating_point_range"] = [types["rcl_interfaces/msg/FloatingPointRange"](**r)
                                          for r in fields["floating_point_range"]]
        fields["integer_range"] = [types["rcl_interfaces/msg/IntegerRange"](**r)
                                   for r in fields["integer_range"]]
        msg = types["rcl_interfaces/msg/ParameterDescriptor"](**fields)
        raw = messages.serialize(msg, "rcl_interfaces/msg/ParameterDescriptor")
        by_name[spec.name] = messages.deserialize(raw, "rcl_interfaces/msg/ParameterDescriptor")
    score = by_name["score_threshold"]
    assert score.type == ptype.PARAMETER_DOUBLE and not score.read_only
    assert (score.floating_point_range[0].from_value,
            score.floating_point_range[0].to_value) == (0.0, 1.0)
    hands = by_name["max_hands"]
    assert hands.type == ptype.PARAMETER_INTEGER and hands.integer_range[0].step == 1
    assert by_name["checkpoint"].read_only and by_name["checkpoint"].type == ptype.PARAMETER_STRING
    assert by_name["intrinsics"].type == ptype.PARAMETER_DOUBLE_ARRAY
    assert by_name["publish_tf"].type == ptype.PARAMETER_BOOL
    assert "one of: mediapipe, external, full_frame" in by_name["detector"].additional_constraints


def test_changes_for_node_keeps_own_parameters_as_plain_values():
    changes = changes_for_node(
        [("use_sim_time", True), ("intrinsics", array.array("d", [1.0, 2.0, 3.0, 4.0])),
         ("max_hands", 3)],
        [s.name for s in HAND_NODE_PARAMETERS],
    )
    assert changes == {"intrinsics": [1.0, 2.0, 3.0, 4.0], "max_hands": 3}
    assert plain_value((1.0, 2.0)) == [1.0, 2.0]


def test_lifecycle_is_read_from_the_command_line_and_parameter_files(tmp_path):
    assert not wants_lifecycle(["--ros-args", "-p", "max_hands:=2"])
    assert wants_lifecycle(["--ros-args", "-p", "lifecycle:=true"])
    assert not wants_lifecycle(["--ros-args", "-p", "lifecycle:=true", "-p", "lifecycle:=false"])
    assert wants_lifecycle(["--ros-args", "-r", "__node:=left", "-p", "left:lifecycle:=True"])
    assert not wants_lifecycle(["--ros-args", "-p", "other:lifecycle:=true"])
    params = tmp_path / "params.yaml"
    params.write_text("/cam/left:\n  ros__parameters:\n    lifecycle: true\n")
    args = ["--ros-args", "-r", "__ns:=/cam", "-r", "__node:=left", "--params-file", str(params)]
    assert wants_lifecycle(args)
    assert not wants_lifecycle(["--ros-args", "--params-file", str(params)])  # other node
    shipped = ["--ros-args", "--params-file", str(ROOT / "config" / "hands.yaml")]
    assert not wants_lifecycle(shipped)
    assert wants_lifecycle(shipped + ["-p", "lifecycle:=true"])


def test_node_script_without_ros_explains_what_to_do():
    script = ROOT / "scripts" / "hand_mesh_node"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        import rclpy  # noqa: F401
        pytest.skip("rclpy is installed: the script would start a real node")
    except ImportError:
        pass
    assert result.returncode == 2
    assert "transport dds" in result.stderr


def test_rclpy_transport_without_ros_is_a_clear_command_error(capsys):
    try:
        import rclpy  # noqa: F401
        pytest.skip("rclpy is installed: the command would start a real node")
    except ImportError:
        pass
    from fasthmr_ros.cli.main import main

    assert main(["node", "hands", "--transport", "rclpy"]) == 2
    assert "source /opt/ros/<distro>/setup.bash" in capsys.readouterr().err


# ------------------------------------------------------------------ names
def test_topic_expansion():
    assert expand_topic_name("image", "n", "/") == "/image"
    assert expand_topic_name("image", "n", "/cam") == "/cam/image"
    assert expand_topic_name("hands/markers", "n", "cam/left") == "/cam/left/hands/markers"
    assert expand_topic_name("~/debug", "n", "/cam") == "/cam/n/debug"
    assert expand_topic_name("/tf", "n", "/cam") == "/tf"
    assert dds_topic_name("/cam/image") == "rt/cam/image"
    assert normalize_namespace("") == "/" and normalize_namespace("cam/") == "/cam"


@pytest.mark.parametrize("name", ["", "im age", "1image", "a//b", "image/"])
def test_invalid_topic_names(name):
    with pytest.raises(InvalidNameError):
        expand_topic_name(name, "n", "/")


def test_remapping():
    resolver = NameResolver.from_rules("hand_mesh_node", "/cam", [
        "image:=/camera/color/image_raw",
        "/cam/camera_info:=info",
        "other_node:hands:=/nope",
        "hand_mesh_node:hands:=/robot/hands",
    ])
    assert resolver.resolve("image") == "/camera/color/image_raw"
    assert resolver.resolve("camera_info") == "/cam/info"
    assert resolver.resolve("hands") == "/robot/hands"
    assert resolver.resolve("hands/markers") == "/cam/hands/markers"


def test_special_rules_rename_the_node():
    resolver = NameResolver.from_rules("hand_mesh_node", "/", ["__ns:=/left", "__node:=hands"])
    assert resolver.fully_qualified_node_name == "/left/hands"
    assert resolver.resolve("~/x") == "/left/hands/x"


def test_bad_remap_rules():
    with pytest.raises(InvalidNameError, match="FROM:=TO"):
        parse_remap("image=/x")
    with pytest.raises(InvalidNameError):
        NameResolver.from_rules("n", "/", ["image:=/bad//name"])
    with pytest.raises(InvalidNameError, match="node name"):
        NameResolver("bad-name")


def test_dds_transport_refuses_lifecycle_with_the_fix():
    from fasthmr_ros.ros.dds_node import run_hand_node

    with pytest.raises(ParameterError, match="--transport rclpy"):
        run_hand_node(overrides=["lifecycle:=true"], install_signal_handlers=False)
