"""The simulator with perception_node and policy_node: the closed loop of `vla-align demo --checkpoint`.

    ros2 launch vla_align_ros sim_demo.launch.py                       # the shipped model
    ros2 launch vla_align_ros sim_demo.launch.py checkpoint:=runs/mine command_mode:=joint_trajectory
    ros2 launch vla_align_ros sim_demo.launch.py namespace:=arm1       # every topic under /arm1

Launch drives the two lifecycle nodes: configure when they start, activate once configured.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vla_align_ros.ros.launch_lifecycle import managed_lifecycle_node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vla_align_ros")
    args = [
        DeclareLaunchArgument("dds_profile", default_value=os.path.join(share, "config", "dds", "fastdds_localhost.xml"),
                              description="Fast DDS profile: shared memory for images, UDP on loopback only"),
        DeclareLaunchArgument("checkpoint", default_value=os.path.join(share, "models", "sim_tiny"),
                              description="trained run folder (vla-align train --out); default: the shipped "
                                          "simulator model"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device: cpu, cuda, cuda:N or auto"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="ROS namespace of the three nodes and their topics (e.g. arm1); "
                                          "/tf_static, /clock and /diagnostics stay global"),
        DeclareLaunchArgument("image_size", default_value="96", description="simulated camera width and height, px"),
        DeclareLaunchArgument("seed", default_value="5000", description="seed of the first simulated episode"),
        DeclareLaunchArgument("command_mode", default_value="twist",
                              description="twist (Cartesian servo) or joint_trajectory (joint_trajectory_controller)"),
        DeclareLaunchArgument("robot", default_value="panda_sim",
                              description="robot description config: a config/robots name or a YAML file"),
        DeclareLaunchArgument("policy", default_value="affordance",
                              description="affordance (the model's intent and pick/place maps drive motion "
                                          "primitives), chunk (the learned action chunks) or rules (the rule-parser "
                                          "baseline)"),
        DeclareLaunchArgument("sim_params", default_value=os.path.join(share, "config", "sim", "sim_node.yaml"),
                              description="sim_node parameter file"),
        DeclareLaunchArgument("perception_params", default_value=os.path.join(share, "config", "nodes", "perception_node.yaml"),
                              description="perception_node parameter file"),
        DeclareLaunchArgument("policy_params", default_value=os.path.join(share, "config", "nodes", "policy_node.yaml"),
                              description="policy_node parameter file"),
    ]
    common = {"checkpoint": LaunchConfiguration("checkpoint"), "device": LaunchConfiguration("device")}
    ns = LaunchConfiguration("namespace")
    size = LaunchConfiguration("image_size")
    sim = Node(package="vla_align_ros", executable="sim_node", name="sim_node", namespace=ns, output="screen",
               parameters=[LaunchConfiguration("sim_params"),
                           {"seed": LaunchConfiguration("seed"), "image_width": size, "image_height": size}])
    perception = managed_lifecycle_node(package="vla_align_ros", executable="perception_node", name="perception_node",
                                        namespace=ns, output="screen",
                                        parameters=[LaunchConfiguration("perception_params"), common])
    policy = managed_lifecycle_node(package="vla_align_ros", executable="policy_node", name="policy_node",
                                    namespace=ns, output="screen",
                                    parameters=[LaunchConfiguration("policy_params"),
                                                {**common, "command_mode": LaunchConfiguration("command_mode"),
                                                 "policy": LaunchConfiguration("policy"),
                                                 "robot": LaunchConfiguration("robot")}])
    dds = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile"))
    return LaunchDescription(args + [dds, sim, *perception, *policy])
