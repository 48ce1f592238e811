"""The tabletop scene: a Franka Panda (meshes, kinematic chain and actuators from the asset
files shipped in ``gymnasium-robotics``), a table, coloured cubes and plates, a fixed camera.

The model is written as MJCF text that includes the Panda's chain and actuator files by
absolute path; only the assets are used, never that package's environment code.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import mujoco  # the package __init__ has set MUJOCO_GL before this import

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10), "green": (0.15, 0.65, 0.20), "blue": (0.12, 0.30, 0.85), "yellow": (0.92, 0.80, 0.12),
}
CUBE_HALF = 0.02  # m
PLATE_RADIUS = 0.055
PLATE_HALF_HEIGHT = 0.006
TABLE_TOP = 0.0  # the robot base stands on the table top plane (z = 0)
# End-effector workspace box (base frame, metres). The end-effector site is 5 cm above the
# fingertips, so its floor keeps the fingers just clear of the table.
WORKSPACE_LOW = np.array([0.25, -0.35, 0.045])
WORKSPACE_HIGH = np.array([0.75, 0.35, 0.45])
OBJECT_AREA_LOW = np.array([0.38, -0.22])
OBJECT_AREA_HIGH = np.array([0.62, 0.22])
ARM_JOINTS = tuple(f"robot:panda0_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("robot:panda0_finger_joint1", "robot:panda0_finger_joint2")
JOINT_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))  # the names a real Panda publishes
FINGER_NAMES = ("panda_finger_joint1", "panda_finger_joint2")
HOME_Q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
GRIPPER_MAX = 0.08  # total finger opening, m


def panda_asset_dir() -> Path:
    spec = importlib.util.find_spec("gymnasium_robotics")  # located, not imported (its import is noisy)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("gymnasium-robotics is not installed (pip install --no-deps gymnasium-robotics); "
                                "its Franka Panda asset files are needed")
    d = Path(spec.origin).parent / "envs" / "assets" / "kitchen_franka" / "franka_assets"
    for name in ("chain.xml", "actuator.xml", "meshes/visual/link0.stl"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"Panda asset {name} missing under {d}")
    return d


@dataclass(frozen=True)
class ObjectSpec:
    name: str  # e.g. "red_cube"
    color: str
    kind: str  # "cube" | "plate"

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.kind}"


OBJECTS: tuple[ObjectSpec, ...] = tuple(
    ObjectSpec(f"{c}_{k}", c, k) for k in ("cube", "plate") for c in COLORS)
PARKING = np.array([-0.6, 0.0])  # unused objects wait behind the robot, out of view


def _mesh_assets(d: Path, visual: str) -> str:
    lines = []
    for part in ("link0", "link1", "link2", "link3", "link4", "link5", "link6", "link7", "hand"):
        lines.append(f'<mesh name="{part}_col" file="{d}/meshes/collision/{part}.stl"/>')
        viz = d / "meshes" / ("visual" if visual == "full" else "collision") / f"{part}.stl"
        lines.append(f'<mesh name="{part}_viz" file="{viz}"/>')
    for n in ("finger_col", "finger_viz"):
        lines.append(f'<mesh name="{n}" file="{d}/meshes/collision/finger.stl" scale="1.75 1.0 1.75"/>')
    return "\n    ".join(lines)


def scene_xml(visual: str = "collision", camera_fovy: float = 50.0) -> str:
    """MJCF of the whole scene. ``visual``: 'full' renders the detailed Panda meshes, 'collision'
    the coarse ones (about twice as fast to render, same kinematics and physics)."""
    d = panda_asset_dir()
    bodies = []
    for i, obj in enumerate(OBJECTS):
        r, g, b = COLORS[obj.color]
        x, y = PARKING[0] - 0.15 * (i % 4), PARKING[1] + 0.15 * (i // 4)
        if obj.kind == "cube":
            geom = (f'<geom name="{obj.name}" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" '
                    f'rgba="{r} {g} {b} 1" mass="0.05" friction="1.5 0.02 0.001" condim="4"/>')
            z = CUBE_HALF
        else:
            geom = (f'<geom name="{obj.name}" type="cylinder" size="{PLATE_RADIUS} {PLATE_HALF_HEIGHT}" '
                    f'rgba="{r} {g} {b} 1" mass="0.3" friction="1.0 0.02 0.001"/>')
            z = PLATE_HALF_HEIGHT
        bodies.append(f'<body name="{obj.name}" pos="{x} {y} {z}"><freejoint name="{obj.name}_free"/>{geom}</body>')
    objects = "\n    ".join(bodies)
    return f"""
