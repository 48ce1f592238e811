"""The closed loop in simulation: ``sim_node``, ``perception_node`` and ``policy_node`` as
separate processes talking over DDS, and a driver that resets episodes, lets the instruction go
out, waits for success or a timeout, and keeps score. Also writes a PNG strip of one episode
with the mask overlay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..paths import dds_env
from . import topics
from ..sim.rollout import SPLITS, classify_task, select_seeds, write_strip  # noqa: F401 - the drivers' shared helpers


@dataclass
class EpisodeOutcome:
    seed: int
    family: str
    instruction: str
    held_out: bool
    multi_step: bool
    success: bool
    seconds: float  # wall time until success or timeout


def node_command(executable: str, params: dict[str, Any], name: str | None = None) -> list[str]:
    """``python -m`` command line of one of the package's nodes with ``-p`` parameters."""
    module = {"sim_node": "vla_align_ros.ros.sim_node", "perception_node": "vla_align_ros.ros.perception_node",
              "policy_node": "vla_align_ros.ros.policy_node", "vla_align_node": "vla_align_ros.ros.vla_align_node"}[executable]
    cmd = [sys.executable, "-m", module, "--ros-args"]
    if name:
        cmd += ["-r", f"__node:={name}"]
    for k, v in params.items():
        val = json.dumps(v) if isinstance(v, (list, bool)) else str(v)
        cmd += ["-p", f"{k}:={val.lower() if isinstance(v, bool) else val}"]
    return cmd


class Processes:
    """Child processes in their own process groups, stopped with SIGINT then SIGKILL."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                                  env=dds_env())))

    def check(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")

    def stop(self) -> dict[str, int]:
        for _, p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        codes = {}
        for name, p in self.procs:
            try:
                codes[name] = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                codes[name] = p.wait()
        return codes


def run_closed_loop(checkpoint: str | Path, out: str | Path, episodes: int = 10, seed: int = 5000,
                    hold_out: Sequence[str] = ("target=yellow_plate",), timeout_s: float = 30.0,
                    image_size: int = 96, strip_frames: int = 8, progress: bool = True,
                    policy: str = "affordance", split: str = "any", command_mode: str = "twist",
                    one_process: bool = False) -> dict[str, Any]:
    """``episodes`` episodes of ``split`` from ``seed`` with the three nodes over DDS; policy_node
    runs ``policy`` and sends ``command_mode`` commands ('twist' or 'joint_trajectory').
    ``one_process``: perception_node and policy_node in one ``vla_align_node`` process, sharing
    the model and each frame's vision pass."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool, Int32, String
    from tqdm import tqdm

    from ..image_conv import image_to_array
    from .qos import CAMERA_QOS, COMMAND_QOS, LATCHED_QOS, STREAM_QOS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = select_seeds(seed, episodes, split, hold_out)
    procs = Processes(out / "logs")
    # The simulator starts on the first episode: its start-up instruction is then the first
    # episode's, not one the policy would have to drop (a change within instruction_min_interval_s).
    procs.start("sim_node", node_command("sim_node", {"image_width": image_size, "image_height": image_size,
                                                      "seed": seeds[0], "announce_instruction": True}))
    policy_params = {"checkpoint": str(checkpoint), "autostart": True, "policy": policy, "command_mode": command_mode,
                     "robot": "panda_sim"}
    if one_process:
        procs.start("vla_align_node", node_command("vla_align_node", policy_params))
    else:
        procs.start("perception_node", node_command("perception_node", {"checkpoint": str(checkpoint),
                                                                        "autostart": True}))
        procs.start("policy_node", node_command("policy_node", policy_params))
    rclpy.init()
    node = Node("vla_align_closed_loop")
    state: dict[str, Any] = {"task": None, "success": False, "frames": []}

    def on_task(msg: String) -> None:
        state["task"] = json.loads(msg.data)

    def on_success(msg: Bool) -> None:
        state["success"] = state["success"] or bool(msg.data)

    def on_overlay(msg: Image) -> None:
        if state.get("collect"):
            state["frames"].append(np.array(image_to_array(msg)))

    node.create_subscription(String, "/ground_truth/task", on_task, LATCHED_QOS)
    node.create_subscription(Bool, "/ground_truth/success", on_success, LATCHED_QOS)
    node.create_subscription(Image, "/perception_node/overlay", on_overlay, CAMERA_QOS)
    statuses: dict[str, dict[str, Any]] = {}
    for name in ("perception_node", "policy_node"):
        node.create_subscription(String, f"/{name}/status",
                                 lambda msg, name=name: statuses.__setitem__(name, json.loads(msg.data)), STREAM_QOS)
    reset = node.create_publisher(Int32, "/sim_node/reset", COMMAND_QOS)
    outcomes: list[EpisodeOutcome] = []
    strip: list[np.ndarray] = []
    try:
        deadline = time.monotonic() + 120.0  # model loading on a busy machine
        while time.monotonic() < deadline and (reset.get_subscription_count() == 0 or
                                               not _nodes_ready(node, command_mode)):
            procs.check()
            rclpy.spin_once(node, timeout_sec=0.1)
        bar = tqdm(range(episodes), desc="closed loop", disable=not progress, dynamic_ncols=True)
        for i in bar:
            ep_seed = seeds[i]
            state.update(task=None, success=False, frames=[], collect=(i == 0))
            reset.publish(Int32(data=ep_seed))
            t0 = time.monotonic()
            while state["task"] is None or (time.monotonic() - t0 < 0.5):  # the reset's task and success=False first
                if time.monotonic() - t0 > 30.0:
                    raise RuntimeError(f"sim_node published no task 30 s after reset {ep_seed}")
                procs.check()
                rclpy.spin_once(node, timeout_sec=0.05)
            state["success"] = False
            t0 = time.monotonic()
            while not state["success"] and time.monotonic() - t0 < timeout_s:
                procs.check()
                rclpy.spin_once(node, timeout_sec=0.05)
            task = state["task"]
            held_out, multi_step = classify_task(task, hold_out)
            outcomes.append(EpisodeOutcome(
                seed=ep_seed, family=task["family"], instruction=task["instruction"], held_out=held_out,
                multi_step=multi_step, success=bool(state["success"]), seconds=round(time.monotonic() - t0, 1)))
            if i == 0:
                strip = state["frames"]
            bar.set_postfix(success=f"{sum(o.success for o in outcomes)}/{len(outcomes)}")
        end = time.monotonic() + 1.5  # the statuses' last counts (published every second)
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        codes = procs.stop()
    summary = summarise(outcomes)
    summary["vision"] = vision_per_frame(statuses, one_process)
    summary["exit_codes"] = codes
    summary["policy"] = policy
    summary["command_mode"] = command_mode
    summary["split"] = split
    (out / "closed_loop.json").write_text(json.dumps({"summary": summary, "episodes": [asdict(o) for o in outcomes]},
                                                     indent=2))
    if strip:
        write_strip(strip, out / "episode_strip.png", strip_frames, outcomes[0].instruction if outcomes else "")
    return {**summary, "episodes": [asdict(o) for o in outcomes]}


