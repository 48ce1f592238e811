"""The package's direction of dependency, read from every module's import statements (those
inside functions too, so a lazy import cannot hide a dependency):

- the model, losses and metrics know no bags (``rosbags``, ``mcap``, ``vla_align_ros.data``);
- data, training, sim, control, policies, the model and the pure helpers import no ``rclpy``
  and no ROS message package: only ``vla_align_ros.ros`` (and the benchmarks of ROS) do;
- what the robot runs (policies, control, robots, the ROS nodes other than sim_node and the
  closed-loop driver) imports neither ``vla_align_ros.sim`` nor ``mujoco``;
- nothing outside ``vla_align_ros.ros`` imports it, except the CLI and the benchmarks that
  start nodes on purpose.

``test_a_broken_rule_is_caught`` adds a forbidden import to a copy of a module and checks the
rule reports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import PACKAGE_DIR

PKG = PACKAGE_DIR / "vla_align_ros"
ROS_MESSAGES = ("rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "trajectory_msgs", "builtin_interfaces",
                "rcl_interfaces", "lifecycle_msgs", "tf2_msgs", "vla_align_msgs", "rosgraph_msgs", "launch",
                "launch_ros", "diagnostic_msgs")


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports (relative imports resolved against ``module``)."""
    out: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return out


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# (who, what it must not import, allowed exceptions among "who")
RULES: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    ("the model, losses and metrics know no bags",
     ("vla_align_ros.model", "vla_align_ros.losses", "vla_align_ros.metrics"),
     ("rosbags", "mcap", "mcap_ros2", "vla_align_ros.data"), ()),
    ("only the ROS shell imports rclpy and ROS messages",
     ("vla_align_ros",), ROS_MESSAGES,
     ("vla_align_ros.ros", "vla_align_ros.benchmarks.frame", "vla_align_ros.benchmarks.ros_latency",
      "vla_align_ros.benchmarks.runner", "vla_align_ros.demo_pipeline")),
    ("what the robot runs imports no simulator",
     ("vla_align_ros.policies", "vla_align_ros.control", "vla_align_ros.robots", "vla_align_ros.ros",
      "vla_align_ros.inference", "vla_align_ros.session_pool", "vla_align_ros.frame_graph"),
     ("vla_align_ros.sim", "mujoco"),
     ("vla_align_ros.ros.sim_node", "vla_align_ros.ros.closed_loop")),
    ("nothing below the ROS shell imports it",
     ("vla_align_ros",), ("vla_align_ros.ros",),
     ("vla_align_ros.ros", "vla_align_ros.cli", "vla_align_ros.benchmarks.runner",
      "vla_align_ros.benchmarks.ros_latency", "vla_align_ros.demo_pipeline")),
]


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """``sources``: {module: (source, is_package)} -> one line per broken rule."""
    out = []
    for text, who, forbidden, allowed in RULES:
        for mod, (src, is_pkg) in sorted(sources.items()):
            if not _within(mod, who) or _within(mod, allowed):
                continue
            bad = sorted(i for i in imports_of(src, mod, is_pkg) if _within(i, forbidden))
            if bad:
                out.append(f"{text}: {mod} imports {', '.join(bad)}")
    return out


def package_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in PKG.rglob("*.py")}


def test_the_package_keeps_its_direction_of_dependency():
    assert violations(package_sources()) == []


@pytest.mark.parametrize("module, line", [
    ("vla_align_ros.policies.affordance", "from ..sim.env import TabletopEnv"),
    ("vla_align_ros.training.trainer", "import rclpy"),
    ("vla_align_ros.losses.contrastive", "from ..data.bags import read_episodes"),
    ("vla_align_ros.control.safety", "    import mujoco"),
    ("vla_align_ros.data.bags", "from ..ros.qos import CAMERA_QOS"),
])
def test_a_broken_rule_is_caught(module, line):
    sources = package_sources()
    src, is_pkg = sources[module]
    indented = line.startswith(" ")
    extra = f"\n\ndef _late():\n{line}\n" if indented else f"\n{line}\n"  # a lazy import counts too
    sources[module] = (src + extra, is_pkg)
    found = violations(sources)
    assert len(found) == 1 and module in found[0], found
