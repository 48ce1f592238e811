"""The launch files, checked statically (test_ros2_launch.py runs them under the real `ros2 launch`):
every executable is a console script, every argument has a description, every config file exists, and every parameter a
launch file or a parameter file sets is one the node really declares (read from live nodes)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from conftest import PACKAGE_DIR

LAUNCH = sorted((PACKAGE_DIR / "launch").glob("*.launch.py"))


def _flatten(d: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


@pytest.fixture(scope="module")
def declared() -> dict[str, set[str]]:
    """Parameter names each node declares, from instances of the real node classes."""
    import rclpy

    from vla_align_ros.ros.perception_node import PerceptionNode
    from vla_align_ros.ros.policy_node import PolicyNode
    from vla_align_ros.ros.sim_node import SimNode
    from vla_align_ros.ros.trainer_node import TrainerNode

    rclpy.init()
    out = {}
    try:
        for name, cls in (("perception_node", PerceptionNode), ("policy_node", PolicyNode), ("sim_node", SimNode)):
            node = cls()
            out[name] = set(node._parameters) - {"use_sim_time", "start_type_description_service"}  # noqa: SLF001
            node.destroy_node()
        src = (PACKAGE_DIR / "vla_align_ros" / "ros" / "trainer_node.py").read_text()
        out["trainer_node"] = {c.args[0].value for c in ast.walk(ast.parse(src)) if isinstance(c, ast.Call)
                               and getattr(c.func, "attr", "") == "declare_parameter" and c.args
                               and isinstance(c.args[0], ast.Constant)}
        assert TrainerNode  # imported: the module loads
    finally:
        rclpy.try_shutdown()
    return out


def test_the_three_launch_files_exist():
    assert {p.name for p in LAUNCH} == {"vla_align.launch.py", "sim_demo.launch.py", "train.launch.py"}


@pytest.mark.parametrize("launch", LAUNCH, ids=lambda p: p.name)
def test_launch_file_is_consistent(launch, declared):
    tree = ast.parse(launch.read_text())
    setup = (PACKAGE_DIR / "setup.py").read_text()
    executables: list[str] = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        name = getattr(call.func, "id", getattr(call.func, "attr", ""))
        kw = {k.arg: k.value for k in call.keywords}
        if name == "DeclareLaunchArgument":
            assert "description" in kw and isinstance(kw["description"], ast.Constant) and kw["description"].value, \
                ast.unparse(call)
        if name in ("Node", "LifecycleNode", "managed_lifecycle_node"):
            exe = kw["executable"].value
            assert f'"{exe} = vla_align_ros.' in setup, f"{exe} is not a console script"
            executables.append(exe)
        if name == "join" and call.args and ast.unparse(call.args[0]) == "share":
            rel = Path(*[a.value for a in call.args[1:]])
            assert (PACKAGE_DIR / rel).exists(), f"{launch.name} names {rel}, which does not exist"
            if rel.parts[0] == "config" and rel.suffix == ".yaml" and rel.stem in declared:
                (section,) = yaml.safe_load((PACKAGE_DIR / rel).read_text()).values()  # "/**" or "/**/<node name>"
                params = section["ros__parameters"]
                extra = _flatten(params) - declared[rel.stem]
                assert not extra, f"{rel} sets parameters {rel.stem} does not declare: {extra}"
    assert executables
    # Keys of the parameter dicts the launch file passes: each declared by one of its nodes.
    keys = {k.value for d in ast.walk(tree) if isinstance(d, ast.Dict) for k in d.keys if isinstance(k, ast.Constant)}
    hosts = {"vla_align_node": ("perception_node", "policy_node")}  # processes that run several nodes
    known = set().union(*(declared[n] for e in executables for n in hosts.get(e, (e,))))
    assert keys <= known, keys - known


@pytest.mark.parametrize("launch", LAUNCH, ids=lambda p: p.name)
def test_model_nodes_are_driven_by_launch_and_every_file_takes_a_namespace(launch):
    """A model node in a process of its own is started through managed_lifecycle_node (a launch_ros
    LifecycleNode that launch configures and activates), never as a plain Node; every node
    action takes the launch file's ``namespace`` argument."""
    tree = ast.parse(launch.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    args = {c.args[0].value for c in calls if getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    assert "namespace" in args
    for call in calls:
        name = getattr(call.func, "id", "")
        kw = {k.arg: k.value for k in call.keywords}
        if name in ("Node", "managed_lifecycle_node"):
            assert ast.unparse(kw["namespace"]) in ("ns", "LaunchConfiguration('namespace')"), ast.unparse(call)
            if kw["executable"].value in ("perception_node", "policy_node"):
                assert name == "managed_lifecycle_node", ast.unparse(call)
