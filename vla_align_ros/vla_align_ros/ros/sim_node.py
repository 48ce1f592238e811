"""``sim_node``: the MuJoCo tabletop speaking ROS 2 as a real arm setup does.

Publishes /clock (simulation time), the camera image (rgb8) and camera info, joint states,
and ground truth (segmentation labels, object poses, end-effector pose, task, success).
Takes Cartesian twists (MoveIt Servo style), joint trajectories (joint_trajectory_controller
style) and a gripper width. A command with NaN/Inf, wrong joint names or sizes, over the
limits or leaving the workspace is rejected with a logged reason and counted; the arm holds.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped, Quaternion, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, Int32, String
from trajectory_msgs.msg import JointTrajectory

from ..sim.commands import (ActiveTrajectory, CommandRejected, RejectionCounter, check_gripper,
                            check_joint_trajectory, check_twist, start_trajectory)
from ..sim.env import TabletopEnv
from ..sim.record import FINGER_NAMES
from ..sim.scene import JOINT_NAMES, OBJECTS
from ..sim.topics import BASE_FRAME, CAMERA_FRAME, SimTopics
from .diagnostics import STATUS_PERIOD_S, DiagnosticsPublisher
from .params import describe
from .process import run
from .qos import CAMERA_QOS, COMMAND_QOS, INSTRUCTION_QOS, LATCHED_QOS, STREAM_QOS
from .topics import relative

try:  # a ROS install has tf2_msgs; the PyPI wheels do not (then the camera's pose is not broadcast)
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_node")
        p = self.declare_parameter
        self.control_rate = p("control_rate_hz", 20.0, describe("physics control rate", lo=1.0, hi=500.0)).value
        self.camera_rate = p("camera_rate_hz", 10.0, describe("camera publish rate", lo=0.5, hi=60.0)).value
        width = p("image_width", 128, describe("camera image width (px)", lo=16, hi=1280, integer=True)).value
        height = p("image_height", 128, describe("camera image height (px)", lo=16, hi=960, integer=True)).value
        visual = p("visual_meshes", "collision", describe("Panda meshes to render: 'full' or 'collision'")).value
        self.seed = p("seed", 0, describe("seed of the first episode", lo=0, hi=2**31 - 1, integer=True)).value
        self.family = p("task_family", "", describe("task family of each episode ('' = random)")).value
        self.announce = p("announce_instruction", True, describe("also publish the task's instruction")).value
        self.ground_truth = p("publish_ground_truth", True, describe("publish the ground-truth topics")).value
        self.command_timeout = p("command_timeout_s", 0.2, describe("a twist older than this is ignored",
                                                                 read_only=False, lo=0.05, hi=5.0)).value
        self.realtime = p("realtime_factor", 1.0, describe("simulation speed relative to wall time", lo=0.1, hi=20.0)).value
        # The recording's topic names, relative (but /clock and /tf_static) so a namespace applies.
        self.topics = SimTopics(**{k: relative(v) for k, v in SimTopics().as_dict().items()})
        for name in SimTopics.names():
            setattr(self.topics, name, p(f"topics.{name}", getattr(self.topics, name), describe(f"topic: {name}")).value)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.env = TabletopEnv(image_size=(int(height), int(width)), control_hz=self.control_rate, visual=visual)
        self.rejections = RejectionCounter()
        self._twist: np.ndarray | None = None
        self._twist_wall = 0.0
        self._trajectory: ActiveTrajectory | None = None
        self._episode = 0
        self._camera_every = max(1, int(round(self.control_rate / self.camera_rate)))

        t = self.topics
        self.pub_clock = self.create_publisher(Clock, t.clock, STREAM_QOS)
        self.pub_image = self.create_publisher(Image, t.image, CAMERA_QOS)
        self.pub_info = self.create_publisher(CameraInfo, t.camera_info, CAMERA_QOS)
        # the camera's pose, as a static broadcaster gives it
        self.pub_tf_static = self.create_publisher(TFMessage, t.tf_static, LATCHED_QOS) if TFMessage else None
        self.pub_joints = self.create_publisher(JointState, t.joint_states, STREAM_QOS)
        self.pub_instruction = self.create_publisher(String, t.instruction, INSTRUCTION_QOS)
        self.pub_seg = self.create_publisher(Image, t.gt_segmentation, CAMERA_QOS)
        self.pub_poses = self.create_publisher(PoseArray, t.gt_object_poses, STREAM_QOS)
        self.pub_ee = self.create_publisher(PoseStamped, "ground_truth/ee_pose", STREAM_QOS)
        self.pub_task = self.create_publisher(String, t.gt_task, LATCHED_QOS)
        self.pub_success = self.create_publisher(Bool, t.gt_success, LATCHED_QOS)
        self.pub_stats = self.create_publisher(String, "~/stats", STREAM_QOS)
        self.diagnostics = DiagnosticsPublisher(self)
        self.create_subscription(TwistStamped, t.twist_cmd, self._on_twist, COMMAND_QOS)
        self.create_subscription(JointTrajectory, t.joint_trajectory_cmd, self._on_trajectory, COMMAND_QOS)
        self.create_subscription(Float64, t.gripper_cmd, self._on_gripper, COMMAND_QOS)
        self.create_subscription(Int32, "~/reset", self._on_reset, COMMAND_QOS)
        self._reset(self.seed)
        self.create_timer(1.0 / (self.control_rate * self.realtime), self._tick)
        self.create_timer(STATUS_PERIOD_S, self._publish_stats)
        self.get_logger().info(f"sim_node up: {width}x{height} camera at {self.camera_rate} Hz, control at "
                               f"{self.control_rate} Hz, task: {self.env.task.instruction!r}")

    # ---- parameters / episodes ----------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        """command_timeout_s at run time (rclpy has checked the descriptor's range)."""
        for prm in params:
            if prm.name == "command_timeout_s":
                self.command_timeout = prm.value
        return SetParametersResult(successful=True)

    def _publish_camera_pose(self) -> None:
        """The camera's optical frame in the base frame on /tf_static (latched)."""
        from geometry_msgs.msg import TransformStamped

        if self.pub_tf_static is None:
            return
        pos, quat = self.env.camera_pose()
        tf = TransformStamped()
        tf.header.stamp, tf.header.frame_id, tf.child_frame_id = self.get_clock().now().to_msg(), BASE_FRAME, CAMERA_FRAME
        (tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z) = (float(v) for v in pos)
        (tf.transform.rotation.x, tf.transform.rotation.y, tf.transform.rotation.z,
         tf.transform.rotation.w) = (float(v) for v in quat)
        self.pub_tf_static.publish(TFMessage(transforms=[tf]))

    def _reset(self, seed: int) -> None:
        task = self.env.reset(seed=seed, family=self.family or None)
        self._twist = None
        self._trajectory = None
        self.pub_task.publish(String(data=json.dumps(task.as_dict())))
        self.pub_success.publish(Bool(data=False))
        self._publish_camera_pose()
        if self.announce:
            self.pub_instruction.publish(String(data=task.instruction))

    def _on_reset(self, msg: Int32) -> None:
        self._episode += 1
        self._reset(int(msg.data))
        self.get_logger().info(f"episode reset with seed {msg.data}: {self.env.task.instruction!r}")

    # ---- commands -----------------------------------------------------------------------------
    def _reject(self, topic: str, err: CommandRejected) -> None:
        n = self.rejections.add(topic, err.reason)
        self.get_logger().warning(f"rejected {topic} command ({err.reason}, #{n}): {err}; holding",
                                  throttle_duration_sec=1.0)
        self._twist = None
        self._trajectory = None
        self.env.hold()

    def _on_twist(self, msg: TwistStamped) -> None:
        v, w = msg.twist.linear, msg.twist.angular
        try:
            twist = check_twist([v.x, v.y, v.z, w.x, w.y, w.z], self.env.ee_position(), 1.0 / self.control_rate)
        except CommandRejected as err:
            self._reject("twist", err)
            return
        self._twist = twist
        self._twist_wall = time.monotonic()
        self._trajectory = None

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        """joint_trajectory_controller semantics: time_from_start counts from the header stamp (a
        zero stamp: now), the motion starts from the position currently commanded, and a
        trajectory that ended before it arrived is rejected (``late``) while the current one goes
        on. A malformed one (names, sizes, NaN, limits, time order) is rejected and the arm holds."""
        try:
            plan = check_joint_trajectory(
                list(msg.joint_names),
                [(list(pt.positions), pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9) for pt in msg.points],
                JOINT_NAMES, self.env.kin.lo, self.env.kin.hi)
        except CommandRejected as err:
            self._reject("joint_trajectory", err)
            return
        try:
            active = start_trajectory(plan, self.env.time, self._stamp_offset(msg.header.stamp), self.env.q_target)
        except CommandRejected as err:  # late: keep executing what the arm has (no hold, no jump)
            n = self.rejections.add("joint_trajectory", err.reason)
            self.get_logger().warning(f"rejected joint_trajectory command ({err.reason}, #{n}): {err}",
                                      throttle_duration_sec=1.0)
            return
        self._trajectory = active
        self._twist = None

    def _stamp_offset(self, stamp) -> float:
        """A header stamp -> simulation seconds from now (0 for a zero stamp). The node's clock is
        wall time unless use_sim_time; wall seconds pass ``realtime_factor`` times as fast here."""
        ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        if ns == 0:
            return 0.0
        offset = (ns - self.get_clock().now().nanoseconds) * 1e-9
        return offset if self.get_parameter("use_sim_time").value else offset * self.realtime

    def _on_gripper(self, msg: Float64) -> None:
        try:
            self.env.command_gripper(check_gripper(msg.data))
        except CommandRejected as err:
            n = self.rejections.add("gripper", err.reason)
            self.get_logger().warning(f"rejected gripper command ({err.reason}, #{n}): {err}",
                                      throttle_duration_sec=1.0)

    # ---- simulation loop ----------------------------------------------------------------------
    def _tick(self) -> None:
        env = self.env
        if self._twist is not None:
            if time.monotonic() - self._twist_wall > self.command_timeout:
                self._twist = None  # stale: stop, do not keep moving on an old command
                env.hold()
            else:
                env.command_twist(self._twist)
        elif self._trajectory is not None:
            env.command_trajectory(self._trajectory)
        env.step()
        stamp = self._stamp()
        self.pub_clock.publish(Clock(clock=stamp))
        self._publish_joints(stamp)
        if self.ground_truth:
            self._publish_ground_truth(stamp)
        if env.steps_taken % self._camera_every == 0:
            self._publish_camera(stamp)

    def _stamp(self):
        """The node's clock (wall time, or /clock under use_sim_time), as a camera driver stamps:
        consumers judge the age of a frame against their own clock."""
        return self.get_clock().now().to_msg()

    def _publish_joints(self, stamp) -> None:
        env = self.env
        msg = JointState()
        msg.header.stamp, msg.header.frame_id = stamp, BASE_FRAME
        msg.name = list(JOINT_NAMES) + list(FINGER_NAMES)
        msg.position = np.r_[env.joint_positions(), env.data.qpos[env.ids.finger_qpos]].tolist()
        msg.velocity = np.r_[env.joint_velocities(), env.data.qvel[env.ids.finger_qpos]].tolist()
        self.pub_joints.publish(msg)

    def _publish_ground_truth(self, stamp) -> None:
        env = self.env
        poses = PoseArray()
        poses.header.stamp, poses.header.frame_id = stamp, "world"
        for obj in OBJECTS:
            p, q = env.object_pose(obj.name)
            poses.poses.append(Pose(position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                                    orientation=Quaternion(w=float(q[0]), x=float(q[1]), y=float(q[2]), z=float(q[3]))))
        self.pub_poses.publish(poses)
        ee = PoseStamped()
        ee.header.stamp, ee.header.frame_id = stamp, BASE_FRAME
        p = env.ee_position()
        ee.pose.position = Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
        self.pub_ee.publish(ee)
        if env.steps_taken % int(self.control_rate) == 0:
            self.pub_success.publish(Bool(data=env.success()))

    def _publish_camera(self, stamp) -> None:
        env = self.env
        frame = env.render(segmentation=self.ground_truth)
        self.pub_image.publish(self._image(stamp, frame.rgb, "rgb8"))
        if frame.labels is not None:
            self.pub_seg.publish(self._image(stamp, frame.labels, "mono8"))
        info = CameraInfo()
        info.header.stamp, info.header.frame_id = stamp, CAMERA_FRAME
        info.height, info.width = env.height, env.width
        k = env.intrinsics()
        info.k = k.reshape(-1).tolist()
        info.r = np.eye(3).reshape(-1).tolist()
        info.p = np.c_[k, np.zeros(3)].reshape(-1).tolist()
        info.distortion_model, info.d = "plumb_bob", [0.0] * 5
        self.pub_info.publish(info)

    @staticmethod
    def _image(stamp, arr: np.ndarray, encoding: str) -> Image:
        msg = Image()
        msg.header.stamp, msg.header.frame_id = stamp, CAMERA_FRAME
        msg.height, msg.width = arr.shape[:2]
        msg.encoding, msg.is_bigendian = encoding, 0
        msg.step = arr.shape[1] * (3 if encoding == "rgb8" else 1)
        msg.data = np.ascontiguousarray(arr).tobytes()  # tobytes(): assigning the ndarray is ~500x slower
        return msg

    def _publish_stats(self) -> None:
        """The simulator's counters as JSON on ~/stats and as its status on /diagnostics."""
        stats = {"sim_time": self.env.time, "steps": self.env.steps_taken, "episode": self._episode,
                 "rejected": self.rejections.counts, "rejected_total": self.rejections.total}
        self.pub_stats.publish(String(data=json.dumps(stats)))
        self.diagnostics.publish(stats)

    def destroy_node(self) -> None:
        self.env.close()
        super().destroy_node()


def main() -> int:
    return run(SimNode)


if __name__ == "__main__":
    sys.exit(main())
