"""``vla-align demo --train``: the whole product on the simulator, end to end. Record scripted-expert
demonstrations to a rosbag2, train the default recipe on them (shortened), then run the closed
loop: sim_node, perception_node and policy_node as separate processes over DDS, a sequence of
instructions, each outcome and the success rates printed, a PNG strip of an episode with the
mask overlay. Finished stages are reused on a second run (the bag, the trained checkpoint)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from .paths import package_config


def run_pipeline_demo(out: Path, record_episodes_n: int = 60, train_steps: int = 300, loop_episodes: int = 6,
                      timeout_s: float = 30.0, seed: int = 5000, progress: bool = True,
                      log: Callable[[str], None] = print, policy: str = "affordance",
                      split: str = "mixed") -> dict[str, Any]:
    from .ros.closed_loop import run_closed_loop
    from .sim.record import record_episodes
    from .training.run_dir import RunDir
    from .training.trainer import TrainConfig, train

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    bag = out / "demonstrations"
    t0 = time.perf_counter()
    if (bag / "metadata.yaml").is_file():
        log(f"[demo 1/3] demonstrations: reusing {bag}")
    else:
        log(f"[demo 1/3] recording {record_episodes_n} scripted-expert episodes to {bag}")
        record_episodes(bag, record_episodes_n, seed=0, progress=progress, overwrite=True, tasks_per_scene=3)
    timings["record_s"] = round(time.perf_counter() - t0, 1)

    run = RunDir(out / "run")
    cfg = TrainConfig.from_yaml(package_config("train/sim_tiny.yaml"))
    full_steps, cfg.steps = cfg.steps, train_steps
    cfg.checkpoint_every = max(train_steps // 3, 1)
    t0 = time.perf_counter()
    same = run.config.is_file() and run.read_config().get("steps") == train_steps
    if same and run.finished():
        log(f"[demo 2/3] trained model: reusing {run.checkpoint}")
    else:
        if run.path.exists() and not same:
            shutil.rmtree(run.path)  # another demo length: start over
        log(f"[demo 2/3] training config/train/sim_tiny.yaml for {train_steps} steps (the full recipe: "
            f"{full_steps}) into {run}")
        train([bag], cfg, run.path, resume=run.resume_state() is not None, progress=progress)
    timings["train_s"] = round(time.perf_counter() - t0, 1)

    log(f"[demo 3/3] closed loop: sim_node + perception_node + policy_node over DDS, {loop_episodes} episodes")
    t0 = time.perf_counter()
    summary = run_closed_loop(run.path, out / "closed_loop", episodes=loop_episodes, seed=seed,
                              hold_out=cfg.data.hold_out, timeout_s=timeout_s, progress=progress,
                              policy=policy, split=split)
    timings["closed_loop_s"] = round(time.perf_counter() - t0, 1)
    summary["timings"] = timings
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary
