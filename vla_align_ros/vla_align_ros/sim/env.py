"""The tabletop environment: reset per seed, command interfaces as a real arm takes them
(Cartesian twist through damped-least-squares IK, joint positions, gripper width), rendering
(RGB + segmentation) and the physics state needed for success checks and ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import (CUBE_HALF, GRIPPER_MAX, OBJECT_AREA_HIGH, OBJECT_AREA_LOW, OBJECTS, PARKING, PLATE_HALF_HEIGHT,
                    WORKSPACE_HIGH, WORKSPACE_LOW, build_model, camera_intrinsics)
from .commands import ActiveTrajectory
from .kinematics import DOWN, ArmKinematics
from .randomisation import (Randomisation, apply_randomisation, capture_appearance, check_profile, no_randomisation,
                            randomisation_rng, sample_randomisation)
from .tasks import FAMILIES, TaskSpec, make_task, task_success

import mujoco  # noqa: E402  (MUJOCO_GL was set by the sim package)

HOME_EE = np.array([0.5, 0.0, 0.30])
MAX_JOINT_STEP = 0.1  # rad a joint target may lead the measured joint (anti wind-up)


@dataclass
class CameraFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray | None  # (H, W) uint8: 0 background, i+1 for OBJECTS[i]


class TabletopEnv:
    def __init__(self, image_size: tuple[int, int] = (96, 96), control_hz: float = 20.0, visual: str = "collision",
                 render: bool = True, randomisation: str = "none") -> None:
        """``randomisation``: appearance profile drawn anew at each reset ('none', 'train',
        'unseen'; see ``randomisation.py``)."""
        self.randomisation = check_profile(randomisation)
        self.model, self.ids = build_model(visual)
        self.data = mujoco.MjData(self.model)
        self.kin = ArmKinematics(self.model, self.ids.ee_site, self.ids.arm_dof, self.ids.arm_qpos)
        self.model.site_rgba[:, 3] = 0.0  # sites are frames, not things the camera sees
        table_material = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_MATERIAL, "table")
        self._appearance_defaults = capture_appearance(  # light 0: the scene's one light (scene.py)
            self.model, table_material, [self.ids.object_geom[obj.name] for obj in OBJECTS], light=0,
            camera=self.ids.camera)
        self.appearance: Randomisation = no_randomisation(len(OBJECTS))
        self.control_dt = 1.0 / control_hz
        self.substeps = max(1, int(round(self.control_dt / self.model.opt.timestep)))
        self.height, self.width = image_size
        self._rgb = mujoco.Renderer(self.model, self.height, self.width) if render else None
        self._seg = mujoco.Renderer(self.model, self.height, self.width) if render else None
        if self._seg is not None:
            self._seg.enable_segmentation_rendering()
        self._geom_label = np.zeros(self.model.ngeom + 1, dtype=np.uint8)
        for i, obj in enumerate(OBJECTS):
            self._geom_label[self.ids.object_geom[obj.name]] = i + 1
        self.home_q = self._solve_home()
        self.q_target = self.home_q.copy()
        self.gripper_target = GRIPPER_MAX
        self.task: TaskSpec | None = None
        self.steps_taken = 0

    # ---- lifecycle --------------------------------------------------------------------------
    def _solve_home(self) -> np.ndarray:
        self.data.qpos[self.ids.arm_qpos] = [0.0, -0.1, 0.0, -2.3, 0.0, 0.6, 0.0]
        return self.kin.solve(self.data, HOME_EE, DOWN)

    def close(self) -> None:
        for r in (self._rgb, self._seg):
            if r is not None:
                r.close()
        self._rgb = self._seg = None

    def __enter__(self) -> "TabletopEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self, seed: int, family: str | None = None, task_seed: int | None = None) -> TaskSpec:
        """New episode: objects placed at random without overlap, arm at home, a task of
        ``family`` (random when None). The same seed gives the same episode. With ``task_seed``
        the scene comes from ``seed`` and the task from ``task_seed``, so one scene can be
        recorded with several tasks."""
        rng = np.random.default_rng(seed)
        task_rng = rng if task_seed is None else np.random.default_rng(task_seed)
        family = family or FAMILIES[task_rng.integers(len(FAMILIES))]
        mujoco.mj_resetData(self.model, self.data)
        self._randomise_appearance(seed, task_seed)
        colors = list(rng.permutation(["red", "green", "blue", "yellow"]))
        cubes = [f"{c}_cube" for c in colors[:3]]
        plates = [f"{c}_plate" for c in rng.permutation(["red", "green", "blue", "yellow"])[:2]]
        placed = self._place(rng, cubes, plates)
        for i, obj in enumerate(OBJECTS):
            adr = self.ids.object_qpos[obj.name]
            if obj.name in placed:
                x, y = placed[obj.name]
                z = CUBE_HALF if obj.kind == "cube" else PLATE_HALF_HEIGHT
            else:
                x, y, z = PARKING[0] - 0.15 * (i % 4), PARKING[1] + 0.15 * (i // 4), 0.05
            yaw = rng.uniform(-0.4, 0.4) if obj.kind == "cube" else 0.0
            self.data.qpos[adr : adr + 7] = [x, y, z, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
            # Parked objects wait behind the robot where there is no table: gravity compensated,
            # they stay where they were put instead of falling for the whole episode. The task's
            # objects keep plain physics.
            self.model.body_gravcomp[self.ids.object_body[obj.name]] = 0.0 if obj.name in placed else 1.0
        self.data.qpos[self.ids.arm_qpos] = self.home_q
        self.data.qpos[self.ids.finger_qpos] = GRIPPER_MAX / 2
        self.q_target = self.home_q.copy()
        self.gripper_target = GRIPPER_MAX
        self._apply_ctrl()
        mujoco.mj_forward(self.model, self.data)
        for _ in range(10):  # let objects settle on the table
            mujoco.mj_step(self.model, self.data)
        task = make_task(family, task_rng, cubes, plates)
        task.start_xy = {n: (float(x), float(y)) for n, (x, y) in
                         ((n, self.object_position(n)[:2]) for n in cubes + plates)}
        self.task = task
        self.steps_taken = 0
        return task

    def _randomise_appearance(self, seed: int, task_seed: int | None) -> None:
        """This episode's appearance, from its own generator: the scene and task generators are
        untouched, so 'none' reproduces the unrandomised episodes exactly."""
        if self.randomisation == "none":
            r = no_randomisation(len(OBJECTS))
        else:
            r = sample_randomisation(self.randomisation, randomisation_rng(seed, task_seed), len(OBJECTS))
        apply_randomisation(self.model, self._appearance_defaults, r)
        self.appearance = r

    def set_appearance(self, r: Randomisation) -> None:
        """Show the current state under appearance ``r`` (until the next reset redraws it)."""
        apply_randomisation(self.model, self._appearance_defaults, r)
        self.appearance = r
        mujoco.mj_camlight(self.model, self.data)  # camera and light poses into data

    @staticmethod
    def _place(rng: np.random.Generator, cubes: list[str], plates: list[str]) -> dict[str, tuple[float, float]]:
        """Rejection sampling: plates first (big), then cubes; minimum centre distances."""
        for _ in range(200):
            placed: dict[str, tuple[float, float]] = {}
            ok = True
            for name in plates + cubes:
                for _ in range(100):
                    xy = rng.uniform(OBJECT_AREA_LOW, OBJECT_AREA_HIGH)
                    if all(np.hypot(*(xy - np.array(o))) > (0.14 if ("plate" in name or "plate" in n) else 0.085)
                           for n, o in placed.items()):
                        placed[name] = (float(xy[0]), float(xy[1]))
                        break
                else:
                    ok = False
                    break
            if ok:
                return placed
        raise RuntimeError("could not place the objects without overlap")

    # ---- commands ---------------------------------------------------------------------------
    def _apply_ctrl(self) -> None:
        self.data.ctrl[:7] = self.q_target
        self.data.ctrl[7] = self.data.ctrl[8] = self.gripper_target / 2.0

    def command_twist(self, twist: np.ndarray) -> None:
        """End-effector twist [vx vy vz wx wy wz] in the base frame (as MoveIt Servo takes it)."""
        dq = self.kin.twist_to_joint_delta(self.data, twist, self.control_dt)
        q_meas = self.data.qpos[self.ids.arm_qpos]
        q = np.clip(self.q_target + dq, q_meas - MAX_JOINT_STEP, q_meas + MAX_JOINT_STEP)
        self.q_target = np.clip(q, self.kin.lo, self.kin.hi)

    def command_joints(self, q: np.ndarray) -> None:
        self.q_target = np.clip(np.asarray(q, dtype=float), self.kin.lo, self.kin.hi)

    def command_trajectory(self, trajectory: "ActiveTrajectory") -> None:
        """Follow a joint trajectory for the coming control period: the target is where the
        trajectory says the arm should be at the period's end (sampling at its start would
        command the position the arm already has, and a stream of one-period trajectories would
        never move it)."""
        self.command_joints(trajectory.target(self.time + self.control_dt))

    def command_gripper(self, width: float) -> None:
        self.gripper_target = float(np.clip(width, 0.0, GRIPPER_MAX))

    def hold(self) -> None:
        """Keep the arm where it is now (used when a command is rejected or stale)."""
        self.q_target = self.data.qpos[self.ids.arm_qpos].copy()

    def step(self) -> None:
        self._apply_ctrl()
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self.steps_taken += 1

    # ---- state ------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def ee_position(self) -> np.ndarray:
        return self.data.site_xpos[self.ids.ee_site].copy()

    def ee_rotation(self) -> np.ndarray:
        return self.data.site_xmat[self.ids.ee_site].reshape(3, 3).copy()

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.ids.arm_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.ids.arm_dof].copy()

    def gripper_width(self) -> float:
        return float(self.data.qpos[self.ids.finger_qpos].sum())

    def object_position(self, name: str) -> np.ndarray:
        return self.data.xpos[self.ids.object_body[name]].copy()

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion w x y z (4,))."""
        b = self.ids.object_body[name]
        return self.data.xpos[b].copy(), self.data.xquat[b].copy()

    def object_positions(self) -> dict[str, np.ndarray]:
        return {obj.name: self.object_position(obj.name) for obj in OBJECTS}

    def success(self) -> bool:
        if self.task is None:
            return False
        return task_success(self.task, self.object_positions(), self.gripper_width())

    @staticmethod
    def in_workspace(p: np.ndarray) -> bool:
        return bool(np.all(p >= WORKSPACE_LOW) and np.all(p <= WORKSPACE_HIGH))

    # ---- rendering --------------------------------------------------------------------------
    def render(self, segmentation: bool = True) -> CameraFrame:
        if self._rgb is None:
            raise RuntimeError("this environment was created with render=False")
        self._rgb.update_scene(self.data, camera=self.ids.camera)
        rgb = self._rgb.render().copy()
        labels = None
        if segmentation:
            self._seg.update_scene(self.data, camera=self.ids.camera)
            seg = self._seg.render()  # (H, W, 2): object id, object type
            geom = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
            labels = np.where(geom >= 0, self._geom_label[np.clip(geom, 0, self.model.ngeom)], 0).astype(np.uint8)
        return CameraFrame(rgb=rgb, labels=labels)

    def intrinsics(self) -> np.ndarray:
        return camera_intrinsics(self.model, self.ids.camera, self.width, self.height)

    def camera_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The camera's optical frame in the base frame (the world here): position (3,) and
        quaternion (4,) [x, y, z, w], as /tf_static gives it on a real robot."""
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        cam = self.ids.camera
        optical = self.data.cam_xmat[cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])  # MuJoCo: y up, -z forward
        wxyz = np.zeros(4)
        mujoco.mju_mat2Quat(wxyz, optical.reshape(-1))
        return self.data.cam_xpos[cam].copy(), np.r_[wxyz[1:], wxyz[0]]
