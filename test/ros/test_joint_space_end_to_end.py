"""Joint-space actions end to end, in one process: the scripted expert recorded in
``command_mode='joint_trajectory'`` (its twists through the rollout's command path, the bag
holding the JointTrajectory each control step sent), read back as ``joint_delta`` actions
(target minus measured joints, then the gripper), a tiny joint-space model trained on them (loss
falls, the checkpoint records joint_delta), and the chunk policy from that checkpoint driving the
simulated arm through one-point JointTrajectories; the same checkpoint is refused in twist mode,
and the shipped twist checkpoint in joint mode, as policy_node's configure refuses them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from vla_align_ros.model.action_space import ActionSpace, ActionSpaceError, checkpoint_action_space
from conftest import PACKAGE_DIR, TINY

ARM = tuple(f"panda_joint{i}" for i in range(1, 8))
JOINT_SPACE = ActionSpace.joint_delta(ARM + ("gripper",), ("rad",) * 7 + ("command",))
LEAD = 0.1  # rad: the joint stream's bound on target minus measured (2 rad/s x 0.05 s)
SHIPPED = PACKAGE_DIR / "models" / "sim_tiny"


def tiny_joint_config() -> str:
    """conftest's TINY recipe for a joint-space model: 7 joint deltas + the gripper, the policy
    and contrastive terms only, 100 steps, nothing held out."""
    cfg = yaml.safe_load(TINY.replace("STEPS", "100"))
    cfg["model"]["text"]["max_length"] = 16
    cfg["model"]["action"]["action_dim"] = 8
    cfg["objective"] = {"contrastive": 0.5, "spatial": 0.0, "temporal": 0.0, "phrase": 0.0, "policy": 1.0}
    cfg["data"]["hold_out"] = []
    cfg.update(lr=0.003, checkpoint_every=1000)
    return yaml.safe_dump(cfg)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from vla_align_ros.sim.record import record_episodes

    os.environ.setdefault("MUJOCO_GL", "egl")
    bag = tmp_path_factory.mktemp("joint") / "bag"
    stats = record_episodes(bag, episodes=4, seed=11, families=["place", "pick"], image_size=(32, 32),
                            progress=False, command_mode="joint_trajectory")
    return bag, stats


@pytest.fixture(scope="module")
def trained(recorded: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    from vla_align_ros.training.trainer import TrainConfig, train

    bag, _ = recorded
    d = tmp_path_factory.mktemp("joint_run")
    (d / "tiny_joint.yaml").write_text(tiny_joint_config())
    out = train([bag], TrainConfig.from_yaml(d / "tiny_joint.yaml"), d / "run", progress=False)
    assert out["finished"]
    return d / "run", out["log"]


def _bag_messages(bag: Path) -> tuple[dict[str, list[tuple[int, Any]]], dict[str, str]]:
    """Every message of the bag by topic [(log time ns, message)], and the topic types."""
    from rosbags.highlevel import AnyReader

    files = sorted(bag.glob("*.mcap"))
    out: dict[str, list[tuple[int, Any]]] = {}
    with AnyReader(files) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out, types


def test_joint_mode_bag_holds_the_trajectories_sent(recorded: tuple[Path, Any]) -> None:
    from vla_align_ros.sim.topics import SimTopics

    bag, stats = recorded
    topics = SimTopics()
    assert stats.successes >= 3, stats  # the expert through the joint path (measured 4/4 on these seeds)
    msgs, types = _bag_messages(bag)
    # the trajectory topic replaces the twist topic; the gripper command is still there
    assert types[topics.joint_trajectory_cmd] == "trajectory_msgs/msg/JointTrajectory"
    assert topics.twist_cmd not in types and len(msgs[topics.gripper_cmd]) > 0
    trajs = msgs[topics.joint_trajectory_cmd]
    assert len(trajs) == stats.commands["trajectories"] and stats.commands.get("dropped_twist", 0) == 0
    # one a control step: a state is recorded at each episode's start and after every step
    states = msgs[topics.joint_states]
    assert len(trajs) == len(states) - 4, (len(trajs), len(states))
    state_stamp = {t: m for t, m in states}
    leads = []
    for t, m in trajs:
        assert tuple(m.joint_names) == ARM and len(m.points) == 1
        p = m.points[0]
        assert (p.time_from_start.sec, p.time_from_start.nanosec) == (0, 50_000_000)  # one period at 20 Hz
        assert m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec == t  # stamped with sim time
        assert len(p.positions) == 7 and np.all(np.isfinite(p.positions)) and len(p.velocities) == 0
        js = state_stamp[t]  # sent at the instant of a recorded state: target minus that state
        leads.append(np.asarray(p.positions) - np.asarray(js.position[:7]))
    leads = np.abs(np.asarray(leads))
    assert leads.max() <= LEAD + 1e-9 and leads.max() > 0.05, leads.max()
    meta = (bag / "metadata.yaml").read_text()
    assert "vla_align.command_mode: joint_trajectory" in meta


def test_joint_mode_bag_reads_as_joint_delta(recorded: tuple[Path, Any]) -> None:
    from vla_align_ros.data.bags import read_episodes
    from vla_align_ros.sim.topics import SimTopics

    bag, _ = recorded
    eps, sync = read_episodes([bag])
    assert len(eps) == 4 and sync.dropped_no_command == 0
    msgs, _ = _bag_messages(bag)
    target_at = {t: np.asarray(m.points[0].positions) for t, m in msgs[SimTopics().joint_trajectory_cmd]}
    for ep in eps:
        assert ep.action_space == JOINT_SPACE and ep.actions.shape == (len(ep.stamps), 8)
        assert ep.joint_names[:7] == list(ARM)
        sent = [i for i, t in enumerate(ep.stamps) if int(t) in target_at]
        assert len(sent) == len(ep.stamps) - 1  # every frame but the last has the trajectory sent at it
        for i in sent:
            np.testing.assert_allclose(ep.actions[i, :7], target_at[int(ep.stamps[i])] - ep.joints[i, :7], atol=1e-6)
        assert np.isin(ep.actions[:, 7], np.float32([0.0, 0.08])).all()  # the gripper command, open or closed
        assert 0.02 < np.abs(ep.actions[:, :7]).max() <= LEAD + 1e-6


def test_joint_space_training_and_checkpoint(trained: tuple[Path, list[dict]]) -> None:
    run, log = trained
    assert len(log) == 100
    first, last = np.mean([r["total"] for r in log[:10]]), np.mean([r["total"] for r in log[-10:]])
    pol0, pol1 = np.mean([r["policy"] for r in log[:10]]), np.mean([r["policy"] for r in log[-10:]])
    # measured (means of the first and last 10 steps): total 4.29 -> 0.21, policy (the joint-delta chunks)
    # 0.41 -> 0.20; the episode below moved the hand 0.31 m
    assert last < 0.5 * first and pol1 < 0.7 * pol0, (first, last, pol0, pol1)
    assert checkpoint_action_space(run) == JOINT_SPACE
    meta = json.loads((run / "checkpoint" / "config.json").read_text())["metadata"]
    assert meta["action_space"]["kind"] == "joint_delta" and meta["action_space"]["frame"] == "joint"


def test_chunk_policy_drives_the_arm_through_joint_trajectories(trained: tuple[Path, list[dict]],
                                                                 tmp_path: Path) -> None:
    from vla_align_ros.inference import InferenceSession
    from vla_align_ros.policies import make_policy
    from vla_align_ros.sim.env import TabletopEnv
    from vla_align_ros.sim.policy_eval import evaluate_policies
    from vla_align_ros.sim.rollout import SentTrajectory, SimJointState, run_episode, sim_robot

    run, _ = trained
    session = InferenceSession(run / "checkpoint")
    sent: list[tuple[SentTrajectory, np.ndarray]] = []
    with TabletopEnv(image_size=(32, 32)) as env:
        robot = sim_robot(env)
        policy = make_policy("chunk", session, robot)
        assert policy.space == JOINT_SPACE
        q0 = env.joint_positions()
        res = run_episode(policy, env, robot, 5000, state=SimJointState(session.model.cfg.action.velocity),
                          max_steps=120, command_mode="joint_trajectory",
                          on_trajectory=lambda s: sent.append((s, env.joint_positions().copy())))
        lo, hi = env.kin.lo, env.kin.hi
        dt = env.control_dt
        # the same checkpoint in twist mode: refused before the episode starts (the arm is not touched)
        t_before, q_before = env.time, env.joint_positions()
        with pytest.raises(ActionSpaceError, match=r"joint_delta .* command_mode='twist' cannot send"):
            run_episode(policy, env, robot, 5001, command_mode="twist")
        assert env.time == t_before and np.array_equal(env.joint_positions(), q_before)
    assert not res.refused and res.steps == 120
    # the arm really moved under the model's joint commands
    assert res.moved_m > 0.03, res.moved_m
    # one trajectory per control step plus the closing hold; nothing dropped by the safety filters
    assert res.commands == {"trajectories": 121, "holds": 1}, res.commands
    assert len(sent) == 121
    targets = np.array([s.positions for s, _ in sent])
    measured = np.array([m for _, m in sent])
    assert np.all(np.isfinite(targets)) and np.all(targets >= lo - 1e-9) and np.all(targets <= hi + 1e-9)
    assert all(s.names == ARM and s.time_from_start == pytest.approx(dt) for s, _ in sent)
    assert np.all(np.diff([s.stamp for s, _ in sent]) > 0)
    lead = np.abs(targets - measured)
    assert lead.max() <= LEAD + 1e-9 and lead[:-1].max() > 0.01  # the model's deltas, bounded by the stream
    np.testing.assert_allclose(targets[-1], measured[-1])  # the closing hold: where the arm is
    # each step the joints moved toward the target sent (the arm follows the commands)
    step = measured[1:] - measured[:-1]
    toward = np.einsum("ij,ij->i", step, targets[:-1] - measured[:-1])
    assert np.mean(toward > 0) > 0.8, np.mean(toward > 0)
    assert np.linalg.norm(measured[-1] - q0) > 0.05
    with pytest.raises(ActionSpaceError, match="command_mode='twist' cannot send"):
        evaluate_policies(run, ["chunk"], tmp_path / "eval", episodes=1, splits=("paraphrase",), image_size=32,
                          log=lambda _: None, command_mode="twist")
    assert not (tmp_path / "eval" / "rollouts.json").exists()
    session.close()


def test_twist_checkpoint_refused_in_joint_mode_in_process() -> None:
    from vla_align_ros.inference import InferenceSession
    from vla_align_ros.policies import make_policy
    from vla_align_ros.sim.env import TabletopEnv
    from vla_align_ros.sim.rollout import run_episode, sim_robot

    session = InferenceSession(SHIPPED / "checkpoint")
    with TabletopEnv(image_size=(96, 96)) as env:
        robot = sim_robot(env)
        policy = make_policy("chunk", session, robot)
        with pytest.raises(ActionSpaceError, match=r"ee_twist_gripper .* command_mode='joint_trajectory' cannot send"):
            run_episode(policy, env, robot, 5000, command_mode="joint_trajectory")
    session.close()
