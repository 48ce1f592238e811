"""Simulator benchmark (JSON): control steps per second with a render every step, and the
scripted expert's success rate per task family."""

from __future__ import annotations

import platform
import time
from typing import Any


from .env import TabletopEnv
from .expert import ScriptedExpert, run_expert
from .tasks import FAMILIES


def run_sim_bench(episodes: int = 200, render_size: int = 96, seed: int = 1000, timed_steps: int = 400) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": platform.machine(), "render_px": render_size}
    for visual in ("collision", "full"):
        with TabletopEnv(image_size=(render_size, render_size), visual=visual) as env:
            env.reset(seed=seed, family="place")
            actions = ScriptedExpert(env).actions()
            t0 = time.perf_counter()
            n = 0
            while n < timed_steps:
                a = next(actions, None)
                if a is None:
                    env.reset(seed=seed + n, family="place")
                    actions = ScriptedExpert(env).actions()
                    continue
                env.command_twist(a.twist)
                env.command_gripper(a.gripper)
                env.step()
                env.render(segmentation=False)
                n += 1
            rgb_rate = n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(100):
                env.step()
                env.render(segmentation=True)
            out[f"steps_per_s_rgb_{visual}_meshes"] = round(rgb_rate, 1)
            out[f"steps_per_s_rgb_seg_{visual}_meshes"] = round(100 / (time.perf_counter() - t0), 1)
    per_family: dict[str, list[int]] = {f: [0, 0] for f in FAMILIES}
    t0 = time.perf_counter()
    steps = 0
    with TabletopEnv(render=False) as env:
        for i in range(episodes):
            task = env.reset(seed=seed + i, family=FAMILIES[i % len(FAMILIES)])
            ok = run_expert(env)
            steps += env.steps_taken
            per_family[task.family][0] += int(ok)
            per_family[task.family][1] += 1
    out["physics_steps_per_s_no_render"] = round(steps / (time.perf_counter() - t0), 1)
    out["expert"] = {f: {"success": s, "episodes": n, "rate": round(s / max(n, 1), 3)} for f, (s, n) in per_family.items()}
    total = sum(s for s, _ in per_family.values())
    out["expert_success_rate"] = round(total / max(episodes, 1), 4)
    out["mean_steps_per_episode"] = round(steps / max(episodes, 1), 1)
    return out