def vision_per_frame(statuses: dict[str, dict[str, Any]], one_process: bool) -> dict[str, Any] | None:
    """Vision encoder passes per camera frame of the pair, from the nodes' last statuses (one
    session in one process; each node's own in two)."""
    models = {k: (v.get("model") or {}) for k, v in statuses.items()}
    frames = statuses.get("perception_node", {}).get("frames")
    if not frames or not all("vision_passes" in m for m in models.values()) or len(models) < 2:
        return None
    passes = models["perception_node"]["vision_passes"] if one_process else \
        sum(m["vision_passes"] for m in models.values())
    return {"frames": frames, "vision_passes": passes, "per_frame": round(passes / frames, 3),
            "frame_cache_hits": models["perception_node"].get("frame_cache_hits", 0),
            "vision_reuses": models["policy_node"].get("vision_reuses", 0)}


COMMAND_TOPICS = {"twist": topics.TWIST_CMD, "joint_trajectory": topics.JOINT_TRAJECTORY_CMD}


def _nodes_ready(node: Any, command_mode: str = "twist") -> bool:
    names = {n for n, _ in node.get_node_names_and_namespaces()}
    return {"sim_node", "perception_node", "policy_node"} <= names and \
        node.count_publishers("/perception_node/overlay") > 0 and node.count_publishers(COMMAND_TOPICS[command_mode]) > 0


def summarise(outcomes: Sequence[EpisodeOutcome]) -> dict[str, Any]:
    def rate(sel: list[EpisodeOutcome]) -> dict[str, Any]:
        return {"episodes": len(sel), "successes": sum(o.success for o in sel),
                "success_rate": round(sum(o.success for o in sel) / len(sel), 3) if sel else None}

    return {"all": rate(list(outcomes)),
            "seen": rate([o for o in outcomes if not o.held_out and not o.multi_step]),
            "held_out": rate([o for o in outcomes if o.held_out and not o.multi_step]),
            "multi_step": rate([o for o in outcomes if o.multi_step])}
