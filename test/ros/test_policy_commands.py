"""The robot side and the policy commands in their own processes: policy_node, perception_node
and the default policies load and act with the simulator made unimportable, and ``vla-align
rollout`` / ``vla-align demo --instruction`` produce their tables and strips."""

from __future__ import annotations

import subprocess
import sys

from vla_align_ros.paths import shipped_model

BLOCKED_IMPORT = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "mujoco" or name == "vla_align_ros.sim" or name.startswith("vla_align_ros.sim."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np
import vla_align_ros.ros.policy_node, vla_align_ros.ros.perception_node
from vla_align_ros.inference import InferenceSession
from vla_align_ros.policies import Observation, Refusal, RobotInterface, make_policy
from vla_align_ros.robots.camera import camera_from_info
from vla_align_ros.robots.config import RobotConfig
cfg = RobotConfig.load("panda_sim")
kin = cfg.kinematics()
cam = camera_from_info([96.0, 0, 48, 0, 96.0, 48, 0, 0, 1], cfg.camera_pose["translation"], cfg.camera_pose["quaternion"])
robot = RobotInterface(kin, [f"panda_joint{i}" for i in range(1, 8)], cam, (96, 96), cfg.table_z)
session = InferenceSession(sys.argv[1])
for name in ("affordance", "chunk"):
    policy = make_policy(name, session, robot)
    policy.reset("put the red cube on the blue plate")
    chunk = policy.act(Observation(np.zeros((96, 96, 3), np.uint8), np.zeros(7), np.zeros(18, np.float32)))
    assert chunk.actions.shape[1] == 7 and np.isfinite(chunk.actions).all()
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "mujoco" or m.startswith("vla_align_ros.sim"))
print("LEAKED", leaked)
"""


def test_robot_side_imports_no_simulator() -> None:
    """policy_node, perception_node and the affordance and chunk policies load and act with
    ``mujoco`` and ``vla_align_ros.sim`` made unimportable."""
    out = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, str(shipped_model() / "checkpoint")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LEAKED []" in out.stdout, out.stdout[-2000:]


def test_rollout_and_instruction_demo_commands(tmp_path) -> None:
    """``vla-align rollout`` puts policies side by side in one table; ``vla-align demo
    --instruction`` says what the policy made of the words and writes a strip."""
    import json

    from vla_align_ros.cli import main

    out = tmp_path / "rollouts"
    assert main(["rollout", "--policies", "affordance", "rules", "--episodes", "2", "--splits", "seen",
                 "must_not_move", "--out", str(out)]) == 0
    table = json.loads((out / "rollouts.json").read_text())["table"]
    assert table["affordance"]["seen"]["episodes"] == 2 and table["rules"]["must_not_move"]["episodes"] == 2
    md = (out / "rollouts.md").read_text()
    assert "| seen |" in md and "| must_not_move |" in md and "affordance" in md.splitlines()[0]
    assert (out / "episode_strip.png").stat().st_size > 10_000
    assert main(["demo", "--instruction", "set the yellow one on top of the blue cube", "--seed", "5014",
                 "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "instruction_strip.png").stat().st_size > 10_000
    assert main(["demo", "--instruction", "is the red cube on the blue plate?", "--out", str(tmp_path / "q")]) == 0
    assert not (tmp_path / "q" / "instruction_strip.png").exists()  # refused before any frame
