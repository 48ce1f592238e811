"""The policy layer: the pieces of the default policy
(primitives, ensembling, the intent head, the Jacobian), and short in-process rollouts of the
shipped model: episodes that must succeed, and instructions that must not move the arm."""

from __future__ import annotations

import numpy as np
import pytest

from vla_align_ros.paths import shipped_model
from vla_align_ros.policies.chunk import ensemble
from vla_align_ros.policies.primitives import ServoGains, Waypoint, drive, rotation_log
from vla_align_ros.policies.skills import SentenceEncoder, SkillModel
from vla_align_ros.robots.config import RobotConfig



def test_rotation_log_is_the_axis_angle() -> None:
    axis = np.array([0.3, -0.5, 0.81])
    axis /= np.linalg.norm(axis)
    for angle in (1e-3, 0.7, 3.0):
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        r = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k  # Rodrigues
        assert np.allclose(rotation_log(r), angle * axis, atol=1e-6)


def test_drive_reaches_each_waypoint_at_the_servo_speed() -> None:
    """A point hand integrated at 20 Hz: the primitives' twists bring it within the tolerance of
    each waypoint, never faster than max_speed, and the gripper command follows the waypoint."""
    pos = np.zeros(3)
    gains = ServoGains()
    wps = [lambda: Waypoint("approach", np.array([0.2, -0.1, 0.3]), 0.08),
           lambda: Waypoint("grasp", None, 0.0, wait=3),
           lambda: Waypoint("lift", np.array([0.2, -0.1, 0.5]), 0.0)]
    seen = {}
    for step in drive(iter(wps), lambda: (pos, np.eye(3)), np.eye(3), gains):
        assert np.linalg.norm(step.twist[:3]) <= gains.max_speed + 1e-9
        assert np.allclose(step.twist[3:], 0.0)
        pos = pos + step.twist[:3] * 0.05
        seen.setdefault(step.phase, []).append((pos.copy(), step.gripper))
    assert list(seen) == ["approach", "grasp", "lift"]
    assert np.linalg.norm(seen["approach"][-1][0] - [0.2, -0.1, 0.3]) < gains.tolerance
    assert len(seen["grasp"]) == 4 and all(g == 0.0 for _, g in seen["grasp"])
    assert np.linalg.norm(pos - [0.2, -0.1, 0.5]) < gains.tolerance


def test_temporal_ensembling_weights_older_chunks_more() -> None:
    a, b = np.full((4, 1), 1.0), np.full((4, 1), 3.0)
    out = ensemble([(0, a), (2, b)], now=2, decay=0.5)  # a's row 2 and b's row 0
    w = np.exp(-0.5 * np.arange(2))
    assert out[0] == pytest.approx((w[0] * 1.0 + w[1] * 3.0) / w.sum())
    assert ensemble([(0, a)], now=4, decay=0.5) is None  # nothing covers step 4


def test_jacobian_joint_targets_match_the_simulator() -> None:
    """The robot side's twist -> joint change (Pinocchio) is the simulator's own (MuJoCo)."""
    from vla_align_ros.sim.arm_model import PandaArm

    kin = RobotConfig.load("panda").kinematics()
    arm = PandaArm()
    names = [f"panda_joint{i}" for i in range(1, 8)]
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.uniform(arm.lower, arm.upper)
        twist = rng.normal(size=6) * 0.1
        ours = kin.twist_to_joint_delta(q, names, twist, 0.05)
        assert np.abs(ours - (arm.twist_to_joint_target(q, twist, 0.05) - q)).max() < 1e-6
        pos, rot = kin.ee_pose(q, names)
        ref_pos, ref_rot = arm.ee_pose(q)
        assert np.abs(pos - ref_pos).max() < 1e-5 and np.abs(rot - ref_rot).max() < 1e-4
    lo, hi = kin.limits(names)
    assert np.allclose(lo, arm.lower) and np.allclose(hi, arm.upper)


@pytest.fixture(scope="module")
def skills() -> tuple[SkillModel, SentenceEncoder]:
    return SkillModel.load(shipped_model() / "checkpoint"), SentenceEncoder()


