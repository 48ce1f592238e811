"""command_mode:=joint_trajectory without DDS: how the simulator executes a JointTrajectory
(``sim.commands.start_trajectory``, ``TabletopEnv.command_trajectory``: sim_node's code), the
robot side's joint stream (``control.JointTargetStream``) and the two together in the in-process
rollout (``sim.rollout.SimCommandPath``), which moves the hand as the twist path does."""

from __future__ import annotations

import numpy as np
import pytest

from vla_align_ros.control import JointTargetStream, stream_limits
from vla_align_ros.robots.config import RobotConfig
from vla_align_ros.sim.commands import CommandRejected, JointTrajectoryPlan, start_trajectory

ARM = [f"panda_joint{i}" for i in range(1, 8)]


def test_a_trajectory_counts_from_its_stamp_starts_at_the_commanded_position_and_late_ones_are_rejected() -> None:
    plan = JointTrajectoryPlan(times=np.array([0.05]), positions=np.ones((1, 7)))
    commanded = np.zeros(7)
    t = start_trajectory(plan, now=10.0, stamp_offset=0.0, commanded_q=commanded)
    # sampled at the end of the coming 50 ms period: the point itself, not where the arm is
    assert np.allclose(t.target(10.05), 1.0) and np.allclose(t.target(10.025), 0.5)
    commanded[:] = 5.0  # a copy was taken
    assert np.allclose(t.target(10.0), 0.0)
    # stamped 20 ms ago: 20 ms of it are already over when it arrives
    t = start_trajectory(plan, now=10.0, stamp_offset=-0.02, commanded_q=np.zeros(7))
    assert np.allclose(t.target(10.005), 0.5)
    with pytest.raises(CommandRejected) as e:  # ended before it arrived
        start_trajectory(plan, now=10.0, stamp_offset=-0.06, commanded_q=np.zeros(7))
    assert e.value.reason == "late"


def test_the_joint_stream_continues_from_its_last_target_and_restarts_after_a_hold() -> None:
    kin = RobotConfig.load("panda_sim").kinematics()
    dt = 0.05
    stream = JointTargetStream(kin, ARM, stream_limits(kin, ARM, dt))
    q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
    twist = np.array([0.0, 0.1, 0.0, 0.0, 0.0, 0.0])
    first = stream.from_twist(twist, q, dt).command
    second = stream.from_twist(twist, q, dt).command  # the arm has not moved (it lags)
    step = np.linalg.norm(first - q)
    assert step > 1e-3 and np.linalg.norm(second - q) == pytest.approx(2 * step, rel=0.05)
    # the end effector of the targets moves up to 5 mm per cycle at 0.1 m/s (damped least squares
    # gives up some of it near this pose), the same each cycle
    ee = [kin.ee_pose(x, ARM)[0] for x in (q, first, second)]
    assert 0.0035 < ee[1][1] - ee[0][1] <= 0.0051 and ee[2][1] - ee[1][1] == pytest.approx(ee[1][1] - ee[0][1], rel=0.05)
    # the reference may lead the measured position by at most max_velocity * dt (no wind-up)
    for _ in range(100):
        r = stream.from_twist(np.array([0.0, 0.25, 0.0, 0.0, 0.0, 0.0]), q, dt)
    assert np.max(np.abs(r.command - q)) <= 2.0 * dt + 1e-9 and "velocity" in r.reasons
    stream.reset()
    assert np.linalg.norm(stream.from_twist(twist, q, dt).command - first) < 1e-9
    # joint deltas: measured + delta, the same filter; non-finite is dropped and clears the reference
    d = stream.from_delta(np.full(7, 0.01), q, dt)
    assert np.allclose(d.command, q + 0.01)
    bad = stream.from_delta(np.r_[np.nan, np.zeros(6)], q, dt)
    assert bad.command is None and bad.outcome.value == "dropped" and stream.reference is None


def test_a_stalled_arm_cannot_leave_the_reference_centimetres_ahead() -> None:
    """Fingertips on the table while the twist keeps asking for depth: the per-joint lead bound
    alone let the reference's hand sink 5 cm below the real one and the arm stall; now the
    reference restarts from the measured position once its hand leads by more than 3 cm."""
    kin = RobotConfig.load("panda_sim").kinematics()
    dt = 0.05
    stream = JointTargetStream(kin, ARM, stream_limits(kin, ARM, dt))
    q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
    down = np.array([0.0, 0.0, -0.1, 0.0, 0.0, 0.0])
    leads = []
    for _ in range(60):  # 3 s of pressing down while nothing moves
        r = stream.from_twist(down, q, dt)
        leads.append(np.linalg.norm(kin.ee_pose(r.command, ARM)[0] - kin.ee_pose(q, ARM)[0]))
    assert stream.rebased >= 2 and max(leads) <= 0.03 + 0.006, (stream.rebased, max(leads))
    # an arm that follows is never rebased
    follow = JointTargetStream(kin, ARM, stream_limits(kin, ARM, dt))
    x = q.copy()
    for _ in range(60):
        x = follow.from_twist(np.array([0.0, 0.1, 0.0, 0.0, 0.0, 0.0]), x, dt).command
    assert follow.rebased == 0


@pytest.mark.parametrize("mode", ["twist", "joint_trajectory"])
def test_one_period_trajectories_move_the_hand_as_far_as_twists_do(mode: str) -> None:
    """1.5 s of +y at 0.1 m/s through each command path of the in-process rollout: the hand
    covers about 0.15 m either way (before the fix joint_trajectory mode moved it 0 mm)."""
    from vla_align_ros.sim.env import TabletopEnv
    from vla_align_ros.sim.rollout import SimCommandPath, sim_robot

    with TabletopEnv(image_size=(32, 32)) as env:
        robot = sim_robot(env)
        env.reset(seed=3)
        path = SimCommandPath(env, robot, mode)
        p0 = env.ee_position()
        for _ in range(30):
            path.send(np.array([0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.08]))
            env.step()
        path.hold()
        for _ in range(10):
            env.step()
        moved = env.ee_position() - p0
        held = env.ee_position()
        for _ in range(20):
            env.step()
        drift = np.linalg.norm(env.ee_position() - held)
    assert moved[1] == pytest.approx(0.15, abs=0.02) and abs(moved[0]) < 0.01 and abs(moved[2]) < 0.01, moved
    assert drift < 1e-3  # the hold holds
