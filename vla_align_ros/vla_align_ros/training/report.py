"""``vla-align eval``: a trained run + recordings -> metrics.json, report.md and PNG plots,
on seen and held-out compositions, each metric beside chance, an untrained model or a
predict-the-mean baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import from_dict
from ..data.bag_dataset import BagSamples, episodes_to_samples, split_episodes
from ..data.bags import BagTopics, JointLayout, read_episodes
from ..model.action_space import checkpoint_action_space
from ..metrics import alignment, hubness, mask_iou, modality_gap, pointing_accuracy, temporal_iou, uniformity
from ..metrics.retrieval import (CORRECTIONS, chance_recall_at_1, coarse_bound_r1, mean_r1,
                                 pairwise_retrieval)
from ..model.checkpoint import load_checkpoint
from ..model.factory import create_model
from ..model.heads import decode_monotonic_steps, decode_segment
from ..model.trimodal import TrimodalModel
from ..robots.config import RobotConfig
from .affordance_eval import affordance_metrics
from .objective import policy_keypoints
from .run_dir import ReportDir, RunDir
from .tokens import TokenTable
from .trainer import DataConfig, TrainConfig, make_batch

OPPOSITES = (("pick up the red cube", "put down the red cube"), ("push the blue cube left", "push the blue cube right"),
             ("lift the green block", "lower the green block"))


def _subsample(s: BagSamples, n: int) -> BagSamples:
    if len(s) <= n:
        return s
    return s.subset(torch.linspace(0, len(s) - 1, n).round().long().unique())


@torch.no_grad()
def _forward_all(model: TrimodalModel, s: BagSamples, tokens: TokenTable, max_steps: int, bs: int = 64) -> dict[str, Any]:
    model.eval()
    out: dict[str, list] = {k: [] for k in ("vision", "text", "action", "mask_logits", "step_logits", "step_online",
                                            "pred", "phrase_logits", "target_logits", "pred_true_keypoints")}
    last_step: dict[int, int] = {}  # per episode, the online step so far (frames come in time order)
    for i in range(0, len(s), bs):
        idx = torch.arange(i, min(i + bs, len(s)))
        b = make_batch(s, idx, tokens, max_steps, torch.device("cpu"))
        vis = model.encode_image(b.images)
        txt = model.encode_text(b.input_ids, b.attention_mask)
        state = model.normalize_state(b.state)
        emb = model.embed(vis, txt, model.normalize_actions(b.actions), state)
        for k in ("vision", "text", "action"):
            out[k].append(getattr(emb, k))
        bsz, k = b.step_ids.shape[:2]
        st = model.encode_steps(b.step_ids, b.step_attn)
        steps = model.proj_text(st.pooled).view(bsz, k, -1)
        logits = model.active_step(emb.vision, state, steps, b.step_valid, b.events).step_logits
        out["step_logits"].append(F.pad(logits, (0, max_steps - k), value=float("-inf")))
        # The step as the running node takes it: this frame's best, never going back.
        online = logits.argmax(1)  # (b,)
        for j, e in enumerate(s.episode[idx].tolist()):
            last_step[e] = online[j] = max(int(online[j]), last_step.get(e, 0))
        out["step_online"].append(online)
        # What the spatial and policy heads read: that step's phrase, or the whole instruction.
        head = model.step_text(st, online) if model.cfg.heads.ground_steps else txt
        h, w = b.masks.shape[-2:]
        out["mask_logits"].append(model.ground(vis, head, (h, w)).mask_logits)
        if model.cfg.heads.role_pool:  # the instruction's place ("... on the yellow dish")
            out["target_logits"].append(model.ground(vis, head, (h, w), role=1).mask_logits)
        if b.phrase_ids is not None:  # each frame's object named on its own (what the rules baseline asks)
            phr = model.encode_text(b.phrase_ids, b.phrase_attn)
            out["phrase_logits"].append(model.ground(vis, phr, (h, w)).mask_logits)
        out["pred"].append(model.denormalize_actions(model.act(vis, head, state)))
        if model.cfg.heads.policy_keypoints and b.target_masks is not None:
            # The same policy told where the object and the place truly are: what is left of its
            # error is the policy's, the rest is the grounding's.
            b.teacher = torch.ones(len(idx), dtype=torch.bool)
            kp = policy_keypoints(model, b, vis, head)
            out["pred_true_keypoints"].append(model.denormalize_actions(model.act(vis, head, state, kp)))
    return {k: torch.cat(v) for k, v in out.items() if v}


def decode_steps(s: BagSamples, step_logits: torch.Tensor) -> torch.Tensor:
    """Active step of every frame: per episode, the best sequence that never goes back
    (``decode_monotonic_steps``) over the frames in time order. -> (N,) long."""
    out = step_logits.argmax(1)
    for sel in s.episode_frames().values():
        out[sel] = decode_monotonic_steps(step_logits[sel])
    return out


def _temporal_ious(s: BagSamples, step_pred: torch.Tensor) -> list[float]:
    """Per multi-step episode and step: IoU in time between where the model says the step is
    active and where it truly is."""
    ious = []
    for e in s.episode.unique().tolist():
        sel = (s.episode == e).nonzero().flatten()
        if len(s.step_texts[int(sel[0])]) < 2:
            continue
        t = s.time_in_episode[sel]
        for k in range(len(s.step_texts[int(sel[0])])):
            true_t, pred_t = t[s.step_index[sel] == k], t[step_pred[sel] == k]
            if len(true_t) == 0:
                continue
            seg_true = torch.tensor([[true_t.min(), true_t.max()]])
            seg_pred = torch.tensor([[pred_t.min(), pred_t.max()]]) if len(pred_t) else torch.tensor([[0.0, 0.0]])
            ious.append(float(temporal_iou(seg_pred, seg_true)[0]))
    return ious


@torch.no_grad()
def _segment_ious(model: TrimodalModel, s: BagSamples, f: dict[str, Any], tokens: TokenTable,
                  max_steps: int) -> tuple[list[float], dict[int, torch.Tensor]]:
    """Temporal grounding over each recorded multi-step motion: every step phrase -> the frames
    where it happens (``localize_steps`` + ``decode_segment``), IoU in time with the truth.
    -> (IoUs, {episode: (K, 2) predicted [start, end] seconds})."""
    ious, segments = [], {}
    for e, sel in s.episode_frames().items():
        steps = s.step_texts[int(sel[0])][:max_steps]
        if len(steps) < 2 or len(sel) < 2:
            continue
        t = s.time_in_episode[sel]
        seq = model.frame_features(f["vision"][sel], model.normalize_state(s.state[sel].float()))[None]  # (1, T, D)
        ids, attn = tokens(steps)
        step_emb = model.proj_text(model.encode_text(ids, attn).pooled)[None]  # (1, K, D)
        mask = torch.ones(1, len(sel), dtype=torch.bool)
        start, end = model.temporal.localize_steps(seq, mask, step_emb)  # (1, K, T)
        k = len(steps)
        seg = decode_segment(start[0], end[0], mask.expand(k, -1))  # (K, 2) frame indices
        segments[e] = t[seg]
        for j in range(k):
            true_t = t[s.step_index[sel] == j]
            if len(true_t):
                ious.append(float(temporal_iou(t[seg[j]][None], torch.stack([true_t.min(), true_t.max()])[None])[0]))
    return ious, segments


def episode_embeddings(emb: dict[str, torch.Tensor], episode: torch.Tensor, ids: torch.Tensor
                       ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """{modality: (N, D)} frame embeddings, (N,) episode and task ids -> {modality: (E, D)} the
    normalised mean over each episode's frames, and (E,) the episodes' task ids."""
    eps, inverse = episode.unique(return_inverse=True)  # (E,), (N,)
    counts = torch.zeros(len(eps)).index_add_(0, inverse, torch.ones(len(episode)))  # (E,)
    out = {}
    for k, v in emb.items():
        total = torch.zeros(len(eps), v.shape[1]).index_add_(0, inverse, v.float())  # (E, D)
        out[k] = F.normalize(total / counts[:, None], dim=-1)
    # an episode is one task: any of its frames gives the id
    return out, torch.zeros(len(eps), dtype=ids.dtype).scatter_(0, inverse, ids)


def _split_metrics(model: TrimodalModel, untrained: TrimodalModel, s: BagSamples, tokens: TokenTable,
                   max_steps: int, action_mean: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    f = _forward_all(model, s, tokens, max_steps)
    u = _forward_all(untrained, s, tokens, max_steps)
    emb = {k: f[k] for k in ("vision", "text", "action")}
    m: dict[str, Any] = {"frames": len(s), "episodes": int(s.episode.unique().numel()),
                         "distinct_tasks": int(s.ids.unique().numel()), "chance_r1": chance_recall_at_1(s.ids, s.ids)}
    m["retrieval"] = pairwise_retrieval(emb, s.ids)
    m["retrieval_untrained"] = {k: v["r1"] for k, v in pairwise_retrieval({k: u[k] for k in emb}, s.ids).items()}
    # The same at the level of motions (what an action can express: pick / place on a plate /
    # stack / push left / push right ...), where text<->action retrieval is well posed.
    m["distinct_motions"] = int(s.motion_ids.unique().numel())
    m["chance_r1_motion"] = chance_recall_at_1(s.motion_ids, s.motion_ids)
    m["retrieval_motion"] = {k: v["r1"] for k, v in pairwise_retrieval(emb, s.motion_ids).items()}
    # The same at the level of episodes: each episode's frames (and chunks) averaged into one
    # embedding, which sees the whole motion where one frame may show only the start of it.
    ep_emb, ep_ids = episode_embeddings(emb, s.episode, s.ids)
    m["episodes_retrieved"] = len(ep_ids)
    m["chance_r1_episode"] = chance_recall_at_1(ep_ids, ep_ids)
    m["retrieval_episode"] = {k: v["r1"] for k, v in pairwise_retrieval(ep_emb, ep_ids).items()}
    # The best task-level R@1 any model can expect between text and action on these frames, since
    # an action tells tasks apart only as far as their motions differ.
    bound = coarse_bound_r1(s.ids, s.motion_ids)
    m["r1_bound_text_action"] = {"text->action": bound["fine_to_coarse"], "action->text": bound["coarse_to_fine"]}
    m["modality_gap"] = {"vision-text": modality_gap(emb["vision"], emb["text"]),
                         "vision-action": modality_gap(emb["vision"], emb["action"]),
                         "text-action": modality_gap(emb["text"], emb["action"])}
    m["alignment"] = {"vision-text": alignment(emb["vision"], emb["text"]),
                      "vision-action": alignment(emb["vision"], emb["action"])}
    m["uniformity"] = {k: uniformity(v) for k, v in emb.items()}
    m["hubness_text_to_vision"] = hubness(emb["text"], emb["vision"], k=10)
    # Retrieval-time corrections of hubness and of the modality gap, on the same embeddings.
    m["retrieval_corrected"] = {c: {k: v["r1"] for k, v in pairwise_retrieval(emb, s.ids, c).items()}
                                for c in CORRECTIONS if c != "none"}
    m["hubness_corrected"] = {c: hubness(emb["text"], emb["vision"], k=10, correction=c)["skewness"]
                              for c in CORRECTIONS if c != "none"}
    sel = s.has_mask
    if bool(sel.any()):
        logits = f["mask_logits"][sel]
        m["mask_iou"] = float(mask_iou(logits > 0, s.masks[sel]).mean())
        m["pointing_accuracy"] = float(pointing_accuracy(logits, s.masks[sel]).mean())
        m["mask_iou_untrained"] = float(mask_iou(u["mask_logits"][sel] > 0, s.masks[sel]).mean())
    if "phrase_logits" in f and s.phrase_masks is not None:
        sel = s.has_phrase
        if bool(sel.any()):
            logits = f["phrase_logits"][sel]
            m["phrase_mask_iou"] = float(mask_iou(logits > 0, s.phrase_masks[sel]).mean())
            m["phrase_pointing_accuracy"] = float(pointing_accuracy(logits, s.phrase_masks[sel]).mean())
    if "target_logits" in f and s.has_target is not None and bool(s.has_target.any()):
        sel = s.has_target
        logits = f["target_logits"][sel]
        m["target_mask_iou"] = float(mask_iou(logits > 0, s.target_masks[sel]).mean())
        m["target_pointing_accuracy"] = float(pointing_accuracy(logits, s.target_masks[sel]).mean())
    # Temporal grounding: each step phrase localised over the whole recorded motion (offline) ...
    seg_ious, f["segments"] = _segment_ious(model, s, f, tokens, max_steps)
    m["temporal_iou"] = float(np.mean(seg_ious)) if seg_ious else None
    # ... and the online view: the active step frame by frame, decoded so it never goes back.
    step_pred = decode_steps(s, f["step_logits"])
    f["step_pred"] = step_pred
    ious = _temporal_ious(s, step_pred)
    m["temporal_iou_online"] = float(np.mean(ious)) if ious else None
    m["step_accuracy"] = float((step_pred == s.step_index.clamp(max=max_steps - 1)).float().mean())
    m["step_accuracy_online"] = float((f["step_online"] == s.step_index.clamp(max=max_steps - 1)).float().mean())
    err = (f["pred"] - s.actions).abs().mean()
    base = (action_mean - s.actions).abs().mean()
    m["action_l1"] = float(err)
    m["action_l1_mean_baseline"] = float(base)
    m["action_error_ratio"] = float(err / base.clamp(min=1e-9))
    if "pred_true_keypoints" in f:
        m["action_error_ratio_true_keypoints"] = float((f["pred_true_keypoints"] - s.actions).abs().mean()
                                                       / base.clamp(min=1e-9))
    return m, f


@torch.no_grad()
def _language_ties(model: TrimodalModel) -> dict[str, Any]:
    def cos(m_embed, a: str, b: str) -> float:
        z = m_embed([a, b])
        return float(F.cosine_similarity(z[0:1], z[1:2]))

    trained = {f"{a} / {b}": cos(model.embed_text, a, b) for a, b in OPPOSITES}
    out: dict[str, Any] = {"trained": trained}
    try:
        from ..config import TextConfig
        from ..model.text import TextEncoder

        enc = TextEncoder(TextConfig(kind="minilm")).eval()

        def minilm(texts):
            return enc(**enc.tokenize(texts)).pooled

        out["pretrained_minilm"] = {f"{a} / {b}": cos(minilm, a, b) for a, b in OPPOSITES}
    except (FileNotFoundError, OSError) as e:
        out["pretrained_minilm"] = f"unavailable ({e})"
    return out


def evaluate_run(run: Path, bags: Sequence[str | Path], out: Path, max_frames: int = 1500,
                 topics: Sequence[str] = ()) -> dict[str, Any]:
    """Metrics, plots and report.md of a finished run on ``bags``, read with the run's own topic
    names (``topics``: ``KEY=NAME`` overrides, as ``--topic`` gives them) and joints; the bags'
    actions must be in the space the checkpoint was trained on."""
    run_dir = RunDir.of(run)
    ckpt = run_dir.checkpoint
    if not ckpt.exists():
        raise ValueError(f"{run_dir}: no finished checkpoint/ (is training still running or was it stopped?)")
    model = load_checkpoint(ckpt).eval()
    raw_cfg = run_dir.read_config()
    raw_cfg["data"]["topics"] = BagTopics(**raw_cfg["data"].get("topics", {}))
    data_cfg = DataConfig(**raw_cfg["data"])
    data_cfg.topics = data_cfg.topics.with_overrides(topics)
    train_cfg = from_dict(TrainConfig, {k: v for k, v in raw_cfg.items() if k not in ("data", "model")})
    torch.manual_seed(train_cfg.seed)
    untrained = create_model(model.cfg, load_pretrained=False).eval()
    for name in ("action_mean", "action_std", "state_mean", "state_std"):
        getattr(untrained, name).copy_(getattr(model, name))
    episodes, stats = read_episodes(bags, data_cfg.topics, data_cfg.slop, JointLayout.from_robot(data_cfg.robot))
    trained = checkpoint_action_space(ckpt)
    for sp in {ep.action_space for ep in episodes}:  # the frame is not compared: old checkpoints lack it
        if (sp.kind, sp.names) != (trained.kind, trained.names):
            raise ValueError(f"{list(map(str, bags))}: actions are {sp.describe()}, the checkpoint was trained on "
                             f"{trained.describe()}")
    split = split_episodes(episodes, data_cfg.hold_out, 0.0, train_cfg.seed)
    from ..sim.scene import OBJECTS

    names = data_cfg.object_names or [o.name for o in OBJECTS]
    robot = RobotConfig.load(data_cfg.robot)
    kinematics = robot.kinematics()
    h = model.cfg.action.horizon
    out.mkdir(parents=True, exist_ok=True)
    groups = {"seen": split["train"], "held_out": split["held_out"]}
    metrics: dict[str, Any] = {"bags": [str(b) for b in bags], "sync": stats.as_dict(), "hold_out": data_cfg.hold_out,
                               "profile": data_cfg.profile}
    forwards: dict[str, Any] = {}
    samples: dict[str, BagSamples] = {}
    for name, idx in groups.items():
        if not idx:
            continue
        s = _subsample(episodes_to_samples([episodes[i] for i in idx], h, names, model.cfg.action.gripper_dims,
                                           model.cfg.action.velocity),
                       max_frames)
        tokens = TokenTable(model, list(s.texts) + [t for st in s.step_texts for t in st] + list(s.phrase_texts))
        metrics[name], forwards[name] = _split_metrics(model, untrained, s, tokens, model.cfg.heads.max_steps,
                                                       model.action_mean)
        metrics[name]["affordance"] = affordance_metrics(model, [episodes[i] for i in idx], names, robot, kinematics,
                                                         max_frames, train_cfg.seed)
        samples[name] = s
    metrics["language"] = _language_ties(model)
    metrics["summary"] = _summary(metrics)
    report = ReportDir(out)
    report.metrics.write_text(json.dumps(metrics, indent=2))
    from .plots import write_plots

    pngs = write_plots(out, run_dir.read_log(), samples, forwards)
    report.report.write_text(_markdown(metrics, pngs))
    return metrics


COMPARED = (("pick pixel on the step's object", "pick_accuracy"), ("place pixel on the step's target", "place_accuracy"),
            ("published object mask IoU", "published_mask_iou"), ("the map's own mask IoU (logits > 0)", "map_mask_iou"),
            ("temporal IoU", "temporal_iou"),
            ("push: peak from the push start, px", "push_start_error_px"))


def write_comparison(path: Path, runs: dict[str, dict[str, Any]]) -> str:
    """Several runs' headline grounding figures on the same recordings, one Markdown table."""
    names = list(runs)
    lines = ["| figure | split | " + " | ".join(f"{n} ({runs[n].get('profile', '?')})" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for label, key in COMPARED:
        for split in ("seen", "held_out"):
            vals = [runs[n].get("summary", {}).get(split, {}).get(key) for n in names]
            lines.append(f"| {label} | {split} | " + " | ".join(_fmt(v) if v is not None else "-" for v in vals) + " |")
    table = "\n".join(lines) + "\n"
    path.write_text(table)
    return table


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name in ("seen", "held_out"):
        if name not in m:
            continue
        s = m[name]
        out[name] = {"chance_r1": round(s["chance_r1"], 3),
                     "r1": {k: round(v["r1"], 3) for k, v in s["retrieval"].items()},
                     "chance_r1_motion": round(s["chance_r1_motion"], 3),
                     "r1_motion": {k: round(v, 3) for k, v in s["retrieval_motion"].items()},
                     "r1_bound_text_action": {k: round(v, 3) for k, v in s["r1_bound_text_action"].items()},
                     "chance_r1_episode": round(s["chance_r1_episode"], 3),
                     "r1_episode": {k: round(v, 3) for k, v in s["retrieval_episode"].items()},
                     "mask_iou": s.get("mask_iou"), "pointing_accuracy": s.get("pointing_accuracy"),
                     "phrase_mask_iou": s.get("phrase_mask_iou"),
                     "phrase_pointing_accuracy": s.get("phrase_pointing_accuracy"),
                     "target_mask_iou": s.get("target_mask_iou"),
                     "target_pointing_accuracy": s.get("target_pointing_accuracy"),
                     "temporal_iou": s.get("temporal_iou"), "action_error_ratio": round(s["action_error_ratio"], 3),
                     "action_error_ratio_true_keypoints": s.get("action_error_ratio_true_keypoints"),
                     "pick_accuracy": s["affordance"].get("pick_accuracy"),
                     "place_accuracy": s["affordance"].get("place_accuracy"),
                     "published_mask_iou": s["affordance"].get("mask_iou"),
                     "map_mask_iou": s["affordance"].get("map_mask_iou"),
                     "push_start_error_px": s["affordance"].get("push_start_error_px")}
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _markdown(m: dict[str, Any], pngs: list[str]) -> str:
    lines = ["# Evaluation report", "", f"Bags: {', '.join(m['bags'])}  ", f"Held-out compositions: {m['hold_out']}", ""]
    splits = [s for s in ("seen", "held_out") if s in m]
    lines += ["| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    rows = [("frames", lambda s: s["frames"]), ("episodes", lambda s: s["episodes"]),
            ("distinct tasks", lambda s: s["distinct_tasks"]), ("chance R@1", lambda s: s["chance_r1"])]
    for d in m[splits[0]]["retrieval"]:
        rows.append((f"R@1 {d} (untrained)", lambda s, d=d: f"{s['retrieval'][d]['r1']:.3f} ({s['retrieval_untrained'][d]:.3f})"))
        rows.append((f"mean rank {d}", lambda s, d=d: s["retrieval"][d]["mean_rank"]))
    rows.append(("best expected R@1 text->action / action->text (an action shows the motion, not the colours)",
                 lambda s: " / ".join(f"{v:.3f}" for v in s["r1_bound_text_action"].values())))
    rows.append(("episodes (each one embedding: the mean of its frames) / chance R@1",
                 lambda s: f"{s['episodes_retrieved']} / {s['chance_r1_episode']:.3f}"))
    for d in m[splits[0]]["retrieval_episode"]:
        rows.append((f"episode-level R@1 {d}", lambda s, d=d: s["retrieval_episode"][d]))
    rows.append(("distinct motions / chance R@1", lambda s: f"{s['distinct_motions']} / {s['chance_r1_motion']:.3f}"))
    for d in m[splits[0]]["retrieval_motion"]:
        rows.append((f"motion-level R@1 {d}", lambda s, d=d: s["retrieval_motion"][d]))
    rows += [("pick pixel (the pick map's peak) on the step's object", lambda s: s["affordance"].get("pick_accuracy")),
             ("place pixel (the place map's peak) on the step's target", lambda s: s["affordance"].get("place_accuracy")),
             ("published object mask IoU (grown from the peak; before the grasp)",
              lambda s: s["affordance"].get("mask_iou")),
             ("the pick map's own mask IoU (logits > 0)", lambda s: s["affordance"].get("map_mask_iou")),
             ("push: pick map's peak from the push start, px", lambda s: s["affordance"].get("push_start_error_px")),
             ("mask IoU (untrained)", lambda s: f"{_fmt(s.get('mask_iou'))} ({_fmt(s.get('mask_iou_untrained'))})"),
             ("pointing accuracy", lambda s: s.get("pointing_accuracy")),
             ("object phrase alone: mask IoU", lambda s: s.get("phrase_mask_iou")),
             ("object phrase alone: pointing accuracy", lambda s: s.get("phrase_pointing_accuracy")),
             ("the instruction's place: mask IoU", lambda s: s.get("target_mask_iou")),
             ("the instruction's place: pointing accuracy", lambda s: s.get("target_pointing_accuracy")),
             ("temporal IoU: step phrases localised in the motion", lambda s: s.get("temporal_iou")),
             ("temporal IoU: active step per frame (monotonic decode of the recording)",
              lambda s: s.get("temporal_iou_online")),
             ("step accuracy per frame (monotonic decode of the recording)", lambda s: s["step_accuracy"]),
             ("step accuracy as the node runs (never going back)", lambda s: s.get("step_accuracy_online")),
             ("action L1 / predict-the-mean", lambda s: f"{s['action_l1']:.4f} / {s['action_l1_mean_baseline']:.4f}"),
             ("action error / predict-the-mean, told the true keypoints", lambda s: s.get("action_error_ratio_true_keypoints")),
             ("modality gap V-T", lambda s: s["modality_gap"]["vision-text"]),
             ("hubness skew T->V", lambda s: s["hubness_text_to_vision"]["skewness"])]
    for c in m[splits[0]].get("retrieval_corrected", {}):
        rows.append((f"R@1 mean of 6 directions, {c.replace('_', ' ')} at retrieval time",
                     lambda s, c=c: mean_r1(s["retrieval_corrected"][c])))
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(fn(m[s])) for s in splits) + " |")
    lang = m["language"]
    lines += ["", "## Opposite commands: cosine similarity of their text embeddings", "",
              "| pair | trained | pretrained MiniLM |", "|---|---|---|"]
    for k, v in lang["trained"].items():
        pre = lang["pretrained_minilm"].get(k) if isinstance(lang["pretrained_minilm"], dict) else None
        lines.append(f"| {k} | {v:.3f} | {_fmt(pre)} |")
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in pngs]
    return "\n".join(lines) + "\n"
