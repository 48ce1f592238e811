"""The simulated Panda written out as a robot description file (MJCF, kinematics and inertias
only), the way a real arm ships its URDF: the robot side reads this file with a kinematics
library and never the simulator. Joint and link names are the real Panda's (``panda_joint1``,
``panda_link0``), as its driver publishes them."""

from __future__ import annotations

from pathlib import Path

import mujoco

from .scene import ARM_JOINTS, FINGER_JOINTS, FINGER_NAMES, JOINT_NAMES, OBJECTS, scene_xml

EE_FRAME = "end_effector"  # the site the scripted expert and the servo drive


def robot_description_xml() -> str:
    """MJCF of the arm alone: bodies with their compiled inertias, joints, the end-effector site;
    no meshes, scene, objects or camera."""
    spec = mujoco.MjSpec.from_string(scene_xml("collision"))
    full = spec.compile()
    objects = {o.name for o in OBJECTS}
    for body in list(spec.bodies):
        if body.name in objects:
            spec.delete(body)
    for body in spec.bodies:  # keep the inertias the geoms gave, then drop the geoms
        if body.name == "world":
            continue
        i = mujoco.mj_name2id(full, mujoco.mjtObj.mjOBJ_BODY, body.name)
        body.explicitinertial = True
        body.mass = float(full.body_mass[i])
        body.ipos, body.iquat, body.inertia = full.body_ipos[i].copy(), full.body_iquat[i].copy(), full.body_inertia[i].copy()
        body.fullinertia = [float("nan")] * 6
    for group in (spec.geoms, spec.meshes, spec.cameras, spec.lights, spec.actuators, spec.textures, spec.materials):
        for item in list(group):
            spec.delete(item)
    rename = dict(zip(ARM_JOINTS, JOINT_NAMES)) | dict(zip(FINGER_JOINTS, FINGER_NAMES))
    for joint in spec.joints:
        joint.name = rename.get(joint.name, joint.name)
    for body in spec.bodies:
        if body.name.startswith("panda0_"):
            body.name = "panda_" + body.name[len("panda0_"):]
    spec.modelname = "panda"
    spec.compile()
    return spec.to_xml()


def write_robot_description(out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(robot_description_xml())
    return out
