"""perception_node + policy_node for a robot: camera and instruction in, masks and arm commands out.

    ros2 launch vla_align_ros vla_align.launch.py checkpoint:=/path/to/run device:=cuda

By default both nodes run in one process (``vla_align_node``) and share one model and one vision
pass per frame; ``one_process:=false`` starts them as two processes. ``namespace:=arm1`` puts
both nodes and their relative topics (camera/image_raw, joint_states, ...) under /arm1.

Lifecycle: with two processes, launch drives each node (configure when it starts, activate once
configured; launch_ros ``LifecycleNode`` and its transition events). The one process holds two
lifecycle nodes, and launch_ros' ``LifecycleNode`` action manages one node per process (it names
the process' node with ``-r __node:=NAME``, which would rename both), so there each node
configures and activates itself (``autostart: true`` in the parameter files).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
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
                              description="ROS namespace of the nodes and their topics (e.g. arm1); /tf_static and "
                                          "/diagnostics stay global"),
        DeclareLaunchArgument("command_mode", default_value="twist",
                              description="twist (Cartesian servo) or joint_trajectory (joint_trajectory_controller)"),
        DeclareLaunchArgument("robot", default_value="panda",
                              description="robot description config: a config/robots name or a YAML file"),
        DeclareLaunchArgument("policy", default_value="affordance",
                              description="affordance (the model's intent and pick/place maps drive motion "
                                          "primitives), chunk (the learned action chunks) or rules (the rule-parser "
                                          "baseline)"),
        DeclareLaunchArgument("one_process", default_value="true",
                              description="true: both nodes in one process sharing the model and each frame's "
                                          "vision pass (vla_align_node); false: two processes"),
        DeclareLaunchArgument("perception_params", default_value=os.path.join(share, "config", "nodes", "perception_node.yaml"),
                              description="perception_node parameter file"),
        DeclareLaunchArgument("policy_params", default_value=os.path.join(share, "config", "nodes", "policy_node.yaml"),
                              description="policy_node parameter file"),
    ]
    common = {"checkpoint": LaunchConfiguration("checkpoint"), "device": LaunchConfiguration("device")}
    policy_only = {"command_mode": LaunchConfiguration("command_mode"), "policy": LaunchConfiguration("policy"),
                   "robot": LaunchConfiguration("robot")}
    one = IfCondition(LaunchConfiguration("one_process"))
    two = UnlessCondition(LaunchConfiguration("one_process"))
    # The parameter files are keyed by node name, so one process reads each node its own section;
    # no `name` here: it would rename both nodes of the process.
    ns = LaunchConfiguration("namespace")
    both = Node(package="vla_align_ros", executable="vla_align_node", namespace=ns, output="screen", condition=one,
                parameters=[LaunchConfiguration("perception_params"), LaunchConfiguration("policy_params"),
                            {**common, **policy_only}])
    perception = managed_lifecycle_node(package="vla_align_ros", executable="perception_node", name="perception_node",
                                        namespace=ns, output="screen", condition=two,
                                        parameters=[LaunchConfiguration("perception_params"), common])
    policy = managed_lifecycle_node(package="vla_align_ros", executable="policy_node", name="policy_node",
                                    namespace=ns, output="screen", condition=two,
                                    parameters=[LaunchConfiguration("policy_params"), {**common, **policy_only}])
    dds = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile"))
    return LaunchDescription(args + [dds, both, *perception, *policy])
