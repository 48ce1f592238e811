"""``vla-align bench``: every benchmark in one run, one JSON document, a short table.

Ratios (node over bare model, trimodal over two-tower, chunked over dense, ingestion over bare
rosbags) are taken from measurements in the same run, so machine noise mostly cancels.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import ModelConfig, merge_overrides
from ..paths import config_file, dds_env, package_config

# The quick profile (``make test``): the default recipe's shapes, shrunk; every section runs.
QUICK_MODEL = {"vision": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_layers": 1, "num_heads": 2},
               "text": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 24},
               "heads": {"num_heads": 2, "fine_channels": 8}}


@dataclass
class BenchSettings:
    frames: int = 100
    roundtrip_frames: int = 200
    node_frames: int = 100
    train_batch: int = 64
    train_steps: int = 5
    siglip_ns: tuple[int, ...] = (1024, 4096, 8192, 16384, 32768)
    siglip_dense_max: int = 16384  # dense at 32,768 needs about 20 GB on CPU: more than this machine has
    record_episodes: int = 20
    sim_episodes: int = 20
    sim_steps: int = 300
    large_model: bool = True  # the SigLIP-B/16-224-sized model in the model and training sections
    large_train_batch: int = 8

    @classmethod
    def quick(cls) -> "BenchSettings":
        return cls(frames=10, roundtrip_frames=20, node_frames=8, train_batch=8, train_steps=2, siglip_ns=(256, 1024),
                   siglip_dense_max=1024, record_episodes=2, sim_episodes=2, sim_steps=20, large_model=False)

    @classmethod
    def cuda(cls) -> "BenchSettings":
        """The issue's GPU shapes: batch 256 (sim_tiny) and 128 (SigLIP-B), SigLIP up to 65,536."""
        return cls(frames=200, train_batch=256, train_steps=10, large_train_batch=128,
                   siglip_ns=(1024, 4096, 16384, 32768, 65536), siglip_dense_max=65536)


# Sections that need only PyTorch, and those that need ROS 2 (rclpy), MuJoCo or rosbags.
BARE_SECTIONS = ("model", "training", "loss", "siglip_memory")
ROS_SECTIONS = ("frame", "ros", "ingest", "sim")
SECTIONS = BARE_SECTIONS + ROS_SECTIONS
_NEEDS = {"frame": ("rclpy",), "ros": ("rclpy",), "siglip_memory": (), "ingest": ("rosbags", "mujoco"),
          "sim": ("mujoco",)}


def _missing(modules: tuple[str, ...]) -> list[str]:
    import importlib.util

    out = []
    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except (ImportError, ValueError):
            out.append(m)
    return out


def load_model_config(config: str | Path | None, quick: bool) -> ModelConfig:
    """The model of ``config`` (default: the shipped recipe), shrunk for ``quick``. A text tower
    built from config reads the shipped model's tokenizer, so no tokenizer package is needed."""
    from ..paths import shipped_model

    d = ModelConfig.from_yaml(config_file(config or "train/sim_tiny.yaml")).to_dict()
    if quick:
        d = merge_overrides(d, QUICK_MODEL)
    text = d["text"]
    if text.get("kind") == "hf" and not text.get("name_or_path") and not text.get("tokenizer_path"):
        text["tokenizer_path"] = str(shipped_model() / "checkpoint" / "tokenizer")
    return ModelConfig.from_dict(d)


