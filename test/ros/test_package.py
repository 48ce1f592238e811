"""The installed package: interface messages, share files, console script, and a colcon build
of a copy of the repository as a robot's ROS 2 workspace would do it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PACKAGE_DIR, REPO

VENV = Path(sys.prefix)


def test_messages_are_importable_and_serialise():
    from rclpy.serialization import deserialize_message, serialize_message
    from vla_align_msgs.msg import ActionChunk, GroundingResult, TaskProgress

    chunk = ActionChunk(action_space="ee_twist", dimension_names=["vx", "vy", "vz", "grip"], horizon=2,
                        time_step=0.05, data=[0.1, 0.2, 0.3, 1.0, 0.1, 0.2, 0.3, 0.0])
    back = deserialize_message(serialize_message(chunk), ActionChunk)
    assert list(back.dimension_names) == ["vx", "vy", "vz", "grip"] and back.horizon == 2
    assert list(back.data) == pytest.approx([0.1, 0.2, 0.3, 1.0, 0.1, 0.2, 0.3, 0.0])
    g = GroundingResult(phrase="the red cube", score=0.9)
    g.bbox.x_offset, g.bbox.width = 3, 10
    g.mask.encoding, g.mask.width, g.mask.height, g.mask.step = "mono8", 2, 1, 2
    g.mask.data = bytes([0, 255])
    g2 = deserialize_message(serialize_message(g), GroundingResult)
    assert g2.phrase == "the red cube" and g2.bbox.width == 10 and bytes(g2.mask.data) == b"\x00\xff"
    tp = TaskProgress(instruction="pick up X, then put it on Y", steps=["pick up X", "put it on Y"],
                      active_step=1, step_progress=0.5, segment_starts=[0.0, 2.5], segment_ends=[2.5, float("nan")])
    tp2 = deserialize_message(serialize_message(tp), TaskProgress)
    assert list(tp2.steps) == ["pick up X", "put it on Y"] and tp2.active_step == 1


def test_share_directory_holds_config_and_package_xml():
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("vla_align_ros"))
    assert share == VENV / "share" / "vla_align_ros"
    assert (share / "package.xml").is_file()
    shipped = sorted(p.name for p in (share / "config" / "model").glob("*.yaml"))
    assert shipped == sorted(p.name for p in (PACKAGE_DIR / "config" / "model").glob("*.yaml"))
    assert (share / "config" / "sim" / "sim_node.yaml").is_file()
    assert (share / "config" / "train" / "sim_tiny.yaml").is_file()
    assert (share / "launch" / "train.launch.py").is_file()
    assert Path(get_package_share_directory("vla_align_msgs"), "msg", "ActionChunk.msg").is_file()


def test_console_scripts_run():
    exe = VENV / "bin" / "vla-align"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60, check=True)
    for sub in ("demo", "say", "record", "train", "eval", "sim-bench", "sim-view"):
        assert sub in out.stdout
    assert (VENV / "bin" / "sim_node").is_file() and (VENV / "bin" / "trainer_node").is_file()


def test_colcon_build_of_a_workspace_copy(tmp_path):
    """Copy the tracked files into ws/src/vla_align_ros, colcon-build the workspace (colcon finds
    both packages by itself), and import a message from the built workspace in a fresh interpreter."""
    colcon = VENV / "bin" / "colcon"
    if not colcon.exists():
        pytest.fail("colcon is not installed in the venv (requirements-build.txt)")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "ws" / "src" / "vla_align_ros"
    for rel in files:
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    ws = tmp_path / "ws"
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV))
    res = subprocess.run([str(colcon), "build", "--cmake-args", f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}",
                          "-DBUILD_TESTING=OFF"],
                         cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 packages finished" in res.stdout, res.stdout[-2000:]
    site = ws / "install" / "vla_align_msgs" / "lib" / "python3.11" / "site-packages"
    assert (site / "vla_align_msgs").is_dir()
    probe = ("import vla_align_msgs.msg as m, sys; "
             "assert m.__file__.startswith(sys.argv[1]), m.__file__; print(m.TaskProgress().active_step)")
    env_run = dict(os.environ, PYTHONPATH=str(site),
                   LD_LIBRARY_PATH=f"{ws / 'install' / 'vla_align_msgs' / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    out = subprocess.run([sys.executable, "-c", probe, str(ws)], env=env_run, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "0", out.stderr[-2000:]
    assert (ws / "install" / "vla_align_ros" / "share" / "vla_align_ros" / "config" / "model" / "tiny.yaml").is_file()
