"""Damped-least-squares inverse kinematics on the MuJoCo model (pure NumPy + mujoco)."""

from __future__ import annotations

import numpy as np

import mujoco

# End effector pointing straight down, fingers opening along the world y axis.
DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def rotation_error(r_current: np.ndarray, r_desired: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates r_current onto r_desired."""
    r_err = r_desired @ r_current.T
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, r_err.flatten())
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def dls_step(jac: np.ndarray, twist: np.ndarray, damping: float = 0.05) -> np.ndarray:
    """Joint velocities dq = J^T (J J^T + lambda^2 I)^-1 twist.  jac: (6, n), twist: (6,) -> (n,)."""
    jjt = jac @ jac.T
    return jac.T @ np.linalg.solve(jjt + (damping ** 2) * np.eye(jac.shape[0]), twist)


class ArmKinematics:
    """Site Jacobians and twist-to-joint conversion for the arm joints of a model."""

    def __init__(self, model: mujoco.MjModel, site: int, arm_dof: np.ndarray, arm_qpos: np.ndarray) -> None:
        self.model, self.site, self.dof, self.qpos_adr = model, site, arm_dof, arm_qpos
        self.lo = model.jnt_range[[model.dof_jntid[d] for d in arm_dof], 0].copy()
        self.hi = model.jnt_range[[model.dof_jntid[d] for d in arm_dof], 1].copy()
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def jacobian(self, data: mujoco.MjData) -> np.ndarray:
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site)
        return np.vstack([self._jacp[:, self.dof], self._jacr[:, self.dof]])  # (6, 7)

    def twist_to_joint_delta(self, data: mujoco.MjData, twist: np.ndarray, dt: float, damping: float = 0.05) -> np.ndarray:
        """Twist [vx vy vz wx wy wz] (world frame, m/s and rad/s) -> joint position change over dt."""
        return dls_step(self.jacobian(data), np.asarray(twist, dtype=float), damping) * dt

    def solve(self, data: mujoco.MjData, pos: np.ndarray, rot: np.ndarray = DOWN, iters: int = 300,
              tol: float = 1e-4) -> np.ndarray:
        """Position + orientation IK by iterating DLS on a scratch copy of ``data``; returns arm q."""
        scratch = mujoco.MjData(self.model)
        scratch.qpos[:] = data.qpos
        for _ in range(iters):
            mujoco.mj_kinematics(self.model, scratch)
            mujoco.mj_comPos(self.model, scratch)
            err = np.concatenate([pos - scratch.site_xpos[self.site],
                                  rotation_error(scratch.site_xmat[self.site].reshape(3, 3), rot)])
            if np.linalg.norm(err) < tol:
                break
            dq = dls_step(self.jacobian(scratch), err, 0.02)
            q = np.clip(scratch.qpos[self.qpos_adr] + dq, self.lo, self.hi)
            scratch.qpos[self.qpos_adr] = q
        return scratch.qpos[self.qpos_adr].copy()
