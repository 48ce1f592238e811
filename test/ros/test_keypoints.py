"""The instruction's roles (the object acted on, the place it goes) and the policy that reads
where they are: role pooling, keypoints of masks, the teacher and geometry terms, the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vla_align_ros.config import ModelConfig
from vla_align_ros.data.bag_dataset import episodes_to_samples
from vla_align_ros.data.bags import read_episodes
from vla_align_ros.model import TrimodalModel
from vla_align_ros.model.heads import (MIN_LOG_MASS, fourier_xy, grid_centres, mask_keypoints, true_keypoints)
from vla_align_ros.sim.record import record_episodes
from vla_align_ros.sim.scene import OBJECTS
from vla_align_ros.training.objective import ObjectiveWeights, compute_losses, policy_keypoints
from vla_align_ros.training.trainer import GeometryFrames, TokenTable, make_batch
from conftest import MODEL_CONFIGS

NAMES = [o.name for o in OBJECTS]


def keypoint_model(seed: int = 0, sim: bool = False) -> TrimodalModel:
    """The tiny model with roles and keypoints; ``sim``: the simulator's actions (twist +
    gripper, 4-step chunks) and state (7 joints + 2 fingers)."""
    cfg = ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")
    if sim:
        cfg.action.action_dim, cfg.action.state_dim, cfg.action.horizon = 7, 9, 4
    cfg.heads.fine_channels = 8
    cfg.heads.role_pool = True
    cfg.heads.policy_keypoints = True
    torch.manual_seed(seed)
    return TrimodalModel(cfg).eval()


def test_grid_centres_are_row_major_and_fourier_features_tell_positions_apart():
    c = grid_centres(2, 3)  # 2 rows, 3 columns
    assert c.shape == (6, 2)
    torch.testing.assert_close(c[1], torch.tensor([0.0, -0.5]))  # row 0, column 1: x centre, upper half
    torch.testing.assert_close(c[3], torch.tensor([-2 / 3, 0.5]))  # row 1, column 0
    f = fourier_xy(grid_centres(12, 12))
    assert f.shape == (144, 16)
    d = torch.cdist(f, f) + torch.eye(144) * 9
    assert float(d.min()) > 0.3  # no two patch centres look alike


def test_keypoints_of_a_mask_are_its_centre_and_an_empty_mask_is_nothing():
    m = torch.zeros(2, 1, 40, 40, dtype=torch.bool)
    m[0, 0, 4:12, 20:36] = True  # rows 4-11, columns 20-35
    kp = true_keypoints(m)  # (2, 1, 3)
    # pixel centres: x = (27.5 + 0.5) / 40 * 2 - 1 = 0.4, y = (7.5 + 0.5) / 40 * 2 - 1 = -0.6
    torch.testing.assert_close(kp[0, 0, :2], torch.tensor([0.4, -0.6]), atol=1e-3, rtol=0)
    assert float(kp[0, 0, 2]) == pytest.approx(np.log(8 * 16 / 1600), abs=1e-3)
    torch.testing.assert_close(kp[1, 0, :2], torch.zeros(2), atol=1e-5, rtol=0)
    assert float(kp[1, 0, 2]) == MIN_LOG_MASS
    assert mask_keypoints(m.to(torch.bfloat16) * 20 - 10).dtype == torch.float32  # precise under bf16 autocast


def test_a_faint_second_blob_barely_moves_the_keypoint():
    """The softmax centroid follows the peak: a blob at logit 0 (probability 0.5 under a sigmoid)
    as large as the object, across the image, moves it by under a pixel of 40."""
    logits = torch.full((1, 1, 40, 40), -8.0)
    logits[0, 0, 10:16, 10:16] = 6.0
    alone = mask_keypoints(logits)
    logits[0, 0, 30:36, 30:36] = 0.0
    both = mask_keypoints(logits)
    assert float((both[0, 0, :2] - alone[0, 0, :2]).norm()) < 0.05  # 1 px = 0.05 in [-1, 1]
    sigmoid_centroid = torch.sigmoid(logits).flatten(2) @ grid_centres(40, 40) / torch.sigmoid(logits).sum()
    assert float((sigmoid_centroid[0, 0] - alone[0, 0, :2]).norm()) > 0.4  # a sigmoid centroid moves 9 px


def test_role_pooling_starts_as_the_mean_and_takes_a_role_per_sample():
    model = keypoint_model()
    head = model.spatial
    g = torch.Generator().manual_seed(2)
    q = torch.randn(3, 5, head.role_key.in_features, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    mean = (q * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(head.pool(q, mask, 0), mean)  # zero queries: uniform attention
    with torch.no_grad():
        head.role_query.copy_(torch.randn(2, q.shape[-1], generator=g) * 3)
    per_sample = head.pool(q, mask, torch.tensor([0, 1, 1]))
    torch.testing.assert_close(per_sample[0], head.pool(q, mask, 0)[0])
    torch.testing.assert_close(per_sample[1:], head.pool(q, mask, 1)[1:])
    assert not torch.allclose(head.pool(q, mask, 0), head.pool(q, mask, 1))
    # padded words get no weight: changing them changes nothing
    q2 = q.clone()
    q2[0, 3:] = 100.0
    torch.testing.assert_close(head.pool(q2, mask, 1)[0], head.pool(q, mask, 1)[0])
    with pytest.raises(ValueError, match="2 roles"):
        head.pool(q, mask, 2)


def test_a_role_means_what_its_words_mean_alone():
    """With the words' own embeddings, context only chooses which words name the role: the
    pooled phrase is a weighted sum of context-free vectors, so "yellow dish" in a command
    contributes exactly what it contributes said alone."""
    model = keypoint_model()
    tok = model.tokenize(["put the red cube on the yellow dish", "the yellow dish"])
    with torch.no_grad():
        txt = model.encode_text(**tok)
    assert txt.words is not None
    # "yellow" is token 7 of the command and token 2 of the phrase: the same own embedding,
    # different contextual features
    torch.testing.assert_close(txt.words[0, 7], txt.words[1, 2])
    assert not torch.allclose(txt.tokens[0, 7], txt.tokens[1, 2])
    head = model.spatial
    lexical = model.lexical_proj(txt.words)
    g = torch.Generator().manual_seed(3)
    q1 = torch.randn(2, txt.mask.shape[1], lexical.shape[-1], generator=g)
    q2 = torch.randn(2, txt.mask.shape[1], lexical.shape[-1], generator=g)
    # zero role queries: uniform weights whatever the context, so the phrase depends on the words alone
    torch.testing.assert_close(head.pool(q1, txt.mask, 1, lexical), head.pool(q2, txt.mask, 1, lexical))
    with torch.no_grad():
        head.role_query.copy_(torch.randn(2, lexical.shape[-1], generator=g) * 3)
    w = (head.role_key(q1) @ head.role_query[1] / lexical.shape[-1] ** 0.5).masked_fill(~txt.mask, float("-inf"))
    expected = torch.einsum("bt,btd->bd", w.softmax(1), head.norm_w(lexical))
    torch.testing.assert_close(head.pool(q1, txt.mask, 1, lexical), expected)


def test_the_policy_reads_the_keypoints_and_needs_them():
    model = keypoint_model()
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8, generator=g)
    tok = model.tokenize(["put the red cube on the blue plate", "push the green block left"])
    state = torch.randn(2, 4, generator=g)
    with torch.no_grad():
        vis, txt = model.encode_image(images), model.encode_text(**tok)
        own = model.role_keypoints(vis, txt)
        assert own.shape == (2, 2, 3) and bool(((own[..., :2] >= -1) & (own[..., :2] <= 1)).all())
        torch.testing.assert_close(model.act(vis, txt, state), model.act(vis, txt, state, own))
        moved = own.clone()
        moved[:, 1, :2] = -moved[:, 1, :2]
        assert not torch.allclose(model.act(vis, txt, state, own), model.act(vis, txt, state, moved))
        patches, words = model.patch_proj(vis.patches), model.word_proj(txt.tokens)
        with pytest.raises(ValueError, match="2 keypoints"):
            model.policy(patches, words, txt.mask, state)


def test_keypoint_switches_refuse_what_they_cannot_do():
    cfg = ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")
    cfg.heads.fine_channels = 8
    with pytest.raises(ValueError, match="role_pool"):
        type(cfg.heads)(fine_channels=8, policy_keypoints=True)
    with pytest.raises(ValueError, match="keypoint_teacher"):
        ObjectiveWeights(keypoint_teacher=1.5)
    from vla_align_ros.training.trainer import TrainConfig

    with pytest.raises(ValueError, match="role_pool"):
        TrainConfig(objective=ObjectiveWeights(target=1.0)).check_heads()
    with pytest.raises(ValueError, match="policy_keypoints"):
        TrainConfig(objective=ObjectiveWeights(geometry=1.0)).check_heads()
    plain = TrimodalModel(cfg)  # one role: asking for the place is an error, not a silent mean
    with pytest.raises(ValueError, match="role_pool"):
        plain.spatial.pool(torch.zeros(1, 2, plain.embed_dim), torch.ones(1, 2, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="role_pool"):
        plain.spatial.pool(torch.zeros(1, 2, plain.embed_dim), torch.ones(1, 2, dtype=torch.bool), torch.tensor([0]))


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kp_bags") / "b"
    record_episodes(d, episodes=3, seed=3, families=["place", "pick", "pick_then_place"], image_size=(48, 48),
                    progress=False)
    return d


@pytest.fixture(scope="module")
def samples(bag):
    episodes, _ = read_episodes([bag])
    return episodes, episodes_to_samples(episodes, 4, NAMES)


def test_target_masks_are_where_the_step_puts_its_object(samples):
    episodes, s = samples
    start = 0
    for ep in episodes:
        sl = slice(start, start + len(ep))
        start += len(ep)
        goal = ep.task["subgoals"][0]
        target = goal.get("target")
        if not target:  # a pick: no place
            assert not bool(s.has_target[sl].any()) and not bool(s.target_masks[sl].any())
            continue
        label = NAMES.index(target) + 1
        lab = torch.from_numpy(ep.labels)
        has = s.has_target[sl]
        assert bool(has.float().mean() > 0.5)
        assert torch.equal(s.target_masks[sl][has], lab[has] == label)
        assert not bool((s.target_masks[sl] & s.masks[sl]).any())  # never the object itself
    sub = s.subset(torch.tensor([0, 5]))
    assert torch.equal(sub.target_masks, s.target_masks[[0, 5]])


def test_teacher_frames_take_the_true_keypoints_and_the_geometry_frames_are_deterministic(samples):
    _, s = samples
    model = keypoint_model(sim=True)
    tokens = TokenTable(model, list(s.texts) + [t for st in s.step_texts for t in st] + list(s.phrase_texts))
    idx = torch.arange(0, len(s), max(len(s) // 8, 1))[:8]
    b = make_batch(s, idx, tokens, 3, torch.device("cpu"))
    with torch.no_grad():
        vis, txt = model.encode_image(b.images), model.encode_text(b.input_ids, b.attention_mask)
        own = model.role_keypoints(vis, txt)
        assert torch.equal(policy_keypoints(model, b, vis, txt), own)  # no teacher
        b.teacher = torch.ones(len(idx), dtype=torch.bool)
        taught = policy_keypoints(model, b, vis, txt)
    true = true_keypoints(torch.stack([b.masks, b.target_masks], 1))
    assert torch.equal(taught[b.has_mask, 0], true[b.has_mask, 0])
    assert torch.equal(taught[~b.has_mask, 0], own[~b.has_mask, 0])
    geo = GeometryFrames(s)
    assert len(geo.frames) == int(s.has_mask.sum()) and geo.keypoints.shape == (len(geo.frames), 2, 3)
    one, two = make_batch(s, idx, tokens, 3, torch.device("cpu")), make_batch(s, idx, tokens, 3, torch.device("cpu"))
    geo.fill(one, 8, seed=0, step=5, rank=0, world=1, device=torch.device("cpu"))
    geo.fill(two, 8, seed=0, step=5, rank=1, world=2, device=torch.device("cpu"))
    torch.testing.assert_close(two.geo_state, one.geo_state[4:])  # rank 1 of 2 takes the second half
    b.geo_state, b.geo_keypoints, b.geo_actions = one.geo_state, one.geo_keypoints, one.geo_actions
    model.train()
    out = compute_losses(model, b, ObjectiveWeights(target=1.0, geometry=1.0, phrase=1.0))
    for term in ("target", "geometry", "phrase", "policy"):
        assert torch.isfinite(out[term]) and float(out[term].detach()) > 0, term
    out["geometry"].backward()
    assert model.policy.direct[0].weight.grad is not None
    assert model.policy.decoder.layers[0].linear1.weight.grad is None  # geometry trains the direct path only


def test_a_keypoint_run_trains_and_its_report_separates_policy_and_grounding(bag, tmp_path):
    """A short run with every keypoint switch, then ``vla-align eval``'s metrics for the place and
    the action error given the true centres, and the role plot."""
    from vla_align_ros.config import from_dict
    from vla_align_ros.training.report import evaluate_run
    from vla_align_ros.training.trainer import TrainConfig, train

    raw = {"model": {"vision": {"kind": "hf", "hf_model_type": "siglip", "image_size": 32, "patch_size": 8,
                                "hidden_size": 32, "num_layers": 1, "num_heads": 2},
                     "text": {"kind": "hf", "max_length": 24, "hidden_size": 32, "num_layers": 1, "num_heads": 2},
                     "action": {"horizon": 4, "action_dim": 7, "state_dim": 9, "hidden_size": 32},
                     "projection": {"kind": "mlp", "embed_dim": 32, "hidden_size": 64},
                     "heads": {"num_heads": 2, "policy_layers": 1, "max_steps": 3, "fine_channels": 4,
                               "role_pool": True, "policy_keypoints": True}},
           "objective": {"phrase": 1.0, "target": 1.0, "geometry": 1.0, "geometry_batch": 32},
           "data": {"hold_out": ["family=pick"], "val_fraction": 0.0},
           "steps": 4, "batch_size": 16, "lr": 0.002, "warmup": 1, "checkpoint_every": 10}
    res = train([bag], from_dict(TrainConfig, raw), tmp_path / "run", progress=False)
    for row in res["log"]:
        for term in ("target", "geometry", "policy"):
            assert row[term] > 0 and np.isfinite(row[term]), (term, row)
    m = evaluate_run(tmp_path / "run", [bag], tmp_path / "report", max_frames=60)
    seen = m["seen"]
    assert 0.0 <= seen["target_pointing_accuracy"] <= 1.0 and 0.0 <= seen["target_mask_iou"] <= 1.0
    assert seen["action_error_ratio_true_keypoints"] > 0
    assert "action_error_ratio_true_keypoints" in m["summary"]["seen"]
    assert (tmp_path / "report" / "role_keypoints.png").stat().st_size > 10_000
    assert "told the true keypoints" in (tmp_path / "report" / "report.md").read_text()
