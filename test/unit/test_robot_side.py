"""The robot side's geometry without the simulator: the Panda's kinematics from its description
file through Pinocchio, cameras from camera_info and /tf_static, and the keyframe labels a
demonstration gives by itself (pure NumPy, synthetic trajectories)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_align_ros.data.keyframes import LabelError, align_to_text_steps, demo_labels
from vla_align_ros.robots.camera import CameraModel, CameraPoseError, camera_from_info, chain_to_root, quaternion_to_matrix
from vla_align_ros.robots.config import RobotConfig
from vla_align_ros.robots.kinematics import RobotDescriptionError, RobotKinematics


@pytest.fixture(scope="module")
def panda() -> tuple[RobotConfig, RobotKinematics]:
    robot = RobotConfig.load("panda")
    return robot, RobotKinematics(robot.description_path, robot.ee_frame)


def test_description_kinematics_match_the_simulator(panda) -> None:
    """Pinocchio on the shipped description file puts the end effector where MuJoCo does."""
    from vla_align_ros.sim.arm_model import PandaArm

    _, kin = panda
    arm = PandaArm()
    rng = np.random.default_rng(0)
    q = rng.uniform(arm.lower, arm.upper, size=(20, 7))
    ours = kin.ee_positions(np.c_[q, np.full((20, 2), 0.02)], kin.joint_names)
    theirs = np.stack([arm.ee_position(row) for row in q])
    assert np.abs(ours - theirs).max() < 1e-5


def test_joints_are_matched_by_name(panda) -> None:
    _, kin = panda
    q = np.r_[0.1, -0.3, 0.2, -2.0, 0.1, 1.8, 0.7, 0.03, 0.03]
    names = list(kin.joint_names)
    order = [8, 3, 0, 5, 1, 7, 2, 6, 4]
    shuffled = np.r_[q[order], 9.9]  # another driver's order, and a joint the arm does not have
    a = kin.ee_positions(q[None], names)
    b = kin.ee_positions(shuffled[None], [names[i] for i in order] + ["conveyor"])
    assert np.allclose(a, b)
    with pytest.raises(RobotDescriptionError, match="panda_joint4"):
        kin.ee_positions(q[None, :8], [n for n in names if n != "panda_joint4"])


def test_the_arm_is_the_chain_from_the_base_to_the_end_effector(panda) -> None:
    """policy_node's default joint_names: the description's joints that move ee_frame, base
    first; the fingers (another branch) are not among them."""
    _, kin = panda
    assert kin.arm_joints == [f"panda_joint{i}" for i in range(1, 8)]
    assert set(kin.joint_names) - set(kin.arm_joints) == {"panda_finger_joint1", "panda_finger_joint2"}


def test_description_errors(tmp_path) -> None:
    with pytest.raises(RobotDescriptionError, match="does not exist"):
        RobotKinematics(tmp_path / "nope.urdf", "tool0")
    bad = tmp_path / "arm.urdf"
    bad.write_text("<robot name='x'><link name='a'/></robt>")
    with pytest.raises(RobotDescriptionError, match="cannot read"):
        RobotKinematics(bad, "tool0")
    robot = RobotConfig.load("panda")
    with pytest.raises(RobotDescriptionError, match="no frame 'tool0'"):
        RobotKinematics(robot.description_path, "tool0")


def test_shipped_description_is_the_simulators_arm() -> None:
    """config/robots/panda.xml is what the exporter writes from the simulator's model today."""
    from vla_align_ros.sim.robot_description import robot_description_xml

    shipped = RobotConfig.load("panda").description_path.read_text()
    assert shipped.split() == robot_description_xml().split()


def test_camera_pose_from_a_tf_chain_matches_the_simulator() -> None:
    """/tf_static as a two-link chain (base -> mount -> optical) composes to the simulator's camera."""
    from vla_align_ros.sim.arm_model import PandaArm
    from vla_align_ros.sim.env import TabletopEnv

    with TabletopEnv(image_size=(64, 64), render=False) as env:
        pos, quat = env.camera_pose()
    truth = PandaArm().camera_model(64, 64)
    mount_t, mount_q = np.array([0.5, -0.1, 0.3]), np.array([0.0, 0.0, np.sin(0.3), np.cos(0.3)])
    r_mount = quaternion_to_matrix(mount_q)
    rel_t = r_mount.T @ (pos - mount_t)
    # the optical frame relative to the mount: R_mount^T R_cam, as a quaternion via the matrix
    rel_r = r_mount.T @ quaternion_to_matrix(quat)
    rel_q = _matrix_to_quaternion(rel_r)
    root, t, q = chain_to_root({"optical": ("mount", rel_t, rel_q), "mount": ("base", mount_t, mount_q)}, "optical")
    assert root == "base"
    cam = camera_from_info(truth.intrinsics.reshape(-1), t, q)
    assert np.allclose(cam.position, truth.position, atol=1e-9)
    assert np.allclose(cam.rotation, truth.rotation, atol=1e-9)
    p = np.array([0.5, 0.1, 0.02])
    assert np.allclose(cam.project(p), truth.project(p), atol=1e-6)
    row, col = cam.project(p)
    assert np.allclose(cam.backproject(row, col, 0.02), p, atol=1e-9)


