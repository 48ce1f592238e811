"""control.CommandRouter: one chunk row -> a twist, a joint target or a hold, the same for
policy_node and the in-process rollout."""

from __future__ import annotations

import numpy as np
import pytest

from vla_align_ros.control.command_router import (DROPPED_TWIST, SPACE_MISMATCH, SPACE_UNKNOWN, CommandRouter)
from vla_align_ros.control.joint_stream import JointTargetStream, stream_limits
from vla_align_ros.control.safety import TwistLimits
from vla_align_ros.model.action_space import JOINT_DELTA
from vla_align_ros.robots.config import RobotConfig

ARM = [f"panda_joint{i}" for i in range(1, 8)]
Q = np.array([0.0, -0.5, 0.0, -2.2, 0.0, 1.7, 0.78])  # a ready pose, away from the limits
DT = 0.05


def router(mode: str) -> CommandRouter:
    kin = RobotConfig.load("panda_sim").kinematics()
    stream = JointTargetStream(kin, ARM, stream_limits(kin, ARM, DT))
    return CommandRouter(mode, stream, TwistLimits(), (0.0, 0.08))


def test_twist_rows_go_out_filtered_with_the_gripper_clamped() -> None:
    r = router("twist").route(np.array([0.5, 0, 0, 0, 0, 0, 0.2]), "ee_twist", (), Q, np.array([0.5, 0, 0.3]), DT)
    assert r.hold is None and r.joint_target is None
    assert r.twist is not None and 0 < r.twist[0] <= 0.05 + 1e-9  # the first period's change is bounded
    assert r.gripper == pytest.approx(0.08)  # clamped to the gripper's range


def test_joint_mode_turns_a_twist_into_a_joint_target_near_the_measured_position() -> None:
    r = router("joint_trajectory").route(np.array([0.0, 0, -0.05, 0, 0, 0, 0.04]), "ee_twist_gripper", (), Q,
                                         np.array([0.5, 0, 0.3]), DT)
    assert r.hold is None and r.twist is None and r.joint_target is not None
    step = r.joint_target - Q
    assert 0 < np.abs(step).max() <= 2.0 * DT + 1e-9 and r.gripper == pytest.approx(0.04)


def test_joint_deltas_only_ever_become_joint_targets() -> None:
    row = np.r_[np.full(7, 0.01), 0.03]
    held = router("twist").route(row, JOINT_DELTA, tuple(ARM) + ("gripper",), Q, np.zeros(3), DT)
    assert held.hold == SPACE_MISMATCH and held.twist is None and held.joint_target is None and held.gripper is None
    moved = router("joint_trajectory").route(row, JOINT_DELTA, tuple(ARM) + ("gripper",), Q, np.zeros(3), DT)
    assert moved.joint_target is not None and np.allclose(moved.joint_target - Q, 0.01) and moved.gripper == 0.03


def test_unknown_spaces_and_dropped_rows_hold_and_a_hold_resets_the_filter_memory() -> None:
    rt = router("twist")
    assert rt.route(np.zeros(7), "cartesian_pose", (), Q, np.zeros(3), DT).hold == SPACE_UNKNOWN
    rt.route(np.array([0.05, 0, 0, 0, 0, 0]), "ee_twist", (), Q, np.array([0.5, 0, 0.3]), DT)
    assert rt.prev_twist is not None
    bad = rt.route(np.array([np.nan, 0, 0, 0, 0, 0, 0.04]), "ee_twist", (), Q, np.array([0.5, 0, 0.3]), DT)
    assert bad.hold == DROPPED_TWIST and bad.gripper is None and bad.results
    rt.reset()
    assert rt.prev_twist is None and rt.stream.reference is None


def test_a_row_whose_extra_dimension_is_not_the_gripper_moves_no_gripper() -> None:
    r = router("twist").route(np.array([0.01, 0, 0, 0, 0, 0, 0.5]), "ee_twist", ("vx", "vy", "vz", "wx", "wy",
                                                                                   "wz", "torque"), Q,
                              np.array([0.5, 0, 0.3]), DT)
    assert r.twist is not None and r.gripper is None
