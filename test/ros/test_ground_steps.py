"""Multi-step instructions grounded one step at a time (heads.ground_steps): the spatial and
policy heads read the active step's phrase, in training (the true step), in ``vla-align eval``
and in the running session (the step the temporal head says is active)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from vla_align_ros.config import ModelConfig
from vla_align_ros.data.bag_dataset import episodes_to_samples
from vla_align_ros.data.bags import read_episodes
from vla_align_ros.data.gripper_events import GripperEvents, gripper_events, gripper_opening
from vla_align_ros.inference import InferenceSession
from vla_align_ros.model import TrimodalModel
from vla_align_ros.sim.record import record_episodes
from vla_align_ros.sim.scene import OBJECTS
from vla_align_ros.training.objective import ObjectiveWeights, compute_losses
from vla_align_ros.training.trainer import TokenTable, make_batch
from conftest import MODEL_CONFIGS

NAMES = [o.name for o in OBJECTS]
TWO_STEPS = "put the red cube on the blue plate and then the green cube on the yellow plate"


def step_model(ground_steps: bool = True, seed: int = 0) -> TrimodalModel:
    """The tiny model with the simulator's actions (twist + gripper, 4-step chunks) and state."""
    cfg = ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")
    cfg.action.action_dim, cfg.action.state_dim, cfg.action.horizon = 7, 9, 4
    cfg.heads.ground_steps = ground_steps
    cfg.heads.max_steps = 3
    cfg.action.gripper_dims = 2
    torch.manual_seed(seed)
    return TrimodalModel(cfg).eval()


def test_gripper_events_count_grasps_and_releases_with_hysteresis():
    opening = np.array([0.08, 0.08, 0.07, 0.05, 0.042, 0.0595, 0.061, 0.058, 0.042, 0.07, 0.075, 0.08,
                        np.nan, 0.08, 0.04, 0.08])
    ev = gripper_events(opening)
    assert ev.shape == (16, 2) and ev.dtype == np.float32
    # closes at 0.05 (< 0.75 * 0.08); the wobble around 0.06 is not a release (needs > 0.072);
    # reopens at 0.075; the NaN changes nothing; then one more grasp and release
    assert ev[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2]
    assert ev[:, 1].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2]
    counter = GripperEvents()
    assert [counter.update(o) for o in opening][-1] == (2, 2)
    counter.reset()
    assert counter.update(0.08) == (0, 0)
    assert gripper_opening(np.array([[1.0, 2.0, 0.03, 0.04]]), 2).tolist() == pytest.approx([0.07])
    assert gripper_opening(np.ones((3, 4)), 0).tolist() == [0.0, 0.0, 0.0]


