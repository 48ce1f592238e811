"""MuJoCo tabletop with a Franka Panda: scene, IK, tasks, scripted expert, the rules baseline
policy and in-process rollouts of any policy (no ROS).

``MUJOCO_GL`` is set to ``egl`` here, before mujoco is imported, unless the user chose one.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
