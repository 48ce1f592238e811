"""Default topic names of the robot-side nodes, in one place.

Relative names resolve in the node's namespace (``/camera/image_raw`` in the root namespace,
``/arm1/camera/image_raw`` under ``namespace:=arm1``), so two arms run side by side and any name
can be remapped (``--ros-args -r camera/image_raw:=/my_camera/image``). ``~/`` names are private
to the node. ``/tf_static`` stays absolute, as ROS convention has it (one transform tree).
Each node also exposes these as ``topics.<key>`` parameters."""

from __future__ import annotations

IMAGE = "camera/image_raw"  # sensor_msgs/Image (or CompressedImage on IMAGE + "/compressed")
CAMERA_INFO = "camera/camera_info"
TF_STATIC = "/tf_static"
INSTRUCTION = "instruction"
JOINT_STATES = "joint_states"
TWIST_CMD = "servo_node/delta_twist_cmds"  # MoveIt Servo's input
JOINT_TRAJECTORY_CMD = "joint_trajectory_controller/joint_trajectory"  # ros2_control's input
GRIPPER_CMD = "gripper/command"
ESTOP = "estop"
ESTOP_RESET = "estop_reset"
STATUS = "~/status"  # the detailed, machine-readable status (JSON); /diagnostics is the standard one

PERCEPTION_TOPICS: dict[str, str] = {
    "image": IMAGE, "instruction": INSTRUCTION, "grounding": "~/grounding", "mask": "~/mask",
    "overlay": "~/overlay", "progress": "~/progress", "status": STATUS}
POLICY_TOPICS: dict[str, str] = {
    "image": IMAGE, "camera_info": CAMERA_INFO, "tf_static": TF_STATIC, "instruction": INSTRUCTION,
    "joint_states": JOINT_STATES, "twist_cmd": TWIST_CMD, "joint_trajectory_cmd": JOINT_TRAJECTORY_CMD,
    "gripper_cmd": GRIPPER_CMD, "action_chunk": "~/action_chunk", "estop": ESTOP, "estop_reset": ESTOP_RESET,
    "status": STATUS}
# Topics that keep their absolute name under a namespace (ROS convention).
ABSOLUTE = ("/clock", TF_STATIC, "/tf", "/diagnostics")


def relative(name: str) -> str:
    """A recording's absolute topic name -> the name a node uses, relative unless ROS convention
    keeps it absolute (``/joint_states`` -> ``joint_states``; ``/tf_static`` stays)."""
    return name if name in ABSOLUTE else name.lstrip("/")
