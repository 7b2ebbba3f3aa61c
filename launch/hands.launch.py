"""Launch the hand mesh node, optionally with RViz: ros2 launch fasthmr_ros hands.launch.py.

Example:
    ros2 launch fasthmr_ros hands.launch.py checkpoint:=/data/_DATA \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fasthmr_ros"

# (name, default, description) of every launch argument.
ARGUMENTS = (
    ("image_topic", "/image", "sensor_msgs/Image topic (its /compressed sibling with "
     "image_transport:=compressed)"),
    ("camera_info_topic", "/camera_info", "sensor_msgs/CameraInfo topic of the camera"),
    ("checkpoint", "", "HaMeR checkpoint (hamer.ckpt or its _DATA folder) or student checkpoint"),
    ("mano_dir", "", "folder with MANO_RIGHT.pkl (empty: MANO buffers of the checkpoint)"),
    ("device", "cpu", "torch device: cpu, cuda or cuda:N"),
    ("engine", "torch", "inference engine: torch, onnxruntime or tensorrt"),
    ("precision", "fp32", "network precision: fp32, or fp16 / bf16 on a GPU"),
    ("image_transport", "raw", "raw or compressed"),
    ("namespace", "", "namespace of the node and its output topics"),
    ("params_file", None, "node parameter YAML (default: the package's config/hands.yaml)"),
    ("use_rviz", "true", "start RViz with config/hands.rviz"),
    ("use_sim_time", "false", "use /clock (for bag playback)"),
)


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments, the node and RViz."""
    share = FindPackageShare(PACKAGE)
    arg = LaunchConfiguration

    def text(name: str) -> ParameterValue:
        # Strings must stay strings, even when empty (launch would read '' as YAML null).
        return ParameterValue(arg(name), value_type=str)

    parameters = [
        arg("params_file"),
        {
            "checkpoint": text("checkpoint"),
            "mano_dir": text("mano_dir"),
            "device": text("device"),
            "engine": text("engine"),
            "precision": text("precision"),
            "image_transport": text("image_transport"),
            "use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool),
        },
    ]
    node = Node(
        package=PACKAGE,
        executable="hand_mesh_node",
        name="hand_mesh_node",
        namespace=arg("namespace"),
        parameters=parameters,
        remappings=[("image", arg("image_topic")), ("camera_info", arg("camera_info_topic"))],
        output="screen",
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "hands.rviz"])],
        parameters=[{"use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool)}],
        condition=IfCondition(arg("use_rviz")),
        output="log",
    )
    defaults = {"params_file": PathJoinSubstitution([share, "config", "hands.yaml"])}
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                  description=description)
            for name, default, description in ARGUMENTS
        ]
        + [node, rviz]
    )
