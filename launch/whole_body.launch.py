"""Launch the hand and the body mesh node on one camera, with one RViz.

    ros2 launch fasthmr_ros whole_body.launch.py \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

Both nodes read the same image and CameraInfo topics and publish hands/... and bodies/... in
the same namespace; RViz (config/whole_body.rviz) shows both. The hand node takes its
parameters from ``hands_params_file`` (config/hands.yaml), the body node from
``bodies_params_file`` (config/bodies.yaml). The body node subscribes to the hand node's
``hands`` (``attach_hands``, on unless ``attach_hands:=false``): where a hand is seen at a
body's wrist, the body's hand takes its orientation and finger pose (landmark estimator).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fasthmr_ros"

#: (name, default, description) of every launch argument.
ARGUMENTS = (
    ("image_topic", "/image", "sensor_msgs/Image topic"),
    ("camera_info_topic", "/camera_info", "sensor_msgs/CameraInfo topic of the camera"),
    ("namespace", "", "namespace of both nodes and their output topics"),
    ("hands_params_file", None, "hand node parameter YAML (default: config/hands.yaml)"),
    ("bodies_params_file", None, "body node parameter YAML (default: config/bodies.yaml)"),
    ("checkpoint", "", "hand node: HaMeR checkpoint (empty: from hands_params_file)"),
    ("attach_hands", "true", "body node: pose the bodies' fingers from the hand node's hands"),
    ("use_rviz", "true", "start RViz with config/whole_body.rviz"),
    ("use_sim_time", "false", "use /clock (for bag playback)"),
)


def generate_launch_description() -> LaunchDescription:
    """Include the hand and the body launch files; one RViz shows both."""
    share = FindPackageShare(PACKAGE)
    arg = LaunchConfiguration
    defaults = {
        "hands_params_file": PathJoinSubstitution([share, "config", "hands.yaml"]),
        "bodies_params_file": PathJoinSubstitution([share, "config", "bodies.yaml"]),
    }
    common = {
        "image_topic": arg("image_topic"),
        "camera_info_topic": arg("camera_info_topic"),
        "namespace": arg("namespace"),
        "use_sim_time": arg("use_sim_time"),
    }

    def include(launch_file: str, extra: dict) -> IncludeLaunchDescription:
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", launch_file])),
            launch_arguments={**common, **extra}.items(),
        )

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                               description=description)
         for name, default, description in ARGUMENTS]
        + [include("hands.launch.py", {"params_file": arg("hands_params_file"),
                                       "checkpoint": arg("checkpoint"), "use_rviz": "false"}),
           # The body launch starts the one RViz, with both nodes' displays.
           include("body.launch.py", {
               "params_file": arg("bodies_params_file"), "use_rviz": arg("use_rviz"),
               "attach_hands": arg("attach_hands"),
               "rviz_config": PathJoinSubstitution([share, "config", "whole_body.rviz"])})]
    )
