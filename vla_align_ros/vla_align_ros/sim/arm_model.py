"""The simulated Panda's kinematics and camera straight from the MuJoCo model: the reference the
robot side's Pinocchio kinematics (``robots.RobotKinematics``) and camera_info/TF camera are
tested against."""

from __future__ import annotations

import numpy as np

from ..robots.camera import CameraModel
from .kinematics import ArmKinematics  # the sim package chooses MUJOCO_GL before mujoco loads
from .scene import build_model, camera_intrinsics

import mujoco  # noqa: E402


class PandaArm:
    def __init__(self) -> None:
        self.model, self.ids = build_model("collision")
        self.data = mujoco.MjData(self.model)
        self.kin = ArmKinematics(self.model, self.ids.ee_site, self.ids.arm_dof, self.ids.arm_qpos)

    @property
    def lower(self) -> np.ndarray:
        return self.kin.lo

    @property
    def upper(self) -> np.ndarray:
        return self.kin.hi

    def _set(self, q: np.ndarray) -> None:
        self.data.qpos[self.ids.arm_qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def ee_position(self, q: np.ndarray) -> np.ndarray:
        """(7,) joint angles -> (3,) end-effector site position, base frame."""
        self._set(np.asarray(q, dtype=float))
        return self.data.site_xpos[self.ids.ee_site].copy()

    def ee_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(7,) joint angles -> end-effector site (position (3,), rotation (3, 3)), base frame."""
        pos = self.ee_position(q)
        return pos, self.data.site_xmat[self.ids.ee_site].reshape(3, 3).copy()

    def camera_model(self, width: int, height: int) -> CameraModel:
        """The model's fixed front camera, as TF and camera_info would give it on a real robot."""
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)  # camera poses are computed here, not in mj_kinematics
        cam = self.ids.camera
        mj_axes = self.data.cam_xmat[cam].reshape(3, 3)  # columns: x right, y up, -z forward
        return CameraModel(camera_intrinsics(self.model, cam, width, height), self.data.cam_xpos[cam].copy(),
                           mj_axes @ np.diag([1.0, -1.0, -1.0]))

    def twist_to_joint_target(self, q: np.ndarray, twist: np.ndarray, dt: float) -> np.ndarray:
        """Joint positions that realise ``twist`` (6,) over ``dt`` seconds from ``q`` (7,)."""
        self._set(np.asarray(q, dtype=float))
        return np.asarray(q, dtype=float) + self.kin.twist_to_joint_delta(self.data, np.asarray(twist, dtype=float), dt)
