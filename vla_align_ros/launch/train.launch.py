"""Offline training from rosbag2 recordings as a ROS 2 node (progress on /trainer_node/progress).

    ros2 launch vla_align_ros train.launch.py bags:="['/data/bags/demo']" out:=runs/demo
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vla_align_ros")
    args = [
        DeclareLaunchArgument("bags", description="rosbag2 folders to train on, as a YAML list"),
        DeclareLaunchArgument("out", default_value="runs/train", description="run folder for checkpoints and logs"),
        DeclareLaunchArgument("config", default_value="", description="training YAML ('' = config/train/sim_tiny.yaml)"),
        DeclareLaunchArgument("resume", default_value="false", description="continue a stopped run"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="ROS namespace of trainer_node (its progress topic is <namespace>/trainer_node/progress)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "train", "trainer_node.yaml"),
                              description="trainer_node parameter file"),
    ]
    trainer = Node(
        package="vla_align_ros",
        executable="trainer_node",
        name="trainer_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"bags": LaunchConfiguration("bags"), "out": LaunchConfiguration("out"),
                     "config": LaunchConfiguration("config"), "resume": LaunchConfiguration("resume")}],
    )
    return LaunchDescription(args + [trainer])
