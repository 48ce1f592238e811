"""policy_node in command_mode:=joint_trajectory against sim_node, over DDS: the closed loop
succeeds as it does with twists (before the fix the trajectories went out at 20 Hz and the hand
never moved: the simulator sampled each 50 ms trajectory at its start, i.e. at the measured
position, and the next one replaced it before its point was reached)."""

from __future__ import annotations

import json

from conftest import ros_env


def test_joint_trajectory_mode_closed_loop_succeeds(tmp_path, monkeypatch):
    from vla_align_ros.paths import shipped_model
    from vla_align_ros.ros.closed_loop import run_closed_loop

    for k, v in ros_env(40).items():
        monkeypatch.setenv(k, v)
    summary = run_closed_loop(shipped_model(), tmp_path / "loop", episodes=2, seed=5000, split="seen",
                              timeout_s=25.0, progress=False, command_mode="joint_trajectory")
    assert summary["command_mode"] == "joint_trajectory"
    assert summary["exit_codes"] == {"sim_node": 0, "perception_node": 0, "policy_node": 0}
    winners = [e for e in summary["episodes"] if e["success"]]
    # in-process, joint mode succeeds on 28 of the first 30 seen episodes (twist: 27): both here
    assert len(winners) == 2, summary["episodes"]
    assert all(e["seconds"] < 15.0 for e in winners), winners  # about 5 s each, as in twist mode
    logs = tmp_path / "loop" / "logs"
    policy_log, sim_log = (logs / "policy_node.log").read_text(), (logs / "sim_node.log").read_text()
    assert "configured: joint_trajectory" in policy_log
    # every trajectory was accepted: none late, malformed or over a limit
    assert "rejected joint_trajectory" not in sim_log, sim_log[-2000:]
    report = json.loads((tmp_path / "loop" / "closed_loop.json").read_text())
    assert report["summary"]["seen"]["successes"] == 2