def test_shipped_skills_come_from_the_demonstrations(skills) -> None:
    """Motions and heights measured from the training recording's keyframes: a lower and a
    higher release (onto a plate, onto a cube), pushes both ways, a two-step place; where a push
    starts relative to its object, measured with the model's own pick map."""
    model, _ = skills
    names = model.intent_names
    assert {"grasp", "place:0", "place:1", "place:0 + place:0", "push:+y", "push:-y", "none"} <= set(names)
    s = model.skills
    assert 0.04 < s["grasp"].grasp_h < 0.06 and s["place:1"].release_h - s["place:0"].release_h > 0.02
    assert s["push:+y"].push[1] > 0.1 and s["push:-y"].push[1] < -0.1
    # a pushed object is found by the demonstrations' own grasp wording; the hand starts behind it
    assert model.object_query.strip() in {"pick up", "grab", "lift"}
    assert 0.04 < s["push:+y"].behind < 0.11 and 0.04 < s["push:-y"].behind < 0.11
    assert model.stats["push_behind"]["push:+y"] == "measured"
    # stacks let go on what the grasp query finds for their target; places onto plates do not
    assert s["place:1"].target_by_query and not s["place:0"].target_by_query


def test_object_and_target_phrases() -> None:
    from vla_align_ros.text_input import object_phrase, target_phrase

    assert object_phrase("slide the red block right") == "the red block"
    assert target_phrase("put the red cube on top of the blue cube") == "the blue cube"
    assert target_phrase("set the yellow one on the green dish, please") == "the green dish"
    assert target_phrase("grab the red cube") is None and object_phrase("hello") is None


@pytest.mark.parametrize("text, motion", [
    ("put the green block on the red dish", "place:0"),
    ("stack the blue cube on the yellow cube", "place:1"),
    ("grab the red cube", "grasp"),
    ("push the yellow block to the left", "push:-y"),
    ("slide the green cube right", "push:+y"),
    ("put the red cube on the blue plate and then the green cube on the yellow plate", "place:0 + place:0"),
    ("please do not put the red cube on the blue plate", "none"),
    ("is the red cube on the blue plate?", "none"),
    ("good morning", "none"),
])
def test_the_intent_head_reads_the_motion_from_the_words(skills, text, motion) -> None:
    model, enc = skills
    probs = model.intent_probabilities(enc([text])[0])
    assert model.intent_names[int(np.argmax(probs))] == motion, dict(zip(model.intent_names, probs.round(2)))


@pytest.fixture(scope="module")
def sim():
    from vla_align_ros.inference import InferenceSession
    from vla_align_ros.policies import make_policy
    from vla_align_ros.sim.env import TabletopEnv
    from vla_align_ros.sim.rollout import sim_robot

    session = InferenceSession(shipped_model() / "checkpoint")
    env = TabletopEnv(image_size=(96, 96))
    robot = sim_robot(env)
    yield env, robot, make_policy("affordance", session, robot)
    env.close()
    session.close()


def _first_seed(env, family: str, start: int = 5000) -> int:
    """The first layout from ``start`` whose random task is of ``family`` (layouts >= 5000 are
    never trained on)."""
    from vla_align_ros.sim.env import TabletopEnv  # noqa: F401 - env is one

    for s in range(start, start + 200):
        if env.reset(s).family == family:
            return s
    raise AssertionError(f"no {family} task among seeds {start}..{start + 199}")


@pytest.mark.parametrize("family", ["pick", "place", "stack", "push"])
def test_in_process_rollout_of_the_default_policy_succeeds(sim, family) -> None:
    """The shipped model, the affordance policy, the simulator's own success check: the first
    unseen layout of each single-step family is done (in-process, no DDS)."""
    from vla_align_ros.sim.rollout import run_episode

    env, robot, policy = sim
    seed = _first_seed(env, family)
    r = run_episode(policy, env, robot, seed)
    assert r.success and not r.refused, (r.instruction, r.detail, r.phase)
    assert r.steps < 400  # about 10 s of simulated time


@pytest.mark.parametrize("words, reason", [
    ("please do not {i}", "not_a_command"),
    ("is the {X} on the {Y}?", "not_a_command"),
    ("pick up the {a} cube", "not_in_view"),  # a cube colour that is not on the table
])
def test_instructions_that_must_not_move_the_arm_do_not(sim, words, reason) -> None:
    """A negation, a question and an absent object: a refusal with the reason within 2 s of
    simulated time, and the hand and fingers stay where they were."""
    from vla_align_ros.sim.instruction_sets import _words
    from vla_align_ros.sim.rollout import run_episode

    env, robot, policy = sim
    seed = _first_seed(env, "place")
    text = words.format(**_words(env.reset(seed), np.random.default_rng(0)))
    r = run_episode(policy, env, robot, seed, text)
    assert r.refused == reason, (text, r.refused, r.detail)
    assert r.refused_after_s is not None and r.refused_after_s <= 2.0
    assert r.no_motion and r.moved_m < 0.005 and not r.success, (text, r.moved_m)
