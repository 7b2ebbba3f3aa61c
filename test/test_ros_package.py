"""The ROS package files: package.xml, CMakeLists.txt, launch file, parameter and RViz files."""

from __future__ import annotations

import ast
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from fasthmr_ros.ros import markers
from fasthmr_ros.ros.hand_node import DEBUG_IMAGE_TOPIC, MARKERS_TOPIC

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XML = ROOT / "package.xml"
LAUNCH = ROOT / "launch" / "hands.launch.py"


def _package() -> ET.Element:
    return ET.parse(PACKAGE_XML).getroot()


def _deps(root: ET.Element, *tags: str) -> set[str]:
    return {e.text.strip() for tag in tags for e in root.findall(tag)}


def test_package_xml_is_format_3_and_matches_cmake():
    root = _package()
    assert root.tag == "package" and root.get("format") == "3"
    name = root.findtext("name")
    assert name == "fasthmr_ros"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(rf"project\({name}\)", cmake)
    for tag in ("version", "description", "maintainer", "license"):
        assert (root.findtext(tag) or "").strip(), f"package.xml lacks <{tag}>"
    assert root.find("maintainer").get("email")
    assert root.findtext("export/build_type") == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    build_tools = _deps(root, "buildtool_depend")
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= build_tools
    for tool in build_tools:
        assert f"find_package({tool} REQUIRED)" in cmake
    assert "rosidl_default_runtime" in _deps(root, "exec_depend")


def _message_packages_used_by_code() -> set[str]:
    used = set()
    for path in (ROOT / "fasthmr_ros" / "ros").glob("*.py"):
        used |= set(re.findall(r'"(\w+)/msg/\w+"', path.read_text()))
    for path in (ROOT / "msg").glob("*.msg"):
        used |= set(re.findall(r"^\s*(\w+)/\w+", path.read_text(), re.M))
    return used - {"fasthmr_ros"}


def _ros_python_imports() -> set[str]:
    """Top-level ROS Python packages imported by the rclpy transport and the launch file."""
    imported = set()
    for path in [ROOT / "fasthmr_ros" / "ros" / "rclpy_transport.py", LAUNCH]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
    return {m for m in imported if m not in sys.stdlib_module_names} - {"fasthmr_ros"}


def test_every_run_dependency_is_listed():
    root = _package()
    run = _deps(root, "depend", "exec_depend")
    used = _message_packages_used_by_code()
    assert {"sensor_msgs", "visualization_msgs", "tf2_msgs", "diagnostic_msgs",
            "geometry_msgs", "std_msgs", "rcl_interfaces"} <= used  # the scan works
    missing = (used | _ros_python_imports()) - run
    assert not missing, f"package.xml lacks run dependencies: {sorted(missing)}"
    # Packages started by the launch file.
    launched = set(re.findall(r'package="(\w+)"', LAUNCH.read_text())) - {"fasthmr_ros"}
    assert launched == {"rviz2"} and launched <= run
    # Python libraries of the node that rosdep can resolve.
    assert {"python3-numpy", "python3-opencv", "python3-scipy", "python3-yaml"} <= run


def test_cmake_installs_the_node_launch_and_config():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "install(PROGRAMS scripts/hand_mesh_node DESTINATION lib/${PROJECT_NAME})" in cmake
    assert re.search(r"install\(DIRECTORY launch config DESTINATION share/\$\{PROJECT_NAME\}\)",
                     cmake)
    assert 'DESTINATION "${PYTHON_INSTALL_DIR}/${PROJECT_NAME}"' in cmake
    # The folder comes from ament_cmake_python's public macro, not from a side effect.
    assert cmake.index("ament_get_python_install_dir(PYTHON_INSTALL_DIR)") < cmake.index(
        'DESTINATION "${PYTHON_INSTALL_DIR}')
    # The Python install comes after rosidl_generate_interfaces so our __init__.py wins.
    assert cmake.index("rosidl_generate_interfaces(") < cmake.index("PYTHON_INSTALL_DIR")
    assert "install(PROGRAMS scripts/body_mesh_node DESTINATION lib/${PROJECT_NAME})" in cmake
    for name in ("hand_mesh_node", "body_mesh_node"):
        script = ROOT / "scripts" / name
        assert os.access(script, os.X_OK)
        assert script.read_text().startswith("#!/usr/bin/env python3")
        assert "fasthmr_ros.ros.rclpy_transport import main" in script.read_text()
    assert 'kind="bodies"' in (ROOT / "scripts" / "body_mesh_node").read_text()


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text())


def test_launch_file_declares_the_documented_arguments():
    tree = _launch_tree()
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    assigned = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)}
    names = [elt.elts[0].value for elt in assigned["ARGUMENTS"].elts
             if isinstance(elt, ast.Tuple)]
    forwarded = [elt.elts[0].value for elt in assigned["PARAMETER_ARGUMENTS"].elts]
    names += forwarded
    assert {"image_topic", "camera_info_topic", "checkpoint", "mano_dir", "device", "engine",
            "namespace", "use_rviz"} <= set(names)
    assert len(names) == len(set(names))
    # Arguments forwarded to the node are real node parameters.
    from fasthmr_ros.ros.parameters import HAND_NODE_PARAMETERS

    assert set(forwarded) <= {s.name for s in HAND_NODE_PARAMETERS}


def test_launch_file_points_at_installed_things():
    text = LAUNCH.read_text()
    assert 'executable="hand_mesh_node"' in text
    for name in re.findall(r'"config", "([\w.]+)"', text):
        assert (ROOT / "config" / name).is_file(), name
    # Remaps use the node's own relative topic names.
    assert '("image", arg("image_topic"))' in text
    assert '("camera_info", arg("camera_info_topic"))' in text


def test_rviz_config_shows_the_node_outputs():
    config = yaml.safe_load((ROOT / "config" / "hands.rviz").read_text())
    displays = {d["Class"]: d for d in config["Visualization Manager"]["Displays"]}
    marker = displays["rviz_default_plugins/MarkerArray"]
    assert marker["Topic"]["Value"] == "/" + MARKERS_TOPIC
    assert marker["Topic"]["Reliability Policy"] == "Reliable"
    assert set(marker["Namespaces"]) == {markers.MESH_NS, markers.SKELETON_NS,
                                         markers.JOINTS_NS}
    assert "rviz_default_plugins/TF" in displays
    images = [d for d in config["Visualization Manager"]["Displays"]
              if d["Class"] == "rviz_default_plugins/Image"]
    assert {d["Topic"]["Value"] for d in images} == {"/image", "/" + DEBUG_IMAGE_TOPIC}
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == \
        "camera_optical_frame"


def test_ros_modules_import_without_ros():
    import subprocess

    modules = sorted(p.stem for p in (ROOT / "fasthmr_ros" / "ros").glob("*.py")
                     if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('fasthmr_ros.ros.' + name)\n"
        "ros = [m for m in sys.modules if m.split('.')[0] in "
        "('rclpy', 'launch', 'launch_ros', 'rosidl_runtime_py', 'rcl_interfaces')]\n"
        "assert not ros, ros\n"
        "print(len(sys.argv))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
