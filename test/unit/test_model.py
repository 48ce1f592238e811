"""Encoders, heads and checkpoints: shapes, behaviour, real pretrained weights, and clear
errors for every broken checkpoint."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vla_align_ros.config import ModelConfig, TextConfig, VisionConfig
from vla_align_ros.model import (CheckpointError, TrimodalModel, decode_monotonic_steps, decode_segment, efficientnet_lite0_weights_path,
                                 load_checkpoint, masks_to_boxes, save_checkpoint)
from vla_align_ros.model.text import TextEncoder
from conftest import MODEL_CONFIGS



@pytest.fixture(scope="module")
def tiny() -> TrimodalModel:
    torch.manual_seed(0)
    return TrimodalModel(ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")).eval()


def batch(model: TrimodalModel, b: int = 3):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (b, 48, 80, 3), dtype=torch.uint8, generator=g)  # resized inside
    tok = model.tokenize(["pick up the red cube", "push the blue ball to the left", "grab the wedge"][:b])
    actions = torch.randn(b, 8, 4, generator=g)
    state = torch.randn(b, 4, generator=g)
    return images, tok, actions, state


@pytest.mark.parametrize("hf_type, tokens_first", [("siglip", 0), ("clip", 1), ("dinov2", 1)])
def test_hf_vision_backbones_give_patch_grid(hf_type, tokens_first):
    cfg = ModelConfig(vision=VisionConfig(hf_model_type=hf_type), text=TextConfig(kind="hf"))
    model = TrimodalModel(cfg).eval()
    images, tok, actions, state = batch(model)
    vis = model.encode_image(images)
    assert vis.grid == (8, 8) and vis.patches.shape == (3, 64, 64)
    emb = model(images, tok["input_ids"], tok["attention_mask"], actions, state)
    for z in emb.as_dict().values():
        assert z.shape == (3, 128)
        torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


def test_heads_shapes_and_masks(tiny):
    images, tok, actions, state = batch(tiny)
    with torch.no_grad():
        vis = tiny.encode_image(images)
        txt = tiny.encode_text(**tok)
        g = tiny.ground(vis, txt, (48, 80))
        chunk = tiny.act(vis, txt, state)
    assert g.mask_logits.shape == (3, 48, 80) and g.patch_logits.shape == (3, 8, 8)
    assert g.score.shape == (3,) and ((g.score >= 0) & (g.score <= 1)).all()
    assert g.word_patch.shape[0] == 3 and g.word_patch.shape[2] == 64
    assert chunk.shape == (3, 8, 4) and torch.isfinite(chunk).all()


def test_spatial_head_mask_follows_the_patch_that_matches_the_phrase(tiny):
    """Make one patch identical to the phrase vector: the mask peaks there after upsampling."""
    head = tiny.spatial
    torch.manual_seed(0)
    patches = torch.randn(1, 16, 128) * 0.1
    words = torch.randn(1, 3, 128)
    with torch.no_grad():
        for lin in (head.query_mlp, head.patch_mlp):  # identity-like MLPs for this check
            for m in lin:
                if isinstance(m, torch.nn.Linear):
                    m.weight.copy_(torch.eye(128))
                    m.bias.zero_()
        head.cross.out_proj.weight.zero_()
        head.cross.out_proj.bias.zero_()
        patches[0, 5] = head.norm_q(words).mean(1)[0] * 5
        out = head(patches, (4, 4), words, torch.ones(1, 3, dtype=torch.bool), (32, 32))
    assert int(out.patch_logits.flatten().argmax()) == 5
    peak = divmod(int(out.mask_logits[0].flatten().argmax()), 32)
    assert 8 <= peak[0] < 16 and 8 <= peak[1] < 16  # patch (1, 1) covers rows/cols 8..15


def test_temporal_head_and_segment_decoding(tiny):
    steps = F.normalize(torch.randn(2, 3, 128), dim=-1)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    st = tiny.temporal.step_state(torch.randn(2, 128), steps, mask)
    assert st.step_logits.shape == (2, 3) and torch.isinf(st.step_logits[0, 2])
    assert ((st.progress >= 0) & (st.progress <= 1)).all()
    start, end = tiny.temporal.localize(torch.randn(2, 10, 128), torch.ones(2, 10, dtype=torch.bool), torch.randn(2, 128))
    assert start.shape == end.shape == (2, 10)
    s = torch.tensor([[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0]])
    e = torch.tensor([[3.0, 0.0, 4.0, 0.0], [0.0, 8.0, 0.0, 0.0]])
    seg = decode_segment(s, e, torch.ones(2, 4, dtype=torch.bool))
    assert seg.tolist() == [[1, 2], [3, 3]]  # end never before start


def test_monotonic_step_decoding_never_goes_back():
    # Per-frame argmax flickers 0,1,0,1,1: the decoded sequence switches once and stays.
    p = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9]])
    assert p.argmax(1).tolist() == [0, 1, 0, 1, 1]
    assert decode_monotonic_steps(p.log()).tolist() == [0, 0, 0, 1, 1]
    three = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [0, 1.0, 0]])
    path = decode_monotonic_steps(three)
    assert path.tolist() == [0, 1, 2, 2]  # a weak late vote for step 1 does not undo step 2
    masked = torch.tensor([[0.0, 1.0, float("-inf")]] * 3)  # a padded step is never chosen
    assert decode_monotonic_steps(masked).tolist() == [1, 1, 1]


def test_fine_features_sharpen_masks_to_the_pixel():
    """With the fine branch, mask logits vary within a patch; without it they are a smooth
    upsampling of the patch grid."""
    cfg = ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")
    cfg.heads.fine_channels = 8
    torch.manual_seed(0)
    model = TrimodalModel(cfg).eval()
    images, tok, _, _ = batch(model, 2)
    with torch.no_grad():
        vis = model.encode_image(images)
        assert vis.fine is not None and vis.fine.shape == (2, 8, 32, 32)  # half of the 64 px backbone input
        # Where only the embedding is read (the motions of the segment loss) the branch is skipped.
        coarse = model.encode_image(images, fine=False)
        assert coarse.fine is None and torch.equal(coarse.pooled, vis.pooled) and torch.equal(coarse.patches, vis.patches)
        g = model.ground(vis, model.encode_text(**tok), (64, 64))
        plain = model.spatial(model.patch_proj(vis.patches), vis.grid, model.word_proj(model.encode_text(**tok).tokens),
                              tok["attention_mask"].bool(), (64, 64))
    assert g.mask_logits.shape == plain.mask_logits.shape == (2, 64, 64)
    # Bilinear upsampling of the patch grid is piecewise linear: its second differences vanish
    # except on the lines through patch centres. Fine masks follow the pixels.
    bend = lambda m: float(m.diff(dim=-1).diff(dim=-1).abs().mean())  # noqa: E731
    assert bend(g.mask_logits) > 3 * bend(plain.mask_logits)  # measured: 4.8x


def test_policy_sees_where_the_phrase_object_is():
    """With policy_relevance the action chunk depends on the spatial head's patch match: zeroing
    the learned relevance direction changes nothing, scaling it changes the chunk."""
    cfg = ModelConfig.from_yaml(MODEL_CONFIGS / "tiny.yaml")
    cfg.heads.policy_relevance = True
    torch.manual_seed(0)
    model = TrimodalModel(cfg).eval()
    images, tok, _, state = batch(model)
    with torch.no_grad():
        vis, txt = model.encode_image(images), model.encode_text(**tok)
        base = model.act(vis, txt, state)
        model.policy.relevance_emb.fill_(1.0)
        moved = model.act(vis, txt, state)
    assert base.shape == moved.shape == (3, 8, 4)
    assert not torch.allclose(base, moved)
    model.train()
    chunk = model.act(model.encode_image(images), model.encode_text(**tok), state)
    chunk.sum().backward()
    assert model.spatial.patch_mlp[0].weight.grad is not None  # the policy loss reaches the spatial head


def test_masks_to_boxes():
    m = torch.zeros(2, 5, 6, dtype=torch.bool)
    m[0, 1:3, 2:5] = True
    assert masks_to_boxes(m).tolist() == [[2, 1, 4, 2], [-1, -1, -1, -1]]


def test_checkpoint_round_trip_is_exact(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "ck", metadata={"note": "test"})
    again = load_checkpoint(tmp_path / "ck").eval()
    images, tok, actions, state = batch(tiny)
    with torch.no_grad():
        a = tiny(images, tok["input_ids"], tok["attention_mask"], actions, state)
        b = again(images, tok["input_ids"], tok["attention_mask"], actions, state)
    for k in ("vision", "text", "action"):
        torch.testing.assert_close(getattr(a, k), getattr(b, k), rtol=0, atol=0)
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["metadata"] == {"note": "test"}


@pytest.fixture()
def saved(tiny, tmp_path) -> Path:
    return save_checkpoint(tiny, tmp_path / "ck")


def test_truncated_weights_fail_clearly(saved):
    w = saved / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="sha256 mismatch for model.safetensors"):
        load_checkpoint(saved)
    manifest = json.loads((saved / "manifest.json").read_text())
    from vla_align_ros.model.checkpoint import sha256_file

    manifest["files"]["model.safetensors"] = sha256_file(w)  # even with a matching hash
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_checkpoint(saved)


def test_missing_manifest_means_incomplete(saved):
    (saved / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(saved)


def test_wrong_shapes_and_keys_fail_clearly(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    from vla_align_ros.model.checkpoint import sha256_file

    state = load_file(str(saved / "model.safetensors"))
    state["proj_action.net.0.weight"] = torch.zeros(3, 3)
    state.pop("policy.queries")
    state["surprise.weight"] = torch.zeros(1)
    save_file(state, str(saved / "model.safetensors"))
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = sha256_file(saved / "model.safetensors")
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(saved)
    msg = str(err.value)
    assert "missing keys ['policy.queries']" in msg and "unexpected keys ['surprise.weight']" in msg
    assert "proj_action.net.0.weight: file (3, 3)" in msg


class _Boom:
    def __reduce__(self):
        return (Path("/tmp/vla_align_pickle_ran").touch, ())


def test_pickle_checkpoints_are_refused(tmp_path):
    p = tmp_path / "evil"
    p.mkdir()
    (p / "model.pt").write_bytes(pickle.dumps({"w": _Boom()}))
    marker = Path("/tmp/vla_align_pickle_ran")
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="refusing a pickle checkpoint"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="refusing a pickle checkpoint"):
        load_checkpoint(p / "model.pt")
    assert not marker.exists()


def test_minilm_pretrained_text_encoder_knows_synonyms():
    enc = TextEncoder(TextConfig(kind="minilm")).eval()
    with torch.no_grad():
        tok = enc.tokenize(["pick up the red cube", "grab the red block", "open the drawer", "the weather is nice"])
        z = F.normalize(enc(**tok).pooled, dim=-1)
    sim = z @ z.T
    assert enc.out_dim == 384
    assert float(sim[0, 1]) > float(sim[0, 2]) + 0.1 and float(sim[0, 1]) > float(sim[0, 3]) + 0.2


def test_efficientnet_lite0_loads_its_shipped_imagenet_weights():
    cfg = ModelConfig(vision=VisionConfig(kind="efficientnet_lite0", image_size=128), text=TextConfig(kind="hf"))
    model = TrimodalModel(cfg).eval()
    shipped = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.vision.backbone.net._conv_stem.weight, shipped["_conv_stem.weight"])
    with torch.no_grad():
        vis = model.encode_image(torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8))
    assert vis.grid == (8, 8) and vis.patches.shape == (2, 64, 112) and vis.pooled.shape == (2, 1280)


def test_text_tokenisation_is_bounded(tiny):
    tok = tiny.tokenize(["word " * 5000])
    assert tok["input_ids"].shape[1] == tiny.cfg.text.max_length


def test_action_space_metadata_reads_both_forms():
    from vla_align_ros.model.action_space import ActionSpace, ActionSpaceError
    space = ActionSpace.ee_twist_gripper("panda_link0")
    assert ActionSpace.from_metadata(json.loads(json.dumps(space.to_dict()))) == space
    # checkpoints written before the space was recorded: the twist space in the simulator's world
    assert ActionSpace.from_metadata("ee_twist_gripper") == ActionSpace.ee_twist_gripper("world")
    with pytest.raises(ActionSpaceError, match="no dimensions recorded"):
        ActionSpace.from_metadata("joint_delta")
    with pytest.raises(ActionSpaceError, match="malformed"):
        ActionSpace.from_metadata({"kind": "joint_delta"})
