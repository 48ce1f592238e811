"""Topic names and types the simulator speaks: the same a real arm setup uses (camera driver,
ros2_control joint states and trajectory controller, MoveIt Servo twist input, a gripper
command), plus ground-truth topics only a simulator can publish."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class SimTopics:
    clock: str = "/clock"
    instruction: str = "/instruction"
    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    tf_static: str = "/tf_static"
    joint_states: str = "/joint_states"
    twist_cmd: str = "/servo_node/delta_twist_cmds"
    joint_trajectory_cmd: str = "/joint_trajectory_controller/joint_trajectory"
    gripper_cmd: str = "/gripper/command"
    gt_segmentation: str = "/ground_truth/segmentation"
    gt_object_poses: str = "/ground_truth/object_poses"
    gt_task: str = "/ground_truth/task"
    gt_phase: str = "/ground_truth/phase"
    gt_success: str = "/ground_truth/success"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


TOPIC_TYPES: dict[str, str] = {
    "clock": "rosgraph_msgs/msg/Clock",
    "instruction": "std_msgs/msg/String",
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "tf_static": "tf2_msgs/msg/TFMessage",
    "joint_states": "sensor_msgs/msg/JointState",
    "twist_cmd": "geometry_msgs/msg/TwistStamped",
    "joint_trajectory_cmd": "trajectory_msgs/msg/JointTrajectory",
    "gripper_cmd": "std_msgs/msg/Float64",
    "gt_segmentation": "sensor_msgs/msg/Image",
    "gt_object_poses": "geometry_msgs/msg/PoseArray",
    "gt_task": "std_msgs/msg/String",
    "gt_phase": "std_msgs/msg/String",
    "gt_success": "std_msgs/msg/Bool",
}
BASE_FRAME = "panda_link0"
CAMERA_FRAME = "front_camera_optical_frame"
