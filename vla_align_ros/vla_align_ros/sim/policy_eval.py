"""``vla-align rollout``: policies side by side on in-process rollouts (``sim.rollout``), per split:

- ``seen``, ``held_out``, ``multi_step``: the task's own instruction on layouts never trained on
  (seeds from 5000; the run's hold-out patterns decide held_out);
- ``paraphrase``: the same kind of episodes said in words outside the templates
  (``instruction_sets.PARAPHRASES``, its ``tune`` and ``test`` parts), beside the templated
  instruction on the very same episodes;
- ``must_not_move``: questions, negations, small talk and absent objects
  (``instruction_sets.MUST_NOT_MOVE``): success is no motion, with a refusal reason.

Writes ``rollouts.json`` and ``rollouts.md`` (one table, a column per policy)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..training.run_dir import RunDir
from .instruction_sets import MUST_NOT_MOVE, must_not_move, paraphrase
from .rollout import (RolloutResult, SimJointState, check_policy_command_mode, result_row, run_episode, run_hold_out,
                      select_seeds, sim_robot, summarise, write_strip)

SPLITS = ("seen", "held_out", "multi_step", "paraphrase", "must_not_move")


def evaluate_policies(checkpoint: str | Path, policies: Sequence[str], out: str | Path, episodes: int = 50,
                      multi_step_episodes: int = 30, splits: Sequence[str] = SPLITS, seed: int = 5000,
                      image_size: int = 96, log: Callable[[str], None] = print,
                      command_mode: str = "twist") -> dict[str, Any]:
    """``command_mode``: how the commands reach the simulated arm, as policy_node's parameter of
    that name sends them ('twist' or 'joint_trajectory'; ``rollout.SimCommandPath``). A chunk
    policy whose checkpoint's action space that mode cannot carry raises ActionSpaceError before
    its first episode (``rollout.check_policy_command_mode``, policy_node's configure check)."""
    from ..inference import InferenceSession
    from ..policies import make_policy
    from .env import TabletopEnv

    run = RunDir.of(checkpoint)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hold_out = run_hold_out(run.path)
    session = InferenceSession(run.checkpoint)
    n = {"multi_step": multi_step_episodes}
    seeds = {sp: select_seeds(seed, n.get(sp, episodes), sp, hold_out) for sp in ("seen", "held_out", "multi_step")
             if sp in splits}
    if "paraphrase" in splits or "must_not_move" in splits:
        seeds["any"] = list(range(seed, seed + episodes))
    state = SimJointState(session.model.cfg.action.velocity)  # what the chunk head reads

    table: dict[str, dict[str, Any]] = {}
    rows: dict[str, list[dict]] = {}
    with TabletopEnv(image_size=(image_size, image_size)) as env:
        robot = sim_robot(env)
        for name in policies:
            policy = make_policy(name, session, robot)
            check_policy_command_mode(policy, command_mode, robot.joint_names)
            res: dict[str, Any] = {}

            def run_split(key: str, split_seeds: list[int], instruction: Any = None) -> list[RolloutResult]:
                t0 = time.perf_counter()
                out_rows = []
                for i, s in enumerate(split_seeds):
                    text = instruction(i) if instruction is not None else None
                    out_rows.append(run_episode(policy, env, robot, s, text, state=state, command_mode=command_mode))
                rows[f"{name}/{key}"] = [result_row(r) for r in out_rows]
                res[key] = summarise(out_rows)
                log(f"[rollout] {name:10s} {key:22s} {res[key]['success']}/{res[key]['episodes']} succeeded, "
                    f"{res[key]['refused']} refused, {res[key]['no_motion']} without motion "
                    f"({time.perf_counter() - t0:.0f} s)")
                return out_rows

            for sp in ("seen", "held_out", "multi_step"):
                if sp in splits:
                    run_split(sp, seeds[sp])
            if "paraphrase" in splits:
                run_split("templated", seeds["any"])
                for part in ("tune", "test"):
                    rng = np.random.default_rng(seed)
                    run_split(f"paraphrase_{part}", seeds["any"],
                              lambda i, part=part, rng=rng: (lambda task: paraphrase(task, part, i, rng).text))
            if "must_not_move" in splits:
                rng = np.random.default_rng(seed + 1)
                mnm = run_split("must_not_move", seeds["any"], lambda i: (lambda task: must_not_move(task, i, rng).text))
                res["must_not_move"]["held_still"] = sum(r.no_motion for r in mnm)
                res["must_not_move"]["held_still_with_reason"] = sum(r.no_motion and bool(r.refused) for r in mnm)
                res["must_not_move"]["rate"] = round(res["must_not_move"]["held_still_with_reason"] / len(mnm), 3)
                by_cat: dict[str, list[int]] = {}
                cats = list(MUST_NOT_MOVE)  # must_not_move takes the categories in turn
                for i, r in enumerate(mnm):
                    cat = cats[i % len(cats)]
                    by_cat.setdefault(cat, [0, 0])
                    by_cat[cat][0] += int(r.no_motion and bool(r.refused))
                    by_cat[cat][1] += 1
                res["must_not_move"]["by_category"] = by_cat
            table[name] = res
            policy.close()
        if "seen" in splits and policies:  # one picture of the first policy on the first seen episode
            policy = make_policy(policies[0], session, robot)
            r = run_episode(policy, env, robot, seeds["seen"][0], frames_every=4, state=state,
                            command_mode=command_mode)
            write_strip(r.frames, out / "episode_strip.png", 8, f"{policies[0]}: {r.instruction!r} "
                                                                 f"({'success' if r.success else 'failure'})")
    session.close()
    summary = {"checkpoint": str(run), "hold_out": hold_out, "seed": seed, "command_mode": command_mode,
               "table": table}
    (out / "rollouts.json").write_text(json.dumps({**summary, "episodes": rows}, indent=1))
    (out / "rollouts.md").write_text(markdown_table(table) + "\n")
    return summary


def markdown_table(table: dict[str, dict[str, Any]]) -> str:
    names = list(table)
    keys = [k for k in ("seen", "held_out", "multi_step", "templated", "paraphrase_tune", "paraphrase_test",
                        "must_not_move") if any(k in table[n] for n in names)]
    lines = ["| split | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        cells = []
        for n in names:
            r = table[n].get(k)
            if r is None:
                cells.append("")
            elif k == "must_not_move":
                cells.append(f"{r['rate']:.2f} ({r['held_still_with_reason']}/{r['episodes']} still, with a reason)")
            else:
                cells.append(f"{r['success_rate']:.2f} ({r['success']}/{r['episodes']})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
