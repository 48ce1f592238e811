"""Training from rosbag2 recordings: bags -> samples -> the full objective -> checkpoints.

* deterministic: batches are a pure function of (seed, step), and the global RNG state is
  saved with the optimiser, so ``resume`` continues exactly where a stopped run left off;
* checkpoints: safetensors + JSON + sha256 manifest, written atomically; the final model lands
  in ``RUN_DIR/checkpoint`` only when training finished, so nothing half-trained looks complete;
* AMP (bf16 autocast) on CUDA; torchrun DDP with negatives gathered across ranks.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..config import ModelConfig, from_dict
from ..data.attributes import AttributeNegatives
from ..data.bag_dataset import BagSamples, episodes_to_samples, split_episodes
from ..data.bags import BagTopics, Episode, JointLayout, read_episodes
from ..model.action_space import ActionSpace
from ..model.checkpoint import _atomic_write_bytes, save_checkpoint, verify_checkpoint
from ..model.factory import create_model
from ..model.heads import true_keypoints
from ..model.trimodal import TrimodalModel
from .loop import adamw, dist_info, run_steps
from .objective import Batch, ObjectiveWeights, SequenceBatch, compute_losses
from .run_dir import RunDir
from .techniques import CurriculumConfig, RobustnessConfig, curriculum_indices, instruction_difficulty
from .tokens import TokenTable


PROFILES = ("robot_observable", "ground_truth")


@dataclass
class DataConfig:
    slop: float = 0.02
    hold_out: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    topics: BagTopics = field(default_factory=BagTopics)
    object_names: list[str] = field(default_factory=list)  # label order of the segmentation topic
    seq_episodes: int = 4  # multi-step motions per step for temporal localisation (0 = off)
    seq_len: int = 32  # frames drawn from each motion
    # What training reads: "robot_observable" (what a real robot records; labels from the
    # demonstrations themselves, data.keyframes) or "ground_truth" (the simulator's masks and task).
    profile: str = "ground_truth"
    robot: str = "panda"  # robot config (config/robots/NAME.yaml or a path): description, frames, table

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"data.profile={self.profile!r}: must be one of {PROFILES}")
        if self.seq_episodes < 0 or self.seq_len < 2:
            raise ValueError(f"data.seq_episodes={self.seq_episodes}, data.seq_len={self.seq_len}: "
                             "need seq_episodes >= 0 and seq_len >= 2")
        if self.slop <= 0:
            raise ValueError(f"data.slop={self.slop}: must be > 0")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"data.val_fraction={self.val_fraction}: must be in [0, 1)")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    data: DataConfig = field(default_factory=DataConfig)
    robust: RobustnessConfig = field(default_factory=RobustnessConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 20
    seed: int = 0
    checkpoint_every: int = 100
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name}={getattr(self, name)}: must be > 0")
        if self.lr <= 0:
            raise ValueError(f"train.lr={self.lr}: must be > 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device={self.device!r}: must be auto, cpu or cuda")

    def check_heads(self) -> None:
        """The objective's terms that need a head the model does not have (checked before a
        run starts; a config read back for evaluation may carry the objective alone)."""
        if self.objective.target > 0 and not self.model.heads.role_pool:
            raise ValueError("objective.target grounds the instruction's place role: set model.heads.role_pool: true")
        if self.objective.geometry > 0 and not self.model.heads.policy_keypoints:
            raise ValueError("objective.geometry trains the policy's keypoint path: set model.heads.policy_keypoints: true")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping")
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_batch(samples: BagSamples, idx: Tensor, tokens: TokenTable, max_steps: int, device: torch.device,
               negatives: list[str] | None = None) -> Batch:
    """``negatives``: len(idx) * R one-attribute variants of the instructions, row-major."""
    ids, attn = tokens([samples.texts[i] for i in idx.tolist()])
    steps = [samples.step_texts[i][:max_steps] for i in idx.tolist()]
    k = max(len(s) for s in steps)
    flat = [s[j] if j < len(s) else "" for s in steps for j in range(k)]
    s_ids, s_attn = tokens(flat)
    b = len(idx)
    valid = torch.tensor([[j < len(s) for j in range(k)] for s in steps])
    to = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    phrase: dict[str, Tensor] = {}
    if samples.phrase_masks is not None and samples.phrase_texts:
        p_ids, p_attn = tokens([samples.phrase_texts[i] for i in idx.tolist()])
        phrase = {"phrase_ids": to(p_ids), "phrase_attn": to(p_attn), "phrase_masks": to(samples.phrase_masks[idx]),
                  "has_phrase": to(samples.has_phrase[idx]),
                  "phrase_obj": to(samples.phrase_objects[idx])}
    if samples.target_masks is not None:
        phrase.update(target_masks=to(samples.target_masks[idx]), has_target=to(samples.has_target[idx]))
    if samples.events is not None:
        phrase.update(events=to(samples.events[idx]))
    if samples.pick_px is not None:
        phrase.update(pick_px=to(samples.pick_px[idx]), place_px=to(samples.place_px[idx]))
    if negatives:
        n_ids, n_attn = tokens(negatives)
        phrase.update(neg_ids=to(n_ids), neg_attn=to(n_attn))
    return Batch(**phrase, images=to(samples.images[idx]), input_ids=to(ids), attention_mask=to(attn), ids=to(samples.ids[idx]),
                 motion_ids=to(samples.motion_ids[idx]), actions=to(samples.actions[idx].float()), state=to(samples.state[idx].float()),
                 masks=to(samples.masks[idx]), has_mask=to(samples.has_mask[idx]),
                 step_ids=to(s_ids.view(b, k, -1)), step_attn=to(s_attn.view(b, k, -1)), step_valid=to(valid),
                 step_index=to(torch.minimum(samples.step_index[idx], valid.sum(1) - 1)),  # within the sample's steps
                 progress=to(samples.progress[idx]))


def multi_step_episodes(samples: BagSamples) -> list[Tensor]:
    """Frame indices (in time order) of each episode whose instruction has more than one step."""
    return [sel for sel in samples.episode_frames().values()
            if len(samples.step_texts[int(sel[0])]) > 1 and len(sel) > 1]


def make_sequence_batch(samples: BagSamples, motions: list[Tensor], tokens: TokenTable, count: int, length: int,
                        max_steps: int, seed: int, step: int, device: torch.device) -> SequenceBatch | None:
    """``count`` motions with ``length`` frames each, drawn at jittered even spacing: a pure
    function of (seed, step), like the frame batches."""
    if not motions or count == 0:
        return None
    g = torch.Generator().manual_seed(seed * 7_919 + step)
    picks = torch.randint(len(motions), (count,), generator=g).tolist()
    idx = torch.zeros(count, length, dtype=torch.long)
    mask = torch.zeros(count, length, dtype=torch.bool)
    for i, m in enumerate(picks):
        frames = motions[m]
        n = len(frames)
        if n <= length:
            pos = torch.arange(n)
        else:
            pos = ((torch.arange(length) + torch.rand(length, generator=g)) * (n / length)).long().clamp(max=n - 1)
        idx[i, : len(pos)] = frames[pos]
        mask[i, : len(pos)] = True
    steps = [samples.step_texts[int(motions[m][0])][:max_steps] for m in picks]
    k = max(len(st) for st in steps)
    start = torch.zeros(count, k, dtype=torch.long)
    end = torch.zeros(count, k, dtype=torch.long)
    valid = torch.zeros(count, k, dtype=torch.bool)
    for i in range(count):
        si = samples.step_index[idx[i]].clamp(max=max_steps - 1)
        for j in range(len(steps[i])):
            where = ((si == j) & mask[i]).nonzero().flatten()
            if len(where):
                start[i, j], end[i, j], valid[i, j] = where[0], where[-1], True
    s_ids, s_attn = tokens([st[j] if j < len(st) else "" for st in steps for j in range(k)])
    to = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    return SequenceBatch(images=to(samples.images[idx.flatten()]), state=to(samples.state[idx].float()), mask=to(mask),
                         step_ids=to(s_ids.view(count, k, -1)), step_attn=to(s_attn.view(count, k, -1)),
                         step_valid=to(valid), start=to(start), end=to(end))


def stream_seed(seed: int, step: int, stream: str) -> int:
    """A seed for one named random stream at one step: independent of the other streams at any
    run seed (seed * K + step would make every stream the same at seed 0)."""
    return int(np.random.SeedSequence([seed, step, int.from_bytes(stream.encode(), "little")]).generate_state(1)[0])


class GeometryFrames:
    """Frames for ``objective.geometry``: robot state, true keypoints of the object and the
    place (``true_keypoints`` of their masks) and action chunks, for every training frame whose
    object is in view. Keypoints are computed once here."""

    def __init__(self, samples: BagSamples, chunk: int = 1024) -> None:
        if samples.target_masks is None:
            raise ValueError("objective.geometry needs masks (a segmentation topic in the bags)")
        self.frames = samples.has_mask.nonzero().flatten()  # (G,)
        if len(self.frames) == 0:
            raise ValueError("objective.geometry: no training frame has a mask of its object")
        kps = []
        for i in range(0, len(self.frames), chunk):
            sel = self.frames[i: i + chunk]
            kps.append(true_keypoints(torch.stack([samples.masks[sel], samples.target_masks[sel]], dim=1)))
        self.keypoints = torch.cat(kps)  # (G, 2, 3)
        self.state = samples.state[self.frames].float()
        self.actions = samples.actions[self.frames].float()

    def fill(self, batch: Batch, size: int, seed: int, step: int, rank: int, world: int, device: torch.device) -> None:
        """Put this step's ``size`` frames (this rank's share) into ``batch``: a pure function of
        (seed, step), like the frame batches."""
        g = torch.Generator().manual_seed(stream_seed(seed, step, "geometry"))
        pick = torch.randint(len(self.frames), (size,), generator=g)
        local = size // world
        pick = pick[rank * local: (rank + 1) * local]
        batch.geo_state = self.state[pick].to(device)
        batch.geo_keypoints = self.keypoints[pick].to(device)
        batch.geo_actions = self.actions[pick].to(device)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> Tensor:
    """The global batch of ``step``: a pure function of (seed, step), so a resumed run sees the
    same data as an uninterrupted one."""
    per_epoch = max(n // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[k * batch_size : (k + 1) * batch_size]


def _save_resume_state(run: RunDir, model: TrimodalModel, opt: torch.optim.Optimizer, step: int,
                       log: list[dict[str, float]]) -> None:
    """Model + optimiser + RNG + step, as safetensors + JSON, swapped in atomically."""

    def write(d: Path) -> None:
        save_checkpoint(model, d, metadata={"step": step})
        tensors: dict[str, Tensor] = {"rng_cpu": torch.get_rng_state()}
        for gi, group in enumerate(opt.param_groups):
            for pi, p in enumerate(group["params"]):
                st = opt.state.get(p, {})
                for key, val in st.items():
                    if torch.is_tensor(val):
                        tensors[f"opt.{gi}.{pi}.{key}"] = val.detach().cpu().contiguous().clone().reshape(val.shape)
        save_file(tensors, str(d / "optimizer.safetensors"))
        _atomic_write_bytes(d / "state.json", json.dumps({"step": step, "log": log}).encode())

    run.replace_resume(write)


def _load_resume_state(run: RunDir, model: TrimodalModel, opt: torch.optim.Optimizer) -> tuple[int, list]:
    d = run.resume_state()
    if d is None:
        raise FileNotFoundError(f"{run}: no resume state to continue from")
    verify_checkpoint(d)
    state = load_file(str(d / "model.safetensors"))
    model.load_state_dict(state, strict=True)
    tensors = load_file(str(d / "optimizer.safetensors"))
    torch.set_rng_state(tensors["rng_cpu"])
    for gi, group in enumerate(opt.param_groups):
        for pi, p in enumerate(group["params"]):
            prefix = f"opt.{gi}.{pi}."
            st = {k[len(prefix):]: v.to(p.device) for k, v in tensors.items() if k.startswith(prefix)}
            if st:
                opt.state[p] = st
    meta = json.loads((d / "state.json").read_text())
    return int(meta["step"]), list(meta["log"])


def label_demonstrations(episodes: list, robot_name: str) -> tuple[list, list, list[str]]:
    """Keyframe labels of every episode that has them (data.keyframes) -> (episodes kept, their
    labels, one reason per skipped episode)."""
    from ..data.keyframes import LabelError, label_episode
    from ..robots.config import RobotConfig

    robot = RobotConfig.load(robot_name)
    kinematics = robot.kinematics()
    kept, labels, skipped = [], [], []
    for ep in episodes:
        try:
            labels.append(label_episode(ep, robot, kinematics))
            kept.append(ep)
        except LabelError as e:
            skipped.append(str(e))
    return kept, labels, skipped


def episodes_action_space(episodes: Sequence[Episode]) -> ActionSpace:
    """The one action space every episode's actions are in; ValueError naming the spaces and an
    episode of each when the recordings mix them (twist commands in one, joint trajectories in
    another): one model learns one kind of action."""
    spaces: dict[ActionSpace, Episode] = {}
    for ep in episodes:
        spaces.setdefault(ep.action_space, ep)
    if not spaces:
        raise ValueError("no episodes, so no action space")
    if len(spaces) > 1:
        seen = "; ".join(f"{sp.describe()} (e.g. {ep.bag} episode {ep.index})" for sp, ep in spaces.items())
        raise ValueError(f"the training episodes mix {len(spaces)} action spaces: {seen}; train on recordings of one "
                         f"command kind (or leave a command topic out with --topic KEY=)")
    return next(iter(spaces))


def check_model_fits(cfg: TrainConfig, space: ActionSpace, joints: JointLayout) -> None:
    """ValueError, naming both numbers and the config key to set, when the model's action or
    state width differs from what the recordings give."""
    a = cfg.model.action
    if a.action_dim != space.dim:
        raise ValueError(f"model.action.action_dim={a.action_dim} but the recordings' actions are {space.describe()}, "
                         f"{space.dim} values; set model.action.action_dim: {space.dim} in the training config")
    if a.state_dim != len(joints.names):
        raise ValueError(f"model.action.state_dim={a.state_dim} but the robot config {cfg.data.robot!r} gives "
                         f"{len(joints.names)} joints {list(joints.names)}; set model.action.state_dim: "
                         f"{len(joints.names)} in the training config")


def prepare_data(bags: Sequence[str | Path], cfg: TrainConfig) -> dict[str, Any]:
    """Read, label and split the recordings; the joint-state columns are the robot config's
    joints (arm, then fingers) matched by name, and every episode must share one action space
    that fits the model (``action_space`` in the result)."""
    observable = cfg.data.profile == "robot_observable"
    topics = cfg.data.topics.robot_observable() if observable else cfg.data.topics
    joints = JointLayout.from_robot(cfg.data.robot)
    episodes, stats = read_episodes(bags, topics, cfg.data.slop, joints)
    space = episodes_action_space(episodes)
    check_model_fits(cfg, space, joints)
    demos, skipped = None, []
    if observable:
        t0 = time.perf_counter()
        episodes, demos, skipped = label_demonstrations(episodes, cfg.data.robot)
        kinds = Counter(st.kind for d in demos for st in d.steps)
        print(f"[train] {len(demos)} episodes labelled from their own signals in {time.perf_counter() - t0:.1f} s: "
              + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), flush=True)
        for reason in skipped[:5]:
            print(f"[train] skipped: {reason}", flush=True)
        if skipped:
            print(f"[train] {len(skipped)} of {len(skipped) + len(episodes)} episodes skipped: no labels "
                  "from their own signals", flush=True)
        if not episodes:
            raise ValueError(f"no episode could be labelled from its own signals: {skipped[:3]}")
    split = split_episodes(episodes, cfg.data.hold_out, cfg.data.val_fraction, cfg.seed)
    if not split["train"]:
        raise ValueError(f"no training episodes left after hold-out {cfg.data.hold_out}")
    names = cfg.data.object_names or None
    if names is None:
        from ..sim.scene import OBJECTS  # the simulator's label order, when the bags come from it

        names = [o.name for o in OBJECTS]
    h = cfg.model.action.horizon
    grip, vel = cfg.model.action.gripper_dims, cfg.model.action.velocity
    parts = {k: episodes_to_samples([episodes[i] for i in v], h, names, grip, vel,
                                    None if demos is None else [demos[i] for i in v]) if v else None
             for k, v in split.items()}
    return {"episodes": episodes, "demos": demos, "stats": stats, "split": split, "samples": parts,
            "skipped": skipped, "action_space": space}


def train(bags: Sequence[str | Path], cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
          progress: bool = True, on_progress: Callable[[dict[str, float]], None] | None = None,
          stop_after: int | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train into the run folder ``run_dir`` (``RunDir``: checkpoint/, resume/, train_log.jsonl, split.json,
    train_config.json).
    ``stop_after``: stop (as if interrupted) after that many steps, leaving only the resume state.
    ``should_stop``: polled after every step; when it returns True the resume state of the steps
    done so far is saved and training returns unfinished (``resume=True`` continues it)."""
    cfg.check_heads()
    run = RunDir(run_dir)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # Started by torchrun: one process per GPU (NCCL) or per CPU worker (gloo).
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        if torch.cuda.is_available() and cfg.device != "cpu":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = dist_info()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {world} ranks")
    if cfg.objective.geometry > 0 and (cfg.objective.geometry_batch < 1 or cfg.objective.geometry_batch % world):
        raise ValueError(f"objective.geometry_batch={cfg.objective.geometry_batch} must be >= 1 and divisible by "
                         f"the {world} ranks")
    if run.checkpoint.exists() and not resume:
        raise FileExistsError(f"{run} already holds a finished run; choose another --out or --resume")
    device = torch.device("cuda" if (cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()))
                          else "cpu")
    data = prepare_data(bags, cfg)
    train_s: BagSamples = data["samples"]["train"]
    run.path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model)
    # Normalisation fitted on the training split only.
    a = train_s.actions.reshape(-1, train_s.actions.shape[-1]).float()
    model.action_mean.copy_(a.mean(0))
    model.action_std.copy_(a.std(0).clamp(min=1e-3))
    model.state_mean.copy_(train_s.state.float().mean(0))
    model.state_std.copy_(train_s.state.float().std(0).clamp(min=1e-3))
    model.to(device)
    k_neg = cfg.model.loss.attribute_negatives
    negatives = AttributeNegatives(train_s.texts, cfg.data.hold_out) if k_neg > 0 else None
    tokens = TokenTable(model, list(train_s.texts) + [t for s in train_s.step_texts for t in s]
                        + list(train_s.phrase_texts) + (negatives.all_texts() if negatives else []))
    difficulty = torch.tensor([instruction_difficulty(t, len(st)) for t, st in zip(train_s.texts, train_s.step_texts)]) \
        if cfg.curriculum.until > 0 else None
    geometry = GeometryFrames(train_s) if cfg.objective.geometry > 0 else None
    opt, params = adamw(model, cfg.lr, cfg.weight_decay)
    start, log = 0, []
    if resume and run.resume_state() is not None:
        start, log = _load_resume_state(run, model, opt)
    if rank == 0:
        run.write_split(data["split"])
        run.write_config(cfg.to_dict())
    # Under torchrun the objective runs through DDP (gradients all-reduced); heads that this
    # objective does not train (phrase localisation in time) leave parameters unused.
    ddp = torch.nn.parallel.DistributedDataParallel(_Objective(model), find_unused_parameters=True) if world > 1 else None
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    max_steps = cfg.model.heads.max_steps
    motions = multi_step_episodes(train_s) if cfg.objective.segments > 0 else []
    local = cfg.batch_size // world
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)

    def losses_at(step: int) -> dict[str, Tensor]:
        if difficulty is None:
            glob = batch_indices(len(train_s), cfg.batch_size, cfg.seed, step)
        else:
            glob = curriculum_indices(difficulty, cfg.batch_size, cfg.seed, step, cfg.steps, cfg.curriculum)
        idx = glob[rank * local : (rank + 1) * local]
        negs = negatives.sample([train_s.texts[i] for i in idx.tolist()], k_neg,
                                np.random.default_rng([cfg.seed, step, rank])) if negatives else None
        batch = make_batch(train_s, idx, tokens, max_steps, device, negs)
        batch.offset = rank * local
        if cfg.model.heads.policy_keypoints and cfg.objective.keypoint_teacher > 0:
            g = torch.Generator().manual_seed(stream_seed(cfg.seed, step, "teacher"))
            batch.teacher = (torch.rand(cfg.batch_size, generator=g) < cfg.objective.keypoint_teacher)[
                rank * local: (rank + 1) * local].to(device)
        if geometry is not None:
            geometry.fill(batch, cfg.objective.geometry_batch, cfg.seed, step, rank, world, device)
        model.loss.set_progress(step, cfg.steps)
        # Every rank draws the same motions: their loss (and gradient) is the same on each, so
        # the all-reduced mean equals the one-process value.
        batch.seq = make_sequence_batch(train_s, motions, tokens, cfg.data.seq_episodes, cfg.data.seq_len, max_steps,
                                        cfg.seed, step, device)
        with amp:
            return compute_losses(model, batch, cfg.objective, cfg.robust) if ddp is None \
                else ddp(batch, cfg.objective, cfg.robust)

    def after_step(step: int, row: dict[str, float], rate: float) -> bool:
        """Report progress and save the resume state; True when ``should_stop`` asks to stop."""
        if on_progress is not None and rank == 0:
            on_progress({**row, "steps": cfg.steps, "rate": rate})
        stopping = should_stop is not None and should_stop() and step + 1 < end
        if rank == 0 and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == end or stopping):
            _save_resume_state(run, model, opt, step + 1, log)
        return stopping

    t0 = time.perf_counter()
    model.train()
    end = run_steps(opt, params, start, end, cfg.steps, cfg.lr, cfg.warmup, losses_at, log, progress, after_step)
    finished = end == cfg.steps
    if world > 1:
        dist.barrier()
    if rank == 0:
        run.write_log(log)
        if finished:
            meta = {"steps": cfg.steps, "bags": [str(b) for b in bags], "sync": data["stats"].as_dict(),
                    "split_episodes": {k: len(v) for k, v in data["split"].items()},
                    "profile": cfg.data.profile, "skipped_episodes": len(data["skipped"]),
                    "train_seconds": round(time.perf_counter() - t0, 1),
                    "action_space": data["action_space"].to_dict()}  # model.action_space.checkpoint_action_space

            def write(d: Path) -> None:
                save_checkpoint(model, d, metadata=meta)
                if data["demos"] is not None:  # what the demonstrations taught about acting (policies.affordance)
                    from .skills import skills_from_demonstrations

                    skills_from_demonstrations(data["episodes"], data["demos"], data["split"], cfg.data.robot, model,
                                               seed=cfg.seed).save(d)

            run.replace_checkpoint(write)
    return {"finished": finished, "steps": end, "log": log, "split": data["split"], "sync": data["stats"].as_dict(),
            "skipped": data["skipped"]}


class _Objective(torch.nn.Module):
    """The objective as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model: TrimodalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, weights: ObjectiveWeights, robust: RobustnessConfig) -> dict[str, Tensor]:
        return compute_losses(self.model, batch, weights, robust)