def test_step_text_takes_each_samples_active_phrase():
    model = step_model()
    steps = ["pick up the red cube", "put it on the blue plate", "push the green block left", "lift the red cube"]
    with torch.no_grad():
        both = model.encode_text(**model.tokenize(steps))  # two samples, two steps each
        picked = model.step_text(both, torch.tensor([1, 0]))  # sample 0's second step, sample 1's first
        for row, text in ((0, steps[1]), (1, steps[2])):
            alone = model.encode_text(**model.tokenize([text]))
            n = int(alone.mask.sum())
            assert int(picked.mask[row].sum()) == n
            torch.testing.assert_close(picked.tokens[row, :n], alone.tokens[0, :n], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(picked.words[row, :n], alone.words[0, :n])


@pytest.fixture(scope="module")
def batch_parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("step_bags") / "b"
    record_episodes(d, episodes=2, seed=5, families=["place_two", "pick_then_place"], image_size=(48, 48),
                    progress=False)
    episodes, _ = read_episodes([d])
    s = episodes_to_samples(episodes, 4, NAMES, gripper_dims=2)
    return d, s


def test_the_first_release_marks_the_second_step_of_two_places(batch_parts):
    """On the simulator's recordings the expert's own step markers and the gripper's releases
    agree: in "put A on B and then C on D" the second step starts once A is let go."""
    _, s = batch_parts
    assert s.events is not None and s.events.shape == (len(s), 2)
    two = torch.tensor(["and then" in t or ", then the" in t for t in s.texts])
    assert bool(two.any())
    releases, step = s.events[two, 1], s.step_index[two]
    agree = ((releases >= 1) == (step == 1)).float().mean()
    assert float(agree) > 0.95, float(agree)
    assert float(s.events[:, 1].max()) == 2.0  # both places released by the end


def _losses(model: TrimodalModel, s, instruction: str | None) -> dict[str, float]:
    texts = list(s.texts) + [t for st in s.step_texts for t in st] + list(s.phrase_texts)
    if instruction is not None:  # every frame told another whole instruction, the same steps
        s = s.subset(torch.arange(len(s)))
        s.texts = [instruction] * len(s)
        texts.append(instruction)
    tokens = TokenTable(model, texts)
    idx = torch.nonzero(s.has_mask & (s.step_index == 1)).flatten()[:6]  # second steps: another object
    b = make_batch(s, idx, tokens, 3, torch.device("cpu"))
    with torch.no_grad():
        out = compute_losses(model, b, ObjectiveWeights(temporal=0.5))
    return {k: float(v) for k, v in out.items()}


def test_the_heads_read_the_step_and_not_the_whole_instruction(batch_parts):
    """With ground_steps the mask and action losses do not change when the whole instruction
    does; without, they do."""
    _, s = batch_parts
    assert bool((s.step_index == 1).any())
    for ground_steps in (True, False):
        model = step_model(ground_steps)
        own, other = _losses(model, s, None), _losses(model, s, "push the yellow block to the right")
        for term in ("spatial", "policy"):
            same = abs(own[term] - other[term]) < 1e-5
            assert same == ground_steps, (ground_steps, term, own[term], other[term])


def test_the_session_grounds_the_step_the_temporal_head_chose():
    model = step_model()
    session = InferenceSession(model)
    try:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, size=(48, 48, 3), dtype=np.uint8)
        state = rng.normal(size=9).astype(np.float32)
        enc = session.set_instruction(TWO_STEPS)
        assert enc.steps == ["put the red cube on the blue plate", "put the green cube on the yellow plate"]
        res = session.step(image, state)
        with torch.no_grad():
            vis = model.encode_image(torch.from_numpy(image)[None])
            s = model.normalize_state(torch.from_numpy(state)[None])
            per_step = []
            for k in range(2):
                head = model.encode_text(**model.tokenize([enc.steps[k]]))
                per_step.append((model.ground(vis, head, (48, 48)).mask_logits[0].numpy(),
                                 model.denormalize_actions(model.act(vis, head, s))[0].numpy()))
            # the step head read this frame's gripper count, as training does
            counts = GripperEvents().update(float(gripper_opening(state, 2)))
            steps = model.proj_text(model.encode_text(**model.tokenize(enc.steps)).pooled)[None]  # (1, 2, D)
            valid = torch.ones(1, 2, dtype=torch.bool)
            emb_v = model.proj_vision(vis.pooled)
            with_events = model.active_step(emb_v, s, steps, valid, torch.tensor([counts], dtype=torch.float32))
            without = model.active_step(emb_v, s, steps, valid)
        np.testing.assert_allclose(res.step_probs, with_events.step_logits.softmax(-1)[0].numpy(), atol=1e-4)
        assert not np.allclose(res.step_probs, without.step_logits.softmax(-1)[0].numpy(), atol=1e-4)
        k = res.step_index
        np.testing.assert_allclose(res.mask_logits, per_step[k][0], atol=1e-4)
        np.testing.assert_allclose(res.actions, per_step[k][1], atol=1e-4)
        assert not np.allclose(per_step[0][0], per_step[1][0], atol=1e-3)  # the two steps differ
        # Once on the second step the session stays there (never going back) and grounds it.
        session._last_step = 1
        later = session.step(image, state)
        assert later.step_index == 1
        np.testing.assert_allclose(later.mask_logits, per_step[1][0], atol=1e-4)
        np.testing.assert_allclose(later.actions, per_step[1][1], atol=1e-4)
    finally:
        session.close()


def test_a_step_run_trains_and_its_report_grounds_the_step_it_decoded(batch_parts, tmp_path):
    from vla_align_ros.config import from_dict
    from vla_align_ros.training.report import evaluate_run
    from vla_align_ros.training.trainer import TrainConfig, train

    bag, _ = batch_parts
    raw = {"model": {"vision": {"kind": "hf", "hf_model_type": "siglip", "image_size": 32, "patch_size": 8,
                                "hidden_size": 32, "num_layers": 1, "num_heads": 2},
                     "text": {"kind": "hf", "max_length": 24, "hidden_size": 32, "num_layers": 1, "num_heads": 2},
                     "action": {"horizon": 4, "action_dim": 7, "state_dim": 9, "hidden_size": 32, "gripper_dims": 2},
                     "projection": {"kind": "mlp", "embed_dim": 32, "hidden_size": 64},
                     "heads": {"num_heads": 2, "policy_layers": 1, "max_steps": 3, "ground_steps": True}},
           "data": {"hold_out": ["family=pick_then_place"], "val_fraction": 0.0},
           "steps": 4, "batch_size": 16, "lr": 0.002, "warmup": 1, "checkpoint_every": 10}
    res = train([bag], from_dict(TrainConfig, raw), tmp_path / "run", progress=False)
    assert all(np.isfinite(row["spatial"]) and row["spatial"] > 0 for row in res["log"])
    m = evaluate_run(tmp_path / "run", [bag], tmp_path / "report", max_frames=60)
    for split in ("seen", "held_out"):
        assert 0.0 <= m[split]["step_accuracy_online"] <= 1.0
        assert 0.0 <= m[split]["pointing_accuracy"] <= 1.0
    assert "step accuracy as the node runs" in (tmp_path / "report" / "report.md").read_text()
