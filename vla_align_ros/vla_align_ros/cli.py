"""``vla-align``: the user command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .paths import config_file, dds_env, shipped_model
from .training.run_dir import ReportDir, RunDir


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.synthetic:
        return _synthetic_demo(args)
    if args.instruction:
        return _instruction_demo(args)
    os.environ.update(dds_env())  # this process and the nodes it starts: this host only, shared memory
    seed = 5000 if args.seed is None else args.seed
    if args.train:
        from .demo_pipeline import run_pipeline_demo

        summary = run_pipeline_demo(Path(args.out), record_episodes_n=args.record_episodes, train_steps=args.steps or 300,
                                    loop_episodes=args.episodes, timeout_s=args.timeout, seed=seed,
                                    progress=not args.quiet, policy=args.policy, split=args.split)
        _print_closed_loop(summary, Path(args.out) / "closed_loop")
        return 0
    from .ros.closed_loop import run_closed_loop

    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_model("sim_tiny")
    run = RunDir(checkpoint)
    run_cfg = run.read_config() if run.config.is_file() else {}  # the run's own hold-out patterns
    hold_out = run_cfg.get("data", {}).get("hold_out", ["target=yellow_plate"])
    if not args.checkpoint:
        print(f"[demo] closed loop with the shipped model {checkpoint} (the default recipe, {run_cfg.get('steps', '?')} "
              f"steps on 240 recorded episodes; `make checkpoint` rebuilds it, `vla-align demo --train` records and "
              f"trains one)")
    summary = run_closed_loop(checkpoint, args.out, episodes=args.episodes, seed=seed, hold_out=hold_out,
                              timeout_s=args.timeout, progress=not args.quiet, policy=args.policy,
                              split=args.split, one_process=args.one_process, command_mode=args.command_mode)
    _print_closed_loop(summary, Path(args.out))
    return 0


def _instruction_demo(args: argparse.Namespace) -> int:
    """One in-process episode with the user's own words: what the policy made of them, the
    outcome, and a strip of frames."""
    from .inference import InferenceSession
    from .policies import make_policy
    from .sim.env import TabletopEnv
    from .sim.rollout import SimJointState, run_episode, sim_robot, write_strip

    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_model("sim_tiny")
    seed = 5000 if args.seed is None else args.seed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    session = InferenceSession(RunDir(checkpoint).checkpoint)
    with TabletopEnv(image_size=(96, 96)) as env:
        robot = sim_robot(env)
        policy = make_policy(args.policy, session, robot)
        r = run_episode(policy, env, robot, seed, args.instruction, frames_every=3,
                        state=SimJointState(session.model.cfg.action.velocity))
        objects = ", ".join(o.replace("_", " ") for o in env.task.objects)
    session.close()
    print(f"[demo] seed {seed}: on the table: {objects}")
    print(f"[demo] {args.policy} policy, instruction {args.instruction!r}")
    if r.refused:
        print(f"[demo] refused ({r.refused}): {r.detail}; the hand moved {r.moved_m * 100:.1f} cm")
    else:
        print(f"[demo] plan: {r.detail}")
        print(f"[demo] the scene's own task was {env.task.instruction!r}: "
              f"{'achieved' if r.success else 'not achieved'} after {r.steps} control steps (last phase {r.phase!r})")
    if r.frames:
        path = out / "instruction_strip.png"
        write_strip(r.frames, path, 8, f"{args.instruction!r}: " + (f"refused ({r.refused})" if r.refused else r.phase))
        print(f"[demo] strip: {path}")
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    from .sim.policy_eval import evaluate_policies, markdown_table

    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_model("sim_tiny")
    summary = evaluate_policies(checkpoint, args.policies, args.out, episodes=args.episodes,
                                multi_step_episodes=args.multi_step_episodes, splits=args.splits, seed=args.seed,
                                command_mode=args.command_mode)
    print(markdown_table(summary["table"]))
    print(f"[rollout] {Path(args.out) / 'rollouts.md'}, {Path(args.out) / 'rollouts.json'}")
    return 0


def _cmd_skills(args: argparse.Namespace) -> int:
    from .training.skills import skills_for_run

    skills_for_run(args.bags, args.run)
    return 0


def _cmd_strip(args: argparse.Namespace) -> int:
    from .data.bag_tools import copy_without_topics

    counts = copy_without_topics(args.src, args.dst, drop_topics=args.drop, overwrite=args.overwrite)
    print(json.dumps({"out": args.dst, **counts}))
    return 0


def _print_closed_loop(summary: dict, folder: Path) -> None:
    print(f"\n{'instruction':<62} {'split':<9} {'result':>7} {'s':>6}")
    for e in summary.get("episodes", []):
        split = "held-out" if e["held_out"] else "seen"
        print(f"{e['instruction'][:62]:<62} {split:<9} {'success' if e['success'] else 'fail':>7} {e['seconds']:>6.1f}")
    print(f"\n{'split':<12} {'episodes':>8} {'successes':>9} {'rate':>6}")
    for name in ("seen", "held_out", "multi_step", "all"):
        r = summary[name]
        rate = "-" if r["success_rate"] is None else f"{r['success_rate']:.2f}"
        print(f"{name:<12} {r['episodes']:>8} {r['successes']:>9} {rate:>6}")
    print(f"policy: {summary.get('policy', '?')}, command mode: {summary.get('command_mode', 'twist')}")
    v = summary.get("vision")
    if v:
        print(f"vision encoder passes per camera frame (perception + policy): {v['per_frame']:.2f} "
              f"({v['vision_passes']} over {v['frames']} frames)")
    print(f"\nepisodes: {folder / 'closed_loop.json'}  strip: {folder / 'episode_strip.png'}")


def _synthetic_demo(args: argparse.Namespace) -> int:
    from .demo_synthetic import run_synthetic_demo

    cfg = config_file(args.config or "model/tiny.yaml")
    out = Path(args.out if args.out != "runs/demo" else "runs/demo_synthetic")
    report = run_synthetic_demo(cfg, out, steps=args.steps or 600, seed=args.seed or 0, progress=not args.quiet)
    ho = report["held_out"]
    print(f"\nheld-out compositions {report['held_out_compositions']} "
          f"({ho['n']} samples, {ho['n_distinct_instructions']} distinct instructions)")
    print(f"{'direction':<16} {'R@1':>6} {'R@5':>6}   chance R@1 = {ho['chance_r1']:.3f}")
    for name, s in ho["retrieval"].items():
        print(f"{name:<16} {s['r1']:>6.3f} {s['r5']:>6.3f}")
    print(f"\nreport: {out / 'report.json'}  plot: {out / 'report.png'}")
    return 0


def _cmd_say(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from .ros.say import say
    from .text_input import InstructionError

    try:
        say(args.text, topic=args.topic, wait_for_subscriber=args.wait, linger=args.linger)
    except InstructionError as e:
        print(f"vla-align say: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if args.from_topics:
        from .ros.live_record import record_topics

        counts = record_topics(args.out, args.from_topics, args.duration, storage=args.storage)
        print(json.dumps({"bag": args.out, "messages": counts}, indent=2))
        return 0
    from .sim.record import record_episodes
    from .sim.tasks import FAMILIES

    families = args.tasks or None
    for f in families or []:
        if f not in FAMILIES:
            print(f"vla-align record: unknown task family {f!r}; known: {', '.join(FAMILIES)}", file=sys.stderr)
            return 2
    stats = record_episodes(args.out, args.episodes, args.seed, families, storage=args.storage,
                            image_size=(args.image_size, args.image_size), progress=not args.quiet,
                            overwrite=args.overwrite, tasks_per_scene=args.tasks_per_scene,
                            randomisation=args.randomisation, command_mode=args.command_mode)
    summary = {
        "bag": args.out, "storage": args.storage, "randomisation": args.randomisation, "episodes": stats.episodes,
        "expert_successes": stats.successes,
        "per_family": {k: {"success": v[0], "episodes": v[1]} for k, v in sorted(stats.per_family.items())},
        "messages": stats.messages, "bag_mb": round(stats.bag_bytes / 1e6, 2),
        "mb_per_episode": round(stats.bag_bytes / 1e6 / max(stats.episodes, 1), 2), "sim_seconds": stats.sim_seconds,
        **({"command_mode": args.command_mode, "commands": stats.commands} if args.command_mode != "twist" else {}),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_sim_bench(args: argparse.Namespace) -> int:
    from .sim.bench import run_sim_bench

    print(json.dumps(run_sim_bench(episodes=args.episodes, render_size=args.image_size, seed=args.seed), indent=2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks.runner import SECTIONS, run_bench, table, write

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip()) if args.sections else SECTIONS
    result = run_bench(config=args.config, checkpoint=args.checkpoint, bag=args.bag, quick=args.quick,
                       device=args.device, log=log, sections=sections)
    path = write(result, args.out)
    print(json.dumps(result, indent=2))
    print("\n" + table(result) + f"\n\nJSON: {path}", file=sys.stderr)
    return 0


def _cmd_sim_view(args: argparse.Namespace) -> int:
    from .sim.viz import save_camera_figure

    instruction = save_camera_figure(args.out, seed=args.seed, family=args.task, size=args.image_size)
    print(f"{args.out}: {instruction}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .data.bags import BagError
    from .training.trainer import TrainConfig, train

    try:
        cfg = TrainConfig.from_yaml(config_file(args.config or "train/sim_tiny.yaml"))
    except FileNotFoundError as e:
        print(f"vla-align train: {e}", file=sys.stderr)
        return 2
    if args.steps:
        cfg.steps = args.steps
    if args.hold_out is not None:
        cfg.data.hold_out = list(args.hold_out)
    if args.seed is not None:
        cfg.seed = args.seed
    try:
        cfg.data.topics = cfg.data.topics.with_overrides(args.topic)
        result = train(args.bags, cfg, args.out, resume=args.resume, progress=not args.quiet,
                       stop_after=args.stop_after)
    except (BagError, FileExistsError, ValueError) as e:
        print(f"vla-align train: {e}", file=sys.stderr)
        return 2
    last = result["log"][-1] if result["log"] else {}
    print(json.dumps({"run_dir": args.out, "finished": result["finished"], "steps": result["steps"],
                      "final_losses": {k: round(v, 4) for k, v in last.items() if k not in ("step", "lr")},
                      "split_episodes": {k: len(v) for k, v in result["split"].items()}, "sync": result["sync"]},
                     indent=2))
    return 0


def _add_topic_argument(p: argparse.ArgumentParser) -> None:
    """``--topic KEY=NAME`` (repeatable): a recording's topic names over the config's
    (``data.topics``); an empty NAME leaves that topic unread."""
    from .data.bags import BagTopics

    p.add_argument("--topic", action="append", default=[], metavar="KEY=NAME",
                   help="the recording's name for a topic, over the config's data.topics (repeatable; an empty NAME "
                        f"leaves it unread); KEY: {', '.join(vars(BagTopics()))}")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data.bags import BagError
    from .training.report import evaluate_run

    from .training.report import write_comparison

    out = Path(args.out)
    try:
        metrics = evaluate_run(Path(args.checkpoint), args.bags, out, max_frames=args.max_frames, topics=args.topic)
        other = evaluate_run(Path(args.compare), args.bags, out / "compare", max_frames=args.max_frames,
                             topics=args.topic) if args.compare else None
    except (BagError, ValueError) as e:
        print(f"vla-align eval: {e}", file=sys.stderr)
        return 2
    print(json.dumps(metrics["summary"], indent=2))
    print(f"report: {ReportDir(out).report}")
    if other is not None:
        table = write_comparison(out / "comparison.md", {args.checkpoint: metrics, args.compare: other})
        print(table)
        print(f"comparison: {out / 'comparison.md'}")
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from .data.bags import BagError
    from .training.ablation import AblationConfig, run_ablation

    try:
        cfg = AblationConfig.from_yaml(config_file(args.config))
        if args.steps:
            cfg.steps = args.steps
        result = run_ablation(cfg, Path(args.out), args.bags, args.eval_bags, args.shift_eval_bags,
                              progress=not args.quiet)
    except (BagError, ValueError, FileNotFoundError) as e:
        print(f"vla-align ablate: {e}", file=sys.stderr)
        return 2
    print((Path(args.out) / "ablation.md").read_text())
    print(f"table: {Path(args.out) / 'ablation.json'}  chart: {Path(args.out) / 'ablation.png'}")
    return 0 if result["rows"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-align", description="Trimodal vision-language-action alignment for ROS 2")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the simulator's closed loop (sim_node, perception_node, policy_node as "
                                    "processes over DDS) with the shipped model, or --checkpoint RUN; --train: "
                                    "record demonstrations and train the recipe (shortened) first; --synthetic: "
                                    "the procedural-scene retrieval demo")
    p.add_argument("--checkpoint", default="", help="trained run folder for the closed loop (default: the shipped "
                                                    "models/sim_tiny)")
    p.add_argument("--train", action="store_true", help="record --record-episodes demonstrations and train "
                                                        "--steps of the default recipe, then run the closed loop")
    p.add_argument("--synthetic", action="store_true", help="train on procedural scenes, report held-out retrieval")
    p.add_argument("--episodes", type=int, default=12, help="closed-loop episodes (seeds from --seed up, see --split)")
    p.add_argument("--record-episodes", type=int, default=60, help="demonstrations to record (3 tasks per layout)")
    p.add_argument("--timeout", type=float, default=30.0, help="closed loop: seconds per episode")
    p.add_argument("--split", choices=("mixed", "any", "seen", "held_out", "multi_step"), default="mixed",
                   help="closed-loop episodes from --seed upward: seen, held_out (the run's hold-out patterns, "
                        "default target=yellow_plate) and multi_step in turn (mixed), one of them, or any")
    p.add_argument("--policy", choices=("affordance", "chunk", "rules"), default="affordance",
                   help="policy_node's policy: affordance (the model's intent and pick/place maps drive motion "
                        "primitives), chunk (the learned action chunks), rules (the rule-parser baseline)")
    p.add_argument("--command-mode", choices=("twist", "joint_trajectory"), default="twist",
                   help="closed loop: policy_node's command_mode (twists to the servo, or joint trajectories)")
    p.add_argument("--one-process", action="store_true",
                   help="perception_node and policy_node in one vla_align_node process sharing the model and each "
                        "frame's vision pass (as vla_align.launch.py runs them)")
    p.add_argument("--instruction", default="", help="run one in-process episode with these words on the layout of "
                                                    "--seed and write a strip (no DDS)")
    p.add_argument("--config", default="", help="--synthetic: model config YAML, a path or a name under the package's config/ (default model/tiny.yaml)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 300; --synthetic: 600)")
    p.add_argument("--seed", type=int, default=None, help="closed loop: first episode seed (5000); synthetic: 0")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("rollout", help="policies side by side on in-process simulator rollouts (no DDS): seen, "
                                       "held-out, multi-step, outside-the-template wordings, must-not-move")
    p.add_argument("--checkpoint", default="", help="trained run folder (default: the shipped models/sim_tiny)")
    p.add_argument("--policies", nargs="+", default=["affordance", "rules"], choices=("affordance", "chunk", "rules"))
    p.add_argument("--episodes", type=int, default=50, help="episodes per split")
    p.add_argument("--multi-step-episodes", type=int, default=30)
    p.add_argument("--splits", nargs="+", default=["seen", "held_out", "multi_step", "paraphrase", "must_not_move"],
                   choices=("seen", "held_out", "multi_step", "paraphrase", "must_not_move"))
    p.add_argument("--seed", type=int, default=5000, help="first episode seed (layouts from 5000 are never trained on)")
    p.add_argument("--command-mode", choices=("twist", "joint_trajectory"), default="twist",
                   help="how commands reach the simulated arm: twists to its servo, or joint targets through the "
                        "robot description's IK as one-point JointTrajectory messages (policy_node's two modes)")
    p.add_argument("--out", default="runs/rollouts")
    p.set_defaults(func=_cmd_rollout)

    p = sub.add_parser("skills", help="build RUN/checkpoint/skills.json (motions, heights and the intent head) from "
                                      "the recording the run was trained on")
    p.add_argument("--bags", nargs="+", required=True, help="the run's training recordings")
    p.add_argument("--run", required=True, help="trained run folder")
    p.set_defaults(func=_cmd_skills)

    p = sub.add_parser("record", help="record scripted-expert demonstrations (or live topics) to a rosbag2")
    p.add_argument("--out", required=True, help="bag folder to create")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (then seed+1, ...)")
    p.add_argument("--tasks", nargs="*", default=[], help="task families to cycle through (default: random)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--image-size", type=int, default=96, help="square camera image size (px)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag folder")
    p.add_argument("--tasks-per-scene", type=int, default=1,
                   help="record each object layout with this many different tasks (breaks the layout -> task shortcut)")
    p.add_argument("--randomisation", choices=("none", "train", "unseen"), default="none",
                   help="domain randomisation profile of the scene's appearance (table tint, lights, camera pose, "
                        "object colour jitter); 'unseen' lies outside every 'train' range; 'none' is the plain scene")
    p.add_argument("--command-mode", choices=("twist", "joint_trajectory"), default="twist",
                   help="how the expert commands the arm: 'twist' (the servo's TwistStamped) or 'joint_trajectory' "
                        "(policy_node's joint path; the bag holds the JointTrajectory commands, read as joint_delta)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--from-topics", nargs="*", default=[], metavar="TOPIC",
                   help="record these live topics instead of running the simulator")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to record with --from-topics")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("train", help="train from rosbag2 recordings to a checkpoint")
    p.add_argument("--bags", nargs="+", required=True, help="rosbag2 folders (mcap or sqlite3)")
    p.add_argument("--config", default="", help="training YAML: a path, or a name under the package's config/ (default train/sim_tiny.yaml)")
    p.add_argument("--out", required=True, help="run folder: checkpoint/, resume/, train_log.jsonl, split.json")
    p.add_argument("--steps", type=int, default=0, help="override the config's step count")
    p.add_argument("--hold-out", nargs="*", default=None, metavar="PATTERN",
                   help="hold out compositions: family=stack, object=red_cube, target=yellow_plate, instruction~REGEX")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue a stopped run from RUN_DIR/resume")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true")
    _add_topic_argument(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("strip", help="copy a rosbag2 without the simulator's /ground_truth/* topics (and any "
                                      "other named ones): the recording a real robot would have made")
    p.add_argument("src", help="rosbag2 folder")
    p.add_argument("dst", help="new rosbag2 folder")
    p.add_argument("--drop", nargs="*", default=[], metavar="TOPIC", help="more topics to leave out")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_strip)

    p = sub.add_parser("eval", help="evaluate a trained run on recordings: metrics.json, report.md, plots")
    p.add_argument("--checkpoint", required=True, help="run folder (or its checkpoint/ folder)")
    p.add_argument("--bags", nargs="+", required=True)
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--max-frames", type=int, default=1500, help="frames per split to evaluate (subsampled evenly)")
    p.add_argument("--compare", default="", metavar="RUN",
                   help="a second run evaluated on the same recordings; comparison.md puts them side by side "
                        "(e.g. the ground-truth-supervised recipe, config/train/sim_tiny_ground_truth.yaml)")
    _add_topic_argument(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("ablate", help="train the default recipe and one variant per technique (same seed, data, "
                                      "budget), evaluate each on held-out compositions: table (Markdown, JSON), chart")
    p.add_argument("--config", default="ablation/sim_tiny.yaml", help="ablation config: a path, or a name under the package's config/")
    p.add_argument("--bags", nargs="+", help="training recordings (default: the config's train_bags)")
    p.add_argument("--eval-bags", nargs="+", help="evaluation recordings (default: the config's eval_bags)")
    p.add_argument("--shift-eval-bags", nargs="+", help="recordings under an appearance randomisation no variant "
                   "trained on (default: the config's shift_eval_bags; none: no such column)")
    p.add_argument("--steps", type=int, help="training steps per variant (overrides the config)")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_ablate)

    p = sub.add_parser("sim-bench", help="simulator benchmark: steps/s with rendering, expert success (JSON)")
    p.add_argument("--episodes", type=int, default=200, help="expert episodes (spread over every task family)")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--seed", type=int, default=1000)
    p.set_defaults(func=_cmd_sim_bench)

    p = sub.add_parser("bench", help="benchmarks (JSON + table): per-stage frame latency, ROS round trips, "
                                     "training throughput, SigLIP memory, bag ingestion, simulator speed")
    p.add_argument("--config", help="model or training config (default: config/train/sim_tiny.yaml)")
    p.add_argument("--checkpoint", help="time a trained run instead of a random model of --config")
    p.add_argument("--bag", help="bag for the ingestion benchmark (default: a short fresh simulator recording)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the model and training sections")
    p.add_argument("--quick", action="store_true", help="a tiny model and few repetitions (what make test runs)")
    p.add_argument("--sections", default="", help="comma-separated subset of model, training, loss, "
                   "siglip_memory (PyTorch only) and frame, ros, ingest, sim (need ROS 2 / MuJoCo); default all. "
                   "Sections whose modules are not installed are skipped and listed")
    p.add_argument("--out", default="bench.json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("sim-view", help="save the simulator's camera view with ground-truth masks as a PNG")
    p.add_argument("--out", default="sim_view.png")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--task", default="place", help="task family")
    p.add_argument("--image-size", type=int, default=256)
    p.set_defaults(func=_cmd_sim_view)

    p = sub.add_parser("say", help="publish an instruction (std_msgs/String, reliable, transient local)")
    p.add_argument("text", help="the instruction, e.g. 'put the red cube on the blue plate'")
    p.add_argument("--topic", default="/instruction")
    p.add_argument("--wait", type=float, default=2.0, help="seconds to wait for a subscriber before publishing")
    p.add_argument("--linger", type=float, default=1.0, help="seconds to stay up for late joiners")
    p.set_defaults(func=_cmd_say)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