def run_bench(config: str | Path | None = None, checkpoint: str | Path | None = None, bag: str | Path | None = None,
              quick: bool = False, device: str = "cpu", log: Callable[[str], None] = print,
              sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    """Every requested section into one JSON document. A section whose modules are not installed
    (rclpy, MuJoCo, rosbags on a bare GPU machine) is listed under ``skipped`` with the reason."""
    from ..model.checkpoint import load_checkpoint, save_checkpoint
    from ..model.factory import create_model
    from ..paths import checkpoint_dir
    from . import model_bench

    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown bench sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    on_cuda = device.startswith("cuda")
    s = BenchSettings.quick() if quick else BenchSettings.cuda() if on_cuda else BenchSettings()
    work = Path(tempfile.mkdtemp(prefix="vla_bench_"))
    os.environ.update(dds_env())
    torch.manual_seed(0)
    if checkpoint:
        model = load_checkpoint(checkpoint_dir(str(checkpoint)))
        ckpt = checkpoint_dir(str(checkpoint))
    else:
        model = create_model(load_model_config(config, quick))
        ckpt = str(save_checkpoint(model, work / "checkpoint"))
    cfg = model.cfg
    # built only for the sections that time it (about 200 M parameters)
    large = create_model(model_bench.siglip_b16_sized_config()) \
        if s.large_model and {"model", "training"} & set(sections) else None
    out: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "device": device,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "timed_model": {"source": str(checkpoint) if checkpoint else str(config or "config/train/sim_tiny.yaml") + (
                      " (quick: shrunk)" if quick else ""),
                  "weights": "trained" if checkpoint else "random (timing only)",
                  "parameters": sum(p.numel() for p in model.parameters()), "vision_px": cfg.vision.image_size,
                  "vision_hidden": cfg.vision.hidden_size, "vision_layers": cfg.vision.num_layers},
        "quick": quick, "sections": list(sections), "skipped": {},
    }

    def section(name: str, fn: Callable[[], Any]) -> None:
        if name not in sections:
            return
        missing = _missing(_NEEDS.get(name, ()))
        if missing:
            out["skipped"][name] = f"not installed here: {', '.join(missing)}"
            log(f"[bench] {name}: skipped ({out['skipped'][name]})")
            return
        log(f"[bench] {name} ...")
        t0 = time.perf_counter()
        out[name] = fn()
        log(f"[bench] {name}: {time.perf_counter() - t0:.1f} s")

    models = {"sim_tiny": model} | ({"siglip_b16_224": large} if large is not None else {})
    section("model", lambda: model_bench.model_section(models, device, s.frames, log=log))
    section("training", lambda: model_bench.training_section(
        {"sim_tiny": (model, s.train_batch)} | ({"siglip_b16_224": (large, s.large_train_batch)}
                                                if large is not None else {}),
        device, s.train_steps))
    section("loss", lambda: model_bench.loss_section(s.siglip_ns, s.siglip_dense_max,
                                                     "cuda" if on_cuda else "cpu"))

    def frame() -> dict[str, Any]:
        import rclpy

        from ..inference import InferenceSession
        from .frame import frame_latency

        session = InferenceSession(model, device)
        session.profile = True  # the encode/heads split
        rclpy.init()
        try:
            node = rclpy.create_node("vla_bench_frame")
            res = {"640x480": frame_latency(session, (480, 640), s.frames, node=node)}
            sim_px = 128
            res[f"{sim_px}x{sim_px}"] = frame_latency(session, (sim_px, sim_px), s.frames, node=node)
            node.destroy_node()
        finally:
            rclpy.try_shutdown()
            session.close()
        return res

    section("frame", frame)

    def ros() -> dict[str, Any]:
        from .ros_latency import run_in_process

        res = {"round_trip_default_transports": run_in_process("roundtrip", dds_env(profile=False),
                                                                frames=s.roundtrip_frames),
               "round_trip_shipped_profile": run_in_process("roundtrip", dds_env(), frames=s.roundtrip_frames),
               "profile": str(package_config("dds/fastdds_localhost.xml"))}
        res["policy_node"] = run_in_process("node", dds_env(), checkpoint=ckpt, frames=s.node_frames)
        return res

    section("ros", ros)

    def memory() -> dict[str, Any]:
        from .memory import measure_in_process, siglip_memory

        dev = "cuda" if on_cuda else "cpu"
        res = siglip_memory([n for n in s.siglip_ns if n <= s.siglip_dense_max], device=dev)
        big = [n for n in s.siglip_ns if n > s.siglip_dense_max]
        if big:
            res["chunked_only"] = [{"n": n, "chunked_peak_mib": measure_in_process("chunked", n, 128, 1024, dev)["peak_mib"]}
                                   for n in big]
        return res

    section("siglip_memory", memory)

    def ingest() -> dict[str, Any]:
        from .ingest import ingest_rate

        path = Path(bag) if bag else work / "bench_bag"
        if not bag:
            from ..sim.record import record_episodes

            record_episodes(path, s.record_episodes, seed=900, progress=False)
        return ingest_rate(path)

    section("ingest", ingest)

    def sim() -> dict[str, Any]:
        from ..sim.bench import run_sim_bench

        return run_sim_bench(episodes=s.sim_episodes, timed_steps=s.sim_steps)

    section("sim", sim)
    out["targets"] = targets(out)
    return out


def targets(r: dict[str, Any]) -> dict[str, Any]:
    """The targets this run's figures can be checked against (those of a section that did not
    run are absent). The GPU ones apply on an H100/H200."""
    out: dict[str, Any] = {}
    gpu = str(r["machine"]["device"]).startswith("cuda")
    if "ros" in r:
        node = r["ros"]["policy_node"]["node_over_model_p50"]
        out["node_over_model_p50"] = {"value": node, "target": "<= 1.3", "met": node <= 1.3}
    if "ingest" in r:
        ingest = r["ingest"]["ingest_over_bare_rate"]
        out["ingest_over_bare_rate"] = {"value": ingest, "target": ">= 0.8", "met": ingest >= 0.8}
    if "siglip_memory" in r:
        rows = r["siglip_memory"]["rows"]
        out["siglip_chunked_over_dense_memory_at_largest_dense_n"] = {
            "n": rows[-1]["n"], "value": rows[-1]["chunked_over_dense"], "target": "<= 1/16 at N=32768",
            "loss_abs_diff": rows[-1]["loss_abs_diff"], "same_value_1e-6": rows[-1]["loss_abs_diff"] <= 1e-6}
    if "loss" in r:
        timed = [row for row in r["loss"]["rows"] if "chunked_over_dense_time" in row]
        if timed:
            row = timed[-1]
            out["siglip_chunked_over_dense_time"] = {"n": row["n"], "value": row["chunked_over_dense_time"],
                                                     "target": "<= 1.25", "met": row["chunked_over_dense_time"] <= 1.25}
    if "training" in r:
        limit = 1.15 if gpu else 1.10
        for name, t in r["training"].items():
            v = t["trimodal_over_two_tower_step"]
            out[f"trimodal_over_two_tower_step/{name}"] = {"value": v, "target": f"<= {limit}", "met": v <= limit}
    if "model" in r and gpu:
        for name, limit in (("sim_tiny", 1.5), ("siglip_b16_224", 2.5)):
            best = (r["model"].get(name) or {}).get("fastest")
            if best:
                row = r["model"][name]["variants"][best["variant"]]
                out[f"model_p50_ms/{name}"] = {"variant": best["variant"], "value": best["p50_ms"],
                                               "target": f"<= {limit}", "met": best["p50_ms"] <= limit,
                                               "p99_over_p50": row["p99_over_p50"],
                                               "p99_met": (row["p99_over_p50"] or 99) <= 1.5}
    return out