def _matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(1.0 + np.trace(r), 1e-12)) / 2
    return np.array([(r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w), w])


def test_missing_camera_parts_are_named() -> None:
    with pytest.raises(CameraPoseError, match="ep 3.*intrinsics are missing"):
        camera_from_info([], [0, 0, 1], [0, 0, 0, 1], "ep 3")
    with pytest.raises(CameraPoseError, match="ep 3.*pose relative to the robot base is missing"):
        camera_from_info(np.eye(3).reshape(-1) * 50, None, None, "ep 3")


# ---- keyframes on synthetic demonstrations -------------------------------------------------

def _look_down_camera() -> CameraModel:
    """A camera 1 m above (0.5, 0, 0) looking straight down: x right = base -y, y down = base -x."""
    rot = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # columns: optical axes in base
    return CameraModel(np.array([[100.0, 0, 48], [0, 100.0, 48], [0, 0, 1]]), np.array([0.5, 0.0, 1.0]), rot)


def _segment(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return a + (b - a) * np.linspace(0, 1, n)[:, None]


def _pick_and_place() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand path, commanded gripper and finger opening: approach, descend, grasp at (0.45, 0.1),
    lift, carry, lower and release at (0.55, -0.1), retreat."""
    home, above_a, at_a = np.array([0.4, 0.0, 0.3]), np.array([0.45, 0.1, 0.15]), np.array([0.45, 0.1, 0.05])
    above_b, at_b = np.array([0.55, -0.1, 0.16]), np.array([0.55, -0.1, 0.062])
    parts = [_segment(home, above_a, 20), _segment(above_a, at_a, 10), np.repeat(at_a[None], 10, 0),
             _segment(at_a, above_a, 10), _segment(above_a, above_b, 20), _segment(above_b, at_b, 10),
             np.repeat(at_b[None], 8, 0), _segment(at_b, above_b, 10)]
    ee = np.concatenate(parts)
    t = len(ee)
    grasp, release = 30, 80  # the first frames held at the object and over the place
    cmd = np.where((np.arange(t) >= grasp) & (np.arange(t) < release), 0.0, 0.08)
    opening = np.where(cmd > 0, 0.08, 0.04)  # closed on a 4 cm object
    return ee, cmd, opening


def test_grasp_and_release_give_pick_and_place_pixels() -> None:
    ee, cmd, opening = _pick_and_place()
    cam = _look_down_camera()
    stamps = (np.arange(len(ee)) * 50_000_000).astype(np.int64)
    lab = demo_labels(ee, cmd, opening, stamps, cam, (96, 96), 0.0, 0.08, "synthetic")
    assert [s.kind for s in lab.steps] == ["place"]
    st = lab.steps[0]
    assert st.act == 30 and st.end == 80
    assert np.allclose(st.pick_xyz, [0.45, 0.1, 0.025])  # half the grasp height above the table
    assert np.allclose(st.place_xyz, [0.55, -0.1, 0.012])  # the surface it was put on
    assert lab.has_pick[:31].all() and not lab.has_pick[31:].any()  # once grasped, the object has moved
    assert lab.has_place[:81].all() and not lab.has_place[81:].any()
    assert np.allclose(lab.pick_px[0], cam.project(st.pick_xyz))
    # the fingers' own opening (no command topic) gives the same keyframes
    lab2 = demo_labels(ee, None, opening, stamps, cam, (96, 96), 0.0, 0.08, "synthetic")
    assert [(s.act, s.end) for s in lab2.steps] == [(30, 80)]


def test_a_push_is_low_horizontal_motion_with_nothing_held() -> None:
    start, end = np.array([0.5, -0.1, 0.05]), np.array([0.5, 0.05, 0.05])
    ee = np.concatenate([_segment(np.array([0.4, 0.0, 0.3]), start + [0, 0, 0.1], 15), _segment(start + [0, 0, 0.1], start, 8),
                         _segment(start, end, 30), _segment(end, end + [0, 0, 0.1], 8)])
    cmd = np.zeros(len(ee))  # closed, on nothing
    opening = np.r_[np.linspace(0.08, 0.0, 5), np.zeros(len(ee) - 5)]
    stamps = (np.arange(len(ee)) * 50_000_000).astype(np.int64)
    lab = demo_labels(ee, cmd, opening, stamps, _look_down_camera(), (96, 96), 0.0, 0.08, "push")
    assert [s.kind for s in lab.steps] == ["push"]
    st = lab.steps[0]
    assert abs(st.act - 23) <= 1 and abs(st.end - 52) <= 1
    assert np.allclose(st.place_xyz[:2], end[:2], atol=0.01)


def test_a_gripper_that_never_closes_is_a_clear_error() -> None:
    ee, _, opening = _pick_and_place()
    ee = ee + [0, 0, 0.2]  # nothing low either
    stamps = (np.arange(len(ee)) * 50_000_000).astype(np.int64)
    with pytest.raises(LabelError, match="bag.mcap episode 4.*never closes"):
        demo_labels(ee, np.full(len(ee), 0.08), np.full(len(ee), 0.08), stamps, _look_down_camera(), (96, 96), 0.0,
                    0.08, "bag.mcap episode 4")


def test_two_text_steps_for_one_grasp_and_release() -> None:
    """"pick up A, then put it on B": the grasp ends the first step; that step has no place."""
    ee, cmd, opening = _pick_and_place()
    stamps = (np.arange(len(ee)) * 50_000_000).astype(np.int64)
    lab = demo_labels(ee, cmd, opening, stamps, _look_down_camera(), (96, 96), 0.0, 0.08, "x")
    two = align_to_text_steps(lab, 2)
    assert (two.step_index[:31] == 0).all() and (two.step_index[31:] == 1).all()
    assert not two.has_place[:31].any() and two.has_place[31:81].all()
    assert (align_to_text_steps(lab, 1).step_index == 0).all()


def test_masks_grown_from_a_keyframe_pixel_match_the_simulators() -> None:
    """Regions grown from each object's projected centre (what a keyframe gives) against the
    simulator's own masks, over a few layouts."""
    from vla_align_ros.sim.arm_model import PandaArm
    from vla_align_ros.data.pseudo_masks import grow_region, mask_from_peak
    from vla_align_ros.sim.env import TabletopEnv
    from vla_align_ros.sim.scene import OBJECTS

    names = [o.name for o in OBJECTS]
    camera = PandaArm().camera_model(96, 96)
    ious: dict[str, list[float]] = {"cube": [], "plate": []}
    with TabletopEnv(image_size=(96, 96)) as env:
        for seed in range(6):
            env.reset(seed=seed, family="place")
            frame = env.render()
            for name in env.task.objects:
                p = env.object_position(name)
                half = 0.5 * (p[2] - 0.0)
                region = grow_region(frame.rgb, camera.project(np.r_[p[:2], half]))
                truth = frame.labels == names.index(name) + 1
                ious[name.split("_")[1]].append((region & truth).sum() / max((region | truth).sum(), 1))
            # the published mask: grown from a map's peak; a map peaking on the table gives its own logits
            logits = np.full((96, 96), -5.0)
            logits[2:4, 2:4] = 5.0  # the image corner: table
            assert mask_from_peak(frame.rgb, logits).sum() == 4
    assert np.mean(ious["cube"]) > 0.7 and np.mean(ious["plate"]) > 0.8, ious


def test_affordance_target_is_a_normalised_gaussian_at_the_pixel() -> None:
    import torch

    from vla_align_ros.training.objective import pixel_targets

    t = pixel_targets(torch.tensor([[10.0, 20.0], [0.0, 0.0]]), (32, 48), 1.5)  # (2, 32*48)
    assert torch.allclose(t.sum(1), torch.ones(2))
    assert int(t[0].argmax()) == 10 * 48 + 20 and int(t[1].argmax()) == 0
    # the cross-entropy is lowest for logits that peak where the target does
    peaked = torch.full((32 * 48,), -5.0)
    peaked[10 * 48 + 20] = 5.0
    elsewhere = peaked.roll(200)
    ce = [-(t[0] * x.log_softmax(0)).sum() for x in (peaked, elsewhere)]
    assert ce[0] < ce[1]
