"""What a policy knows of the robot: kinematics of its description (``robots.RobotKinematics``),
which joints it commands, the camera (intrinsics and pose in the base frame), the table and the
gripper's range. Built from a ``robots.RobotConfig`` and camera_info/TF or parameters; no
simulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..robots.camera import CameraModel
from ..robots.kinematics import RobotKinematics


@dataclass
class RobotInterface:
    kinematics: RobotKinematics
    joint_names: list[str]  # the joints of Observation.joints, in order
    camera: CameraModel | None  # for images of camera_hw; None until camera_info and the pose are known
    camera_hw: tuple[int, int]
    table_z: float = 0.0
    gripper_open: float = 0.08  # m
    gripper_closed: float = 0.0

    def ee_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) joint positions -> end effector (position (3,), rotation (3, 3)), base frame."""
        return self.kinematics.ee_pose(q, self.joint_names)

    def camera_for(self, hw: tuple[int, int]) -> CameraModel:
        """The camera for images of ``hw`` (resized from camera_hw when they differ)."""
        if self.camera is None:
            raise ValueError("no camera model yet: camera_info and the camera's pose (TF or camera_pose) are needed")
        hw = (int(hw[0]), int(hw[1]))
        return self.camera if hw == self.camera_hw else self.camera.resized(*hw, from_hw=self.camera_hw)