<mujoco model="vla_align_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.55 0.55 0.55" specular="0.05 0.05 0.05"/>
  </visual>
  <asset>
    {_mesh_assets(d, visual)}
    <texture name="wood" type="2d" builtin="flat" rgb1="0.62 0.47 0.32" width="16" height="16"/>
    <material name="table" texture="wood" rgba="0.62 0.47 0.32 1"/>
  </asset>
  <default>
    <default class="panda">
      <joint pos="0 0 0" axis="0 0 1" limited="true"/>
      <position forcelimited="true" ctrllimited="true"/>
      <default class="panda_viz"><geom contype="0" conaffinity="0" group="0" type="mesh" rgba="0.93 0.93 0.93 1" mass="0"/></default>
      <default class="panda_col"><geom contype="1" conaffinity="1" group="3" type="mesh" rgba="0.5 0.6 0.7 1"/></default>
      <default class="panda_arm"><joint damping="100"/></default>
      <default class="panda_forearm"><joint damping="10"/></default>
      <default class="panda_finger">
        <joint damping="100" armature="5"/>
        <geom friction="1.5 0.5 0.0001" solref="0.01 1" solimp="0.8 0.9 0.001" margin="0.001" rgba="0.3 0.3 0.3 1"
              contype="1" conaffinity="1" condim="6" group="0"/>
      </default>
    </default>
  </default>
  <worldbody>
    <light pos="0.5 0.0 1.6" dir="0 0 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
    <geom name="table" type="box" pos="0.45 0 -0.02" size="0.55 0.6 0.02" material="table"/>
    <camera name="front" mode="fixed" pos="1.0 0.0 0.78" xyaxes="0 1 0 -0.819 0 0.574" fovy="{camera_fovy}"/>
    <include file="{d}/chain.xml"/>
    {objects}
  </worldbody>
  <include file="{d}/actuator.xml"/>
</mujoco>
"""


@dataclass
class SceneIds:
    arm_qpos: np.ndarray
    arm_dof: np.ndarray
    finger_qpos: np.ndarray
    ee_site: int
    camera: int
    object_body: dict[str, int] = field(default_factory=dict)
    object_geom: dict[str, int] = field(default_factory=dict)
    object_qpos: dict[str, int] = field(default_factory=dict)
    object_dof: dict[str, int] = field(default_factory=dict)


def build_model(visual: str = "collision") -> tuple[mujoco.MjModel, SceneIds]:
    spec = mujoco.MjSpec.from_string(scene_xml(visual))
    for body in spec.bodies:
        if body.name.startswith("panda0_"):
            body.gravcomp = 1.0  # the real Panda compensates gravity in its joint controllers
    model = spec.compile()
    jid = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in ARM_JOINTS]
    fid = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in FINGER_JOINTS]
    ids = SceneIds(
        arm_qpos=np.array([model.jnt_qposadr[j] for j in jid]),
        arm_dof=np.array([model.jnt_dofadr[j] for j in jid]),
        finger_qpos=np.array([model.jnt_qposadr[j] for j in fid]),
        ee_site=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "end_effector"),
        camera=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "front"),
    )
    for obj in OBJECTS:
        ids.object_body[obj.name] = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj.name)
        ids.object_geom[obj.name] = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, obj.name)
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"{obj.name}_free")
        ids.object_qpos[obj.name] = int(model.jnt_qposadr[j])
        ids.object_dof[obj.name] = int(model.jnt_dofadr[j])
    return model, ids


def camera_intrinsics(model: mujoco.MjModel, camera: int, width: int, height: int) -> np.ndarray:
    """3x3 pinhole K of a MuJoCo camera (fovy is the vertical field of view)."""
    fovy = math.radians(float(model.cam_fovy[camera]))
    fy = 0.5 * height / math.tan(0.5 * fovy)
    return np.array([[fy, 0.0, 0.5 * width], [0.0, fy, 0.5 * height], [0.0, 0.0, 1.0]])
