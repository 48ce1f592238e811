"""The joints' velocities in the robot state (action.velocity): recorded ones where the message
has them, position differences where a recorder left them out, the same rule offline and online;
the session counts gripper events from the positions, never from the velocities."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from vla_align_ros.config import ModelConfig
from vla_align_ros.data.bag_dataset import episodes_to_samples
from vla_align_ros.data.bags import read_episodes
from vla_align_ros.data.joint_state import VelocityTracker, joint_arrays, model_state
from vla_align_ros.inference import InferenceSession
from vla_align_ros.model import TrimodalModel
from vla_align_ros.sim.record import record_episodes
from vla_align_ros.sim.scene import OBJECTS
from conftest import MODEL_CONFIGS

EMPTY = np.zeros(0, np.float32)


def test_recorded_velocities_are_kept_and_missing_ones_are_position_differences():
    stamps = np.array([0, 50_000_000, 100_000_000, 200_000_000], dtype=np.int64)  # 0, 50, 100, 200 ms
    q = np.array([[0.0, 1.0], [0.1, 1.0], [0.2, 0.9], [0.4, 0.9]], dtype=np.float32)
    values = [(q[0], EMPTY), (q[1], np.array([7.0, 8.0], np.float32)),  # recorded: kept as it is
              (q[2], np.array([np.nan, 0.0], np.float32)),  # not finite: differenced
              (q[3], np.array([1.0], np.float32))]  # wrong length: differenced
    pos, vel = joint_arrays(stamps, values)
    np.testing.assert_array_equal(pos, q)
    np.testing.assert_allclose(vel, [[0.0, 0.0], [7.0, 8.0], [2.0, -2.0], [2.0, 0.0]], atol=1e-5)
    # the node's streaming form gives the same, message by message
    tracker = VelocityTracker()
    online = np.stack([tracker.update(t * 1e-9, p, v) for t, (p, v) in zip(stamps, values)])
    np.testing.assert_allclose(online, vel, atol=1e-5)
    # a message not newer than the last (a replayed stamp) gives no difference, and a reset forgets
    assert np.array_equal(tracker.update(0.2, q[3] + 1, EMPTY), np.zeros(2, np.float32))
    tracker.reset()
    assert np.array_equal(tracker.update(0.3, q[0], EMPTY), np.zeros(2, np.float32))


def test_a_message_in_another_joint_order_gives_the_models_order_for_positions_and_velocities():
    wanted = ["j1", "j2", "finger"]
    names = ["finger", "other", "j2", "j1"]  # a driver's own order, with a joint the model does not read
    idx = [names.index(n) for n in wanted]
    pos, vel = np.array([0.04, 9.0, -0.5, 0.25]), np.array([0.1, 7.0, -2.0, 3.0])
    assert model_state(pos, vel, idx, 1.0, None).tolist() == pytest.approx([0.25, -0.5, 0.04])
    tracker = VelocityTracker()
    assert model_state(pos, vel, idx, 1.0, tracker).tolist() == pytest.approx([0.25, -0.5, 0.04, 3.0, -2.0, 0.1])
    # velocities for only some names: differences of the model's joints over the stamps
    later = model_state(pos + [0.0, 0.0, 0.1, 0.2], vel[:2], idx, 1.5, tracker)
    assert later.tolist() == pytest.approx([0.45, -0.4, 0.04, 0.4, 0.2, 0.0])


def test_joint_states_of_different_sizes_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\[2, 7\] positions"):
        joint_arrays(np.array([0, 1]), [(np.zeros(7, np.float32), EMPTY), (np.zeros(2, np.float32), EMPTY)])


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    d = tmp_path_factory.mktemp("vel_bags") / "bag"
    record_episodes(d, episodes=2, seed=3, families=["place", "push"], image_size=(32, 32), progress=False)
    return read_episodes([d])[0]


def test_a_recording_gives_its_velocities_and_position_differences_agree_with_them(episodes):
    for ep in episodes:
        assert ep.velocities.shape == ep.joints.shape and np.isfinite(ep.velocities).all()
        assert np.abs(ep.velocities[:, :7]).max() > 0.05  # the arm moved, and the bag says how fast
        # A recorder that leaves the velocity field empty: the position differences stand in.
        _, diffs = joint_arrays(ep.stamps, [(q, EMPTY) for q in ep.joints])
        for j in range(7):  # every arm joint that moves follows the simulator's own velocities
            if np.abs(ep.velocities[:, j]).max() > 0.02:
                assert np.corrcoef(diffs[1:, j], ep.velocities[1:, j])[0, 1] > 0.9, j
    names = [o.name for o in OBJECTS]
    plain = episodes_to_samples(episodes, 4, names, gripper_dims=2)
    s = episodes_to_samples(episodes, 4, names, gripper_dims=2, velocity=True)
    assert plain.state.shape[1] == 9 and s.state.shape[1] == 18
    torch.testing.assert_close(s.state[:, :9], plain.state)
    torch.testing.assert_close(s.state[:, 9:], torch.from_numpy(np.concatenate([e.velocities for e in episodes])))
    torch.testing.assert_close(s.events, plain.events)  # grasps and releases come from the positions


def test_a_velocity_model_reads_18_state_values_and_counts_events_from_the_positions():
    cfg = ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")
    cfg.action.action_dim, cfg.action.state_dim, cfg.action.horizon = 7, 9, 4
    cfg.action.gripper_dims, cfg.action.velocity = 2, True
    cfg.heads.ground_steps, cfg.heads.max_steps = True, 3
    torch.manual_seed(0)
    model = TrimodalModel(cfg).eval()
    assert model.state_mean.shape == (18,) and cfg.action.state_width == 18
    session = InferenceSession(model)
    try:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        positions = np.r_[rng.normal(size=7), 0.04, 0.04].astype(np.float32)
        session.set_instruction("put the red cube on the blue plate")
        moving = session.step(image, np.r_[positions, np.full(9, 0.3, np.float32)])
        still = session.step(image, np.r_[positions, np.zeros(9, np.float32)])
        assert not np.allclose(moving.actions, still.actions, atol=1e-5)  # the policy reads the velocities
        with pytest.raises(ValueError, match="reads 18 values \\(9 positions, then their velocities\\)"):
            session.step(image, positions)  # positions alone: a clear error, not a shape mismatch inside
        # the counter read the fingers' positions (0.04 + 0.04 open), not their velocities
        assert session._gripper.widest == pytest.approx(0.08) and session._gripper.grasps == 0
    finally:
        session.close()
