"""Forward kinematics from a robot description file (URDF or MJCF) through Pinocchio.

Joint values arrive by name (as ``sensor_msgs/JointState`` names them), so a driver's joint
order or extra joints do not matter. Only the description file knows the arm."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


class RobotDescriptionError(ValueError):
    """A robot description that cannot be used, with what is wrong."""


class RobotKinematics:
    """Forward kinematics (``ee_positions``, ``ee_pose``) and the end-effector Jacobian
    (``twist_to_joint_delta``) of the description's joints, and their position limits."""

    def __init__(self, description: str | Path, ee_frame: str) -> None:
        import pinocchio as pin

        path = Path(description)
        if not path.is_file():
            raise RobotDescriptionError(f"robot description {path} does not exist")
        try:
            if path.suffix.lower() == ".urdf":
                self.model = pin.buildModelFromUrdf(str(path))
            elif path.suffix.lower() in (".xml", ".mjcf"):
                self.model = pin.buildModelFromMJCF(str(path))
            else:
                raise RobotDescriptionError(f"{path}: a robot description is a .urdf or an MJCF .xml file")
        except RobotDescriptionError:
            raise
        except Exception as e:  # noqa: BLE001 - pinocchio raises plain RuntimeError/ValueError
            raise RobotDescriptionError(f"{path}: cannot read the robot description ({e})") from e
        if not self.model.existFrame(ee_frame):
            frames = [f.name for f in self.model.frames]
            raise RobotDescriptionError(f"{path}: no frame {ee_frame!r} (ee_frame); frames: {frames}")
        self._pin = pin
        self.data = self.model.createData()
        self.ee_frame = ee_frame
        self._ee = self.model.getFrameId(ee_frame)
        self.path = path
        # one position per 1-dof joint, in the model's order (q index of each named joint)
        self.joint_names: list[str] = [self.model.names[i] for i in range(1, self.model.njoints)]
        self._q_index = {self.model.names[i]: self.model.joints[i].idx_q for i in range(1, self.model.njoints)}
        self._q_cols = np.array([self._q_index[n] for n in self.joint_names], dtype=np.int64)
        if self.model.nq != len(self.joint_names):
            raise RobotDescriptionError(f"{path}: only 1-dof joints are supported ({self.model.nq} positions for "
                                        f"{len(self.joint_names)} joints)")
        # the joints that move the end effector, base first: the arm (fingers and other branches excluded)
        chain = self.model.supports[self.model.frames[self._ee].parentJoint]
        self.arm_joints: list[str] = [self.model.names[i] for i in chain if i > 0]
        self.lower = np.asarray(self.model.lowerPositionLimit, dtype=float)[self._q_cols]  # (J,) model order
        self.upper = np.asarray(self.model.upperPositionLimit, dtype=float)[self._q_cols]

    def order(self, names: Sequence[str]) -> np.ndarray:
        """For each of the model's joints, its column in a state whose joints are ``names``;
        a clear error when the state lacks one of the joints that move the end effector."""
        col = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in col]
        if missing:
            raise RobotDescriptionError(f"{self.path.name}: joints {missing} are not in the joint state "
                                        f"(it has {list(names)})")
        return np.array([col[n] for n in self.joint_names], dtype=np.int64)

    def ee_positions(self, joints: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """(T, J) joint positions (columns named by ``names``, or the model's order) -> (T, 3)."""
        joints = np.atleast_2d(np.asarray(joints, dtype=float))
        if names is not None:
            joints = joints[:, self.order(names)]
        elif joints.shape[1] != self.model.nq:
            raise RobotDescriptionError(f"{joints.shape[1]} joint values for a model with {self.model.nq} joints "
                                        f"({self.joint_names}); give the names")
        out = np.empty((len(joints), 3))
        q = np.zeros(self.model.nq)
        for t, row in enumerate(joints):
            q[self._q_cols] = row
            self._pin.framesForwardKinematics(self.model, self.data, q)
            out[t] = self.data.oMf[self._ee].translation
        return out

    def _full_q(self, joints: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Positions of ``names`` -> the model's q; joints not named (fingers) stay at zero."""
        q = np.zeros(self.model.nq)
        index = [self._q_index.get(n) for n in names]
        missing = [n for n, i in zip(names, index) if i is None]
        if missing:
            raise RobotDescriptionError(f"{self.path.name}: no joints {missing} (it has {self.joint_names})")
        q[np.asarray(index, dtype=np.int64)] = np.asarray(joints, dtype=float)
        return q

    def ee_pose(self, joints: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the joints ``names`` -> end-effector (position (3,), rotation (3, 3)) in
        the base frame."""
        q = self._full_q(joints, names)
        self._pin.framesForwardKinematics(self.model, self.data, q)
        m = self.data.oMf[self._ee]
        return np.array(m.translation), np.array(m.rotation)

    def limits(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(lower (N,), upper (N,)) position limits of the joints ``names``."""
        col = {n: i for i, n in enumerate(self.joint_names)}
        missing = [n for n in names if n not in col]
        if missing:
            raise RobotDescriptionError(f"{self.path.name}: no joints {missing} (it has {self.joint_names})")
        idx = [col[n] for n in names]
        return self.lower[idx].copy(), self.upper[idx].copy()

    def twist_to_joint_delta(self, joints: np.ndarray, names: Sequence[str], twist: np.ndarray, dt: float,
                             damping: float = 0.05) -> np.ndarray:
        """The change of the joints ``names`` (N,) that moves the end effector by ``twist``
        [vx vy vz wx wy wz] (base frame, m/s and rad/s) over ``dt`` s: damped least squares on the
        end-effector Jacobian (base-aligned axes at the frame's origin)."""
        pin = self._pin
        q = self._full_q(joints, names)
        jac = pin.computeFrameJacobian(self.model, self.data, q, self._ee, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)
        cols = np.asarray([self.model.joints[self.model.getJointId(n)].idx_v for n in names], dtype=np.int64)
        j = np.asarray(jac)[:, cols]  # (6, N)
        dq = j.T @ np.linalg.solve(j @ j.T + damping ** 2 * np.eye(6), np.asarray(twist, dtype=float))
        return dq * dt
