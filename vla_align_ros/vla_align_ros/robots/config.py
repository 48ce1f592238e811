"""What the robot side is told about an arm: its description file, frames, the table plane, and
a camera pose for setups whose bags carry no ``/tf_static``. One YAML file per robot
(``config/robots/panda.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..paths import package_config
from .camera import CameraModel, CameraPoseError, camera_from_info
from .kinematics import RobotKinematics


@dataclass
class RobotConfig:
    description: str  # URDF or MJCF file; relative paths are from the YAML file's folder
    ee_frame: str  # the frame the grasp happens at (a site, link or tool frame of the description)
    base_frame: str  # the frame joint_states' kinematics and /tf_static's camera pose are given in
    gripper_joints: list[str] = field(default_factory=list)  # finger joints in joint_states (their sum: the opening)
    table_z: float = 0.0  # height of the work surface in the base frame, m
    push_max_height: float = 0.08  # m above the table: a horizontal motion this low with nothing held is a push
    camera_pose: dict[str, list[float]] | None = None  # {translation: [x, y, z], quaternion: [x, y, z, w]}
    source: str = ""  # the YAML file it was read from

    def __post_init__(self) -> None:
        if not self.description or not self.ee_frame or not self.base_frame:
            raise ValueError(f"robot config {self.source or '?'}: description, ee_frame and base_frame are required")
        if self.push_max_height <= 0:
            raise ValueError(f"robot.push_max_height={self.push_max_height}: must be > 0")
        if self.camera_pose is not None and set(self.camera_pose) != {"translation", "quaternion"}:
            raise ValueError(f"robot.camera_pose={self.camera_pose}: give translation [x, y, z] and quaternion "
                             "[x, y, z, w] of the optical frame in the base frame")

    @property
    def description_path(self) -> Path:
        p = Path(self.description)
        return p if p.is_absolute() or not self.source else Path(self.source).parent / p

    @classmethod
    def load(cls, path_or_name: str | Path) -> "RobotConfig":
        """A YAML file, or the name of one under config/robots/ ("panda")."""
        p = Path(path_or_name)
        if not p.suffix:
            p = package_config(f"robots/{p}.yaml")
        if not p.is_file():
            known = sorted(x.stem for x in package_config("robots").glob("*.yaml"))
            raise FileNotFoundError(f"robot config {p} does not exist (shipped: {known})")
        raw: dict[str, Any] = yaml.safe_load(p.read_text()) or {}
        return cls(**raw, source=str(p))

    def kinematics(self) -> RobotKinematics:
        """Forward kinematics of this robot's description, to its end-effector frame."""
        return RobotKinematics(self.description_path, self.ee_frame)

    def camera(self, k: np.ndarray | None, parent_frame: str, translation: np.ndarray | None,
               quaternion: np.ndarray | None, where: str) -> CameraModel:
        """The camera model from a bag's camera_info and /tf_static pose, or this config's
        ``camera_pose`` where the bag has none."""
        if translation is not None and parent_frame and parent_frame != self.base_frame:
            raise CameraPoseError(f"{where}: /tf_static gives the camera in {parent_frame!r}, the robot's base frame "
                                  f"is {self.base_frame!r}")
        if translation is None and self.camera_pose is not None:
            translation, quaternion = self.camera_pose["translation"], self.camera_pose["quaternion"]
        return camera_from_info(None if k is None else np.asarray(k).reshape(-1), translation, quaternion, where)
