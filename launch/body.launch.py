"""Launch the body mesh node, optionally with RViz: ros2 launch fasthmr_ros body.launch.py.

Node parameters come from ``params_file`` (the package's config/bodies.yaml by default); the
arguments below override it only when given. The default estimator fits MediaPipe Pose
landmarks with the CC0 Anny body: nothing to download.

Example:
    ros2 launch fasthmr_ros body.launch.py \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

"""

import importlib.util
from pathlib import Path

from launch import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fasthmr_ros"


def _hands_launch():
    """The hand launch file, whose node, RViz and argument helpers this file reuses."""
    spec = importlib.util.spec_from_file_location(
        "fasthmr_hands_launch", Path(__file__).with_name("hands.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Launch arguments that set the node parameter of the same name when not empty.
PARAMETER_ARGUMENTS = (
    ("estimator", "landmarks (MediaPipe + Anny, no download) or hmr2 (needs checkpoint)"),
    ("checkpoint", "estimator hmr2: HMR2.0 checkpoint"),
    ("smpl_dir", "estimator hmr2: folder with SMPL_NEUTRAL.pkl"),
    ("device", "torch device: cpu, cuda or cuda:N"),
    ("merge_plan", "estimator hmr2: FastHMR merge plan (JSON)"),
    ("engine", "estimator hmr2: torch, onnxruntime or tensorrt"),
    ("image_transport", "raw (image) or compressed (image/compressed)"),
    ("detector", "people: mediapipe, or external (PersonDetectionArray on person_detections)"),
)

#: (name, default, description) of every launch argument.
ARGUMENTS = (
    ("image_topic", "/image", "sensor_msgs/Image topic (its /compressed sibling with "
     "image_transport:=compressed)"),
    ("camera_info_topic", "/camera_info", "sensor_msgs/CameraInfo topic of the camera"),
    *((name, "", f"{text} (empty: from params_file)") for name, text in PARAMETER_ARGUMENTS),
    ("namespace", "", "namespace of the node and its output topics"),
    ("params_file", None, "node parameter YAML (default: the package's config/bodies.yaml)"),
    ("use_rviz", "true", "start RViz"),
    ("rviz_config", None, "RViz configuration (default: the package's config/bodies.rviz)"),
    ("use_sim_time", "false", "use /clock (for bag playback)"),
    ("lifecycle", "false", "managed node: starts unconfigured, driven by `ros2 lifecycle set`"),
    ("attach_hands", "false", "pose the bodies' fingers from the hand node's hands topic "
     "(estimator landmarks; whole_body.launch.py sets it)"),
)


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments, the node and RViz."""
    hands = _hands_launch()
    share = FindPackageShare(PACKAGE)
    defaults = {"params_file": PathJoinSubstitution([share, "config", "bodies.yaml"]),
                "rviz_config": PathJoinSubstitution([share, "config", "bodies.rviz"])}
    return LaunchDescription(
        hands.declare_arguments(ARGUMENTS, defaults)
        + [hands.mesh_node(executable="body_mesh_node", parameter_arguments=PARAMETER_ARGUMENTS,
                          bool_arguments=("attach_hands",)),
           hands.rviz_node(LaunchConfiguration("rviz_config"))]
    )