def table(r: dict[str, Any]) -> str:
    """A short human-readable summary of the sections that ran."""
    lines: list[str] = []
    for name, m in r.get("model", {}).items():
        lines.append(f"model {name} ({m['parameters'] / 1e6:.1f} M params)   p50 ms   p99 ms   graph captures/replays")
        for k, v in m["variants"].items():
            if "model_ms" in v:
                g = v.get("graph") or {}
                lines.append(f"  {k:<30} {v['model_ms']['p50']:>7.2f}  {v['model_ms']['p99']:>7.2f}"
                             + (f"   {g['captures']}/{g['replays']}" if g else ""))
            else:
                lines.append(f"  {k:<30} {v['error'][:70]}")
    if "frame" in r:
        f = r["frame"]["640x480"]["stages_ms"]
        lines.append("stage (640x480, in-process)   p50 ms   p99 ms")
        for k in ("conversion", "encode", "heads", "safety", "publish", "total"):
            if k in f:
                lines.append(f"  {k:<27} {f[k]['p50']:>7.2f}  {f[k]['p99']:>7.2f}")
        lines.append(f"frames per second (in-process)  {r['frame']['640x480']['fps']}")
    if "ros" in r:
        ros = r["ros"]
        lines += [f"image round trip p50/p99 ms     default {ros['round_trip_default_transports']['round_trip_ms']['p50']:.2f}/"
                  f"{ros['round_trip_default_transports']['round_trip_ms']['p99']:.2f}   shipped profile "
                  f"{ros['round_trip_shipped_profile']['round_trip_ms']['p50']:.2f}/"
                  f"{ros['round_trip_shipped_profile']['round_trip_ms']['p99']:.2f}",
                  f"policy_node end to end p50/p99  {ros['policy_node']['end_to_end_ms']['p50']:.2f}/"
                  f"{ros['policy_node']['end_to_end_ms']['p99']:.2f} ms "
                  f"({ros['policy_node']['node_over_model_p50']}x the bare model)"]
    for name, t in r.get("training", {}).items():
        lines.append(f"training samples/s {name:<14} two-tower {t['two_tower']['samples_per_s']}  trimodal "
                     f"{t['trimodal']['samples_per_s']}  (step ratio {t['trimodal_over_two_tower_step']})")
    for row in r.get("loss", {}).get("rows", []):
        dense = f"dense {row['dense_ms']:>9.2f} ms" if "dense_ms" in row else "dense         -"
        lines.append(f"SigLIP N={row['n']:<6} time         {dense}  chunked {row['chunked_ms']:>9.2f} ms"
                     + (f"  ({row['chunked_over_dense_time']:.2f}x)" if "chunked_over_dense_time" in row else ""))
    if "siglip_memory" in r:
        for row in r["siglip_memory"]["rows"]:
            lines.append(f"SigLIP N={row['n']:<6} peak MiB     dense {row['dense_peak_mib']:>8.1f}  chunked "
                         f"{row['chunked_peak_mib']:>7.1f}  ({row['chunked_over_dense']:.3f}, |dloss| "
                         f"{row['loss_abs_diff']:.1e})")
        for row in r["siglip_memory"].get("chunked_only", []):
            lines.append(f"SigLIP N={row['n']:<6} peak MiB     dense        -  chunked {row['chunked_peak_mib']:>7.1f}")
    if "ingest" in r:
        i = r["ingest"]
        lines.append(f"bag ingestion msgs/s             ours {i['ingest_msgs_per_s']}  bare rosbags "
                     f"{i['bare_msgs_per_s']}  ({i['ingest_over_bare_rate']}x)")
    if "sim" in r:
        sm = r["sim"]
        lines.append(f"simulator steps/s                {sm['physics_steps_per_s_no_render']} physics only, "
                     f"{sm['steps_per_s_rgb_collision_meshes']} with a {sm['render_px']} px render")
    for name, why in r.get("skipped", {}).items():
        lines.append(f"{name}: skipped ({why})")
    return "\n".join(lines)


def write(r: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(r, indent=2, sort_keys=False))
    return p
