"""The MuJoCo tabletop without ROS: determinism, the expert per task family, command
validation, kinematics and ground-truth masks."""

from __future__ import annotations

import numpy as np
import pytest

from vla_align_ros.sim.commands import CommandRejected, check_gripper, check_joint_trajectory, check_twist
from vla_align_ros.sim.env import HOME_EE, TabletopEnv
from vla_align_ros.sim.expert import run_expert
from vla_align_ros.sim.kinematics import DOWN, rotation_error
from vla_align_ros.sim.scene import JOINT_NAMES, OBJECTS
from vla_align_ros.sim.tasks import FAMILIES


@pytest.fixture(scope="module")
def env():
    with TabletopEnv(image_size=(64, 64)) as e:
        yield e


def test_same_seed_same_episode(env):
    a = env.reset(seed=7)
    pos_a = env.object_positions()
    env.step()
    b = env.reset(seed=7)
    pos_b = env.object_positions()
    assert a.instruction == b.instruction and a.start_xy == b.start_xy
    for k in pos_a:
        np.testing.assert_allclose(pos_a[k], pos_b[k], atol=1e-9)
    c = env.reset(seed=8)
    assert c.start_xy != a.start_xy


def test_objects_do_not_overlap_and_colours_shapes_vary(env):
    seen = set()
    for seed in range(20):
        task = env.reset(seed=seed)
        xy = {n: np.array(v) for n, v in task.start_xy.items()}
        names = list(xy)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert np.linalg.norm(xy[a] - xy[b]) > 0.08, (seed, a, b)
        seen.update(task.objects)
    assert {n.split("_")[0] for n in seen} == {"red", "green", "blue", "yellow"}
    assert {n.split("_")[1] for n in seen} == {"cube", "plate"}


def test_home_pose_holds_with_gripper_pointing_down(env):
    env.reset(seed=0)
    for _ in range(40):
        env.step()
    np.testing.assert_allclose(env.ee_position(), HOME_EE, atol=2e-3)
    assert np.linalg.norm(rotation_error(env.ee_rotation(), DOWN)) < 0.02


def test_twist_moves_the_end_effector_the_commanded_way(env):
    env.reset(seed=0)
    start = env.ee_position()
    for _ in range(20):  # 1 s at 20 Hz
        env.command_twist(np.array([0.0, 0.05, -0.04, 0.0, 0.0, 0.0]))
        env.step()
    moved = env.ee_position() - start
    assert moved[1] == pytest.approx(0.05, abs=0.01) and moved[2] == pytest.approx(-0.04, abs=0.01)
    assert abs(moved[0]) < 0.01


@pytest.mark.parametrize("family", FAMILIES)
def test_expert_succeeds_per_family(env, family):
    wins = 0
    for seed in range(3):
        env.reset(seed=100 + seed, family=family)
        wins += run_expert(env)
    assert wins == 3


def test_segmentation_labels_the_objects_on_the_table(env):
    task = env.reset(seed=3)
    frame = env.render(segmentation=True)
    assert frame.rgb.shape == (64, 64, 3) and frame.labels.shape == (64, 64)
    visible = {OBJECTS[i - 1].name for i in np.unique(frame.labels) if i > 0}
    assert visible == set(task.objects)  # every object on the table, nothing parked
    # the label of a cube covers pixels of its own colour
    red = [i for i, o in enumerate(OBJECTS) if o.name in task.objects and o.color == "red"]
    if red:
        px = frame.rgb[frame.labels == red[0] + 1].astype(float)
        assert px[:, 0].mean() > px[:, 1].mean() + 40


def test_command_validation_rejects_bad_input():
    ee = np.array([0.5, 0.0, 0.3])
    with pytest.raises(CommandRejected) as e:
        check_twist([np.nan, 0, 0, 0, 0, 0], ee, 0.05)
    assert e.value.reason == "non_finite"
    with pytest.raises(CommandRejected) as e:
        check_twist([3.0, 0, 0, 0, 0, 0], ee, 0.05)
    assert e.value.reason == "over_limit"
    with pytest.raises(CommandRejected) as e:
        check_twist([0, 0, -0.4, 0, 0, 0], np.array([0.5, 0.0, 0.05]), 0.05)
    assert e.value.reason == "workspace"
    check_twist([0, 0, 0.2, 0, 0, 0], np.array([0.5, 0.0, -0.05]), 0.05)  # back into the workspace is fine
    lo, hi = -np.ones(7) * 2.8, np.ones(7) * 2.8
    with pytest.raises(CommandRejected) as e:
        check_joint_trajectory(["a"] * 7, [([0.0] * 7, 1.0)], JOINT_NAMES, lo, hi)
    assert e.value.reason == "joint_names"
    with pytest.raises(CommandRejected) as e:
        check_joint_trajectory(list(JOINT_NAMES), [([0.0] * 6, 1.0)], JOINT_NAMES, lo, hi)
    assert e.value.reason == "bad_size"
    plan = check_joint_trajectory(list(reversed(JOINT_NAMES)), [(list(range(7)), 1.0)], JOINT_NAMES, lo - 10, hi + 10)
    assert plan.positions[0].tolist() == [6, 5, 4, 3, 2, 1, 0]  # reordered to the arm's order
    np.testing.assert_allclose(plan.sample(0.5, np.zeros(7)), [3, 2.5, 2, 1.5, 1, 0.5, 0])
    with pytest.raises(CommandRejected):
        check_gripper(float("inf"))
    assert check_gripper(0.04) == 0.04


def test_parked_objects_stay_parked_and_the_task_objects_keep_their_physics(env):
    """Objects the task does not use wait off the table: 30 s of simulated time later (the arm
    moving meanwhile) their poses are exactly where they were parked (before: z = -5,000 m after
    30 s, falling since there is no table under them). The task's objects still fall onto the table."""
    from vla_align_ros.sim.scene import CUBE_HALF

    task = env.reset(seed=5)
    parked = [o.name for o in OBJECTS if o.name not in task.start_xy]
    assert len(parked) == 3
    start = {n: env.object_pose(n) for n in parked}
    t0 = env.time
    for _ in range(600):  # 30 s at 20 Hz
        env.command_twist(np.array([0.0, 0.03, 0.0, 0.0, 0.0, 0.0]))
        env.step()
    assert env.time - t0 == pytest.approx(30.0, abs=0.01)
    for n in parked:
        p, q = env.object_pose(n)
        assert np.array_equal(p, start[n][0]) and np.array_equal(q, start[n][1]), (n, p, start[n][0])
        assert p[2] == pytest.approx(0.05)
    # a task cube lifted 10 cm and let go lands on the table within 0.5 s
    cube = next(n for n in task.start_xy if n.endswith("_cube"))
    adr = env.ids.object_qpos[cube]
    env.data.qpos[adr + 2] += 0.10
    env.data.qvel[env.ids.object_dof[cube]: env.ids.object_dof[cube] + 6] = 0.0
    for _ in range(10):
        env.step()
    assert env.object_position(cube)[2] == pytest.approx(CUBE_HALF, abs=0.002)
