"""``policy_node``: camera + instruction + joint_states -> a policy (``policies``) -> action
chunks -> safety filter -> arm.

A lifecycle node: configure loads the checkpoint onto the configured device and the policy named
by the ``policy`` parameter, activate starts commanding, deactivate sends one hold and goes
quiet, cleanup frees the model. The robot is its description (the ``robot`` parameter: a
``config/robots`` name or YAML file, read through Pinocchio), the camera its camera_info and the
optical frame's pose on /tf_static (or the robot config's ``camera_pose``): nothing here knows
the simulator. An instruction the policy refuses (a question, a negation, nothing to act on in
view) is a counted drop with the reason on the status topic, and the arm does not move.

The executor thread only converts images and hands the newest frame to the session's inference
thread (``ModelLifecycleNode._submit_frame``); the model runs there and publishes the chunk.
The control timer (plays the latest chunk through the safety filter at a fixed rate) and the
watchdog therefore never wait on the model: slow inference cannot delay a hold. The arm never moves on a stale image,
a stale chunk, a missing instruction, a non-finite value or while the e-stop is latched: the
control timer sends exactly one hold (zero twist, or the current joint positions) and then
stays silent until everything is fresh again.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration as RclDuration
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..control import EStopLatch, JointTargetStream, SafetyCounters, TwistLimits, Watchdog, stream_limits
from ..control.command_router import SPACE_MISMATCH, SPACE_UNKNOWN, CommandRouter
from ..control.safety import joint_indices
from ..data.joint_state import VelocityTracker, model_state
from ..model.action_space import check_command_mode
from ..policies import DEFAULT_POLICY, POLICIES, Observation, Refusal, RobotInterface, make_policy
from .model_node import ModelLifecycleNode, stamp_ns
from .process import run
from .params import describe
from .qos import CAMERA_QOS, INSTRUCTION_QOS, STREAM_QOS, TF_STATIC_QOS, command_out_qos
from .topics import POLICY_TOPICS

try:  # a ROS install has tf2_msgs; the PyPI wheels do not (then the robot config's camera_pose gives the pose)
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

HOLD_ACK_S = 0.5  # longest a stop waits for the subscribers to acknowledge the final hold


def duration_to_msg(seconds: float) -> Any:
    from builtin_interfaces.msg import Duration

    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class PolicyNode(ModelLifecycleNode):
    PUBLISHERS = ("pub_twist", "pub_traj", "pub_gripper", "pub_chunk", "pub_status")
    TOPICS = POLICY_TOPICS

    def __init__(self, session: Any = None, name: str = "policy_node") -> None:
        super().__init__(name, session)
        p = self.declare_parameter
        self.p_mode = p("command_mode", "twist", describe("'twist' (TwistStamped to a Cartesian servo) or "
                                                          "'joint_trajectory' (joint_trajectory_controller)")).value
        self.p_policy = p("policy", DEFAULT_POLICY, describe(
            "'affordance': the model's intent head and pick/place maps drive motion primitives; 'chunk': the "
            "learned action-chunk head; 'rules': the rule-parser baseline")).value
        self.p_robot = p("robot", "panda", describe("robot description config: a config/robots name or a YAML "
                                                    "file (description, ee_frame, base_frame, table_z, ...)")).value
        self.p_rate = p("control_rate_hz", 20.0, describe("rate commands are sent at", lo=1.0, hi=500.0)).value
        self.p_image_age = p("image_max_age_s", 0.5, describe("no command from an image older than this",
                                                              read_only=False, lo=0.01, hi=10.0)).value
        self.p_timeout = p("command_timeout_s", 0.5, describe("hold when model output is older than this",
                                                             read_only=False, lo=0.01, hi=10.0)).value
        self.p_estop_hb = p("estop_heartbeat_s", 0.0, describe("e-stop publisher silent this long counts as a stop "
                                                              "(0 = no heartbeat required)", lo=0.0, hi=60.0)).value
        self.p_max_lin = p("max_linear_speed", 0.25, describe("m/s", read_only=False, lo=0.001, hi=2.0)).value
        self.p_max_ang = p("max_angular_speed", 1.0, describe("rad/s", read_only=False, lo=0.001, hi=6.0)).value
        self.p_lin_step = p("max_linear_change", 0.08, describe("m/s per control cycle", lo=0.001, hi=2.0)).value
        self.p_ang_step = p("max_angular_change", 0.4, describe("rad/s per control cycle", lo=0.001, hi=6.0)).value
        self.p_ws_low = list(p("workspace_low", [0.25, -0.35, 0.045], describe("end-effector box, base frame, m")).value)
        self.p_ws_high = list(p("workspace_high", [0.75, 0.35, 0.45], describe("end-effector box, base frame, m")).value)
        self.p_gripper = list(p("gripper_range", [0.0, 0.08], describe("gripper width limits, m")).value)
        # unset: from the robot description, on configure
        self._joint_names_param: list[str] | None = p("joint_names", Parameter.Type.STRING_ARRAY, describe(
            "arm joints the model commands, in order (unset: the robot description's joints from its base to "
            "ee_frame)")).value
        self._state_names_param: list[str] | None = p("state_joint_names", Parameter.Type.STRING_ARRAY, describe(
            "joint_states entries the model reads as its state, in order (unset: joint_names, then the robot "
            "config's gripper_joints)")).value
        self.p_joint_names: list[str] = []
        self.p_state_names: list[str] = []
        self.p_deadline = p("command_deadline_s", 1.0, describe(
            "deadline offered on the command topics: a gap longer than this raises a deadline event here and on "
            "any subscriber that requests one (after a hold the node is silent on purpose, and says so)",
            lo=0.01, hi=60.0)).value
        self.p_require_security = p("require_security", False, describe(
            "refuse to activate unless ROS_SECURITY_ENABLE=true and ROS_SECURITY_STRATEGY=Enforce (SROS2)")).value
        self.p_js_wait = p("joint_states_wait_s", 0.0, describe("configure waits this long for one joint_states "
                                                               "message and fails if its names do not match "
                                                               "(0 = do not wait; mismatches are then counted drops)",
                                                               lo=0.0, hi=60.0)).value
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lock = threading.Lock()
        self._velocity: VelocityTracker | None = None  # set in configure for a model that reads velocities
        self._reset_state()

    # ---- state ----------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self._state: np.ndarray | None = None
        self._arm_q: np.ndarray | None = None
        if self._velocity is not None:
            self._velocity.reset()
        # ((H, A), monotonic of its image, its action space, its dimension names)
        self._chunk: tuple[np.ndarray, float, str, tuple[str, ...]] | None = None
        if getattr(self, "router", None) is not None:
            self.router.reset()
        self._moving = False  # the last thing sent was a motion command (so a hold is owed on stale input)
        self.counters = SafetyCounters()
        self.drops = {}
        self.inference_ms: list[float] = []
        # the instruction the policy was last reset with (None: none, or it refused; inference thread)
        self._plan: str | None = None
        self.plan_text = ""  # what the policy made of it
        # The last instruction this node accepted: its own record, since a session shared with
        # perception_node in one process has already been given the same text by that node.
        self._accepted: str | None = None
        self.last_refusal: dict[str, str] | None = None

    def _on_set_parameters(self, params) -> Any:
        """Run-time changes: timeouts and speed limits, from the next control cycle. rclpy has
        already refused a read-only parameter, a wrong type or a value outside the descriptor's range."""
        from rcl_interfaces.msg import SetParametersResult

        new = {prm.name: prm.value for prm in params}
        self.p_image_age = float(new.get("image_max_age_s", self.p_image_age))
        self.p_timeout = float(new.get("command_timeout_s", self.p_timeout))
        self.p_max_lin = float(new.get("max_linear_speed", self.p_max_lin))
        self.p_max_ang = float(new.get("max_angular_speed", self.p_max_ang))
        if self.watchdog is not None:
            self.watchdog.timeout_s = self.p_timeout
        if getattr(self, "router", None) is not None:
            with self._state_lock:
                self.router.twist_limits = self._twist_limits()
        return SetParametersResult(successful=True)

    def _twist_limits(self) -> TwistLimits:
        return TwistLimits(self.p_max_lin, self.p_max_ang, self.p_lin_step, self.p_ang_step, tuple(self.p_ws_low),
                           tuple(self.p_ws_high))

    watchdog: Watchdog | None = None
    deadline_events = 0  # deadline events on the command topics (since configure)
    policy: Any = None
    plan_phase = ""  # the policy's phase at the last frame
    plan_finishing = False  # ... and whether the task is achieved (a repeated instruction then restarts it)

    # ---- lifecycle ------------------------------------------------------------------------------
    def _configure(self) -> TransitionCallbackReturn:
        self._accepted = None
        # Validation first: nothing is created when a parameter is wrong.
        if self.p_mode not in ("twist", "joint_trajectory"):
            raise ValueError(f"command_mode={self.p_mode!r}: use 'twist' or 'joint_trajectory'")
        if self.p_policy not in POLICIES:
            raise ValueError(f"policy={self.p_policy!r}: use one of {sorted(POLICIES)}")
        self._check_transport()
        if len(self.p_gripper) != 2 or not self.p_gripper[0] < self.p_gripper[1]:
            raise ValueError(f"gripper_range={self.p_gripper}: need [low, high] with low < high")
        from ..robots.config import RobotConfig

        self.robot_cfg = RobotConfig.load(self.p_robot)
        # The control timer's kinematics (workspace check, joint targets); the policy has its own
        # (inference thread), so the two never share Pinocchio's data.
        self.kin = self.robot_cfg.kinematics()
        self.p_joint_names = list(self._joint_names_param or self.kin.arm_joints)
        self.p_state_names = list(self._state_names_param or self.p_joint_names + list(self.robot_cfg.gripper_joints))
        # One chunk row -> a twist, a joint target or a hold (the in-process rollout runs the same
        # router); joint_trajectory mode streams targets from the router's joint stream. Unknown
        # joint names are a clear error here.
        self.joint_limits = stream_limits(self.kin, self.p_joint_names, 1.0 / self.p_rate)
        self.router = CommandRouter(self.p_mode, JointTargetStream(self.kin, self.p_joint_names, self.joint_limits),
                                    self._twist_limits(), (float(self.p_gripper[0]), float(self.p_gripper[1])))
        if self.p_js_wait > 0:
            self._check_joint_states(self.p_js_wait)
        self._load_session()
        model_state = self.session.model.cfg.action.state_dim
        if model_state and model_state != len(self.p_state_names):
            raise ValueError(f"the model reads {model_state} state values; state_joint_names has "
                             f"{len(self.p_state_names)}: {self.p_state_names}")
        self._velocity = VelocityTracker() if self.session.model.cfg.action.velocity else None
        self._reset_state()
        self.robot = RobotInterface(self.robot_cfg.kinematics(), list(self.p_joint_names), None, (0, 0),
                                    self.robot_cfg.table_z, float(self.p_gripper[1]), float(self.p_gripper[0]))
        self._camera_parts: dict[str, Any] = {"tf": {}}  # camera_info's k, hw, frame; /tf_static's edges
        self.policy = make_policy(self.p_policy, self.session, self.robot)
        if self.p_policy == "chunk":
            # the chunk policy sends the model's own actions: they must be in a space this
            # command mode carries (a joint-delta model cannot drive a servo, nor a twist model
            # a trajectory controller); the other policies emit twists that joint mode converts by IK
            check_command_mode(self.policy.space, self.p_mode, self.p_joint_names)
            self.get_logger().info(f"checkpoint action space: {self.policy.space.describe()} "
                                   f"({self.policy.space_source}); sent as {self.p_mode}")
        self.watchdog = Watchdog(["image", "model"], self.p_timeout)
        self._input_checks()
        self.estop = EStopLatch(self.p_estop_hb)
        if self.p_estop_hb <= 0:
            self.estop.on_message(False, time.monotonic())
        self.g_infer = MutuallyExclusiveCallbackGroup()
        self.g_control = MutuallyExclusiveCallbackGroup()
        t = self.t
        cmd_qos = command_out_qos(self.p_deadline)
        self.deadline_events = 0

        def command_publisher(msg_type: Any, topic: str) -> Any:
            from rclpy.event_handler import PublisherEventCallbacks

            events = self._qos_events(topic, publisher=True)
            return self.create_lifecycle_publisher(msg_type, topic, cmd_qos, event_callbacks=PublisherEventCallbacks(
                deadline=lambda info: self._on_deadline(topic, info), incompatible_qos=events.incompatible_qos))

        self.pub_twist = command_publisher(TwistStamped, t["twist_cmd"])
        self.pub_traj = command_publisher(JointTrajectory, t["joint_trajectory_cmd"])
        self.pub_gripper = command_publisher(Float64, t["gripper_cmd"])
        from vla_align_msgs.msg import ActionChunk

        self.pub_chunk = self.create_lifecycle_publisher(ActionChunk, t["action_chunk"], STREAM_QOS)
        self.pub_status = self.create_lifecycle_publisher(String, t["status"], STREAM_QOS)

        def sub(msg_type: Any, key: str, cb: Any, qos: Any, group: Any) -> Any:
            return self.create_subscription(msg_type, t[key], cb, qos, callback_group=group,
                                            event_callbacks=self._qos_events(t[key], publisher=False))

        self._sub_list = [
            self._image_subscription(t["image"], self._on_image, CAMERA_QOS, self.g_infer,
                                     event_callbacks=self._qos_events(t["image"], publisher=False)),
            sub(CameraInfo, "camera_info", self._on_camera_info, CAMERA_QOS, self.g_control),
            sub(String, "instruction", self._on_instruction, INSTRUCTION_QOS, self.g_infer),
            sub(JointState, "joint_states", self._on_joints, STREAM_QOS, self.g_control),
            sub(Bool, "estop", self._on_estop, STREAM_QOS, self.g_control),
            sub(Bool, "estop_reset", self._on_estop_reset, STREAM_QOS, self.g_control),
        ]
        if TFMessage is not None:
            self._sub_list.append(sub(TFMessage, "tf_static", self._on_tf_static, TF_STATIC_QOS, self.g_control))
        elif self.robot_cfg.camera_pose is None and self.p_policy != "chunk":
            self.get_logger().warning(f"tf2_msgs is not installed, so /tf_static cannot be read, and robot "
                                      f"{self.p_robot!r} has no camera_pose: frames are dropped (camera_unknown) "
                                      "until the robot config gives the camera's pose")
        self._timer_list = [self.create_timer(1.0 / self.p_rate, self._control, callback_group=self.g_control),
                            self._graph_timer(self.g_control)]
        self.get_logger().info(f"configured: {self.p_mode} commands at {self.p_rate} Hz on {self.session.device}")
        return TransitionCallbackReturn.SUCCESS

    def _check_joint_states(self, wait_s: float) -> None:
        """One joint_states message must arrive, name every configured joint and carry a position
        for each name; otherwise configure fails with what is missing."""
        from rclpy.wait_for_message import wait_for_message

        ok, msg = wait_for_message(JointState, self, self.t["joint_states"], time_to_wait=wait_s)
        if not ok:
            raise ValueError(f"no joint_states on {self.t['joint_states']} within {wait_s} s")
        names = list(msg.name)
        joint_indices(self.p_state_names + self.p_joint_names, names)
        if len(msg.position) != len(names):
            raise ValueError(f"joint_states names {len(names)} joints but carries {len(msg.position)} positions")

    def _on_deadline(self, topic: str, info: Any) -> None:
        """A command topic went longer than ``command_deadline_s`` without a message."""
        self.deadline_events = int(info.total_count)
        if self._moving:
            self.get_logger().error(f"{topic}: no command for {self.p_deadline} s while moving: the command "
                                    f"path is stalled", throttle_duration_sec=1.0)
        else:
            self.get_logger().info(f"{topic}: deadline passed with the arm holding (silent on purpose after a "
                                   f"hold; {info.total_count} deadline events)", throttle_duration_sec=5.0)

    def on_activate(self, state: Any) -> TransitionCallbackReturn:
        if self.p_require_security:
            enable, strategy = os.environ.get("ROS_SECURITY_ENABLE"), os.environ.get("ROS_SECURITY_STRATEGY")
            if enable != "true" or strategy != "Enforce":
                self.get_logger().error(f"require_security: refusing to activate the command output with "
                                        f"ROS_SECURITY_ENABLE={enable!r}, ROS_SECURITY_STRATEGY={strategy!r} "
                                        f"(need 'true' and 'Enforce')")
                return TransitionCallbackReturn.FAILURE
        self.stamps.reset()
        return super().on_activate(state)

    def _before_stop(self, why: str) -> None:
        """One hold, then silence; waits (at most HOLD_ACK_S) until every reliable subscriber has
        the hold, so a process that exits next does not take it down with its DDS participant."""
        if self._moving or self._chunk is not None:
            self._send_hold(why)  # publishers are still active here
            pub = self.pub_twist if self.p_mode == "twist" else self.pub_traj
            if not pub.wait_for_all_acked(RclDuration(seconds=HOLD_ACK_S)):
                self.get_logger().warning(f"the final hold was not acknowledged within {HOLD_ACK_S} s")

    # ---- inputs ---------------------------------------------------------------------------------
    def _instruction(self, text: str) -> None:
        if text == self._accepted and self.session.instruction is not None and text == self.session.instruction.text:
            if self.plan_finishing:
                self._new_plan(text)  # said again once the task is done (retreating or still): do it again
            return  # the same instruction again (latched topics resend it): nothing changes
        enc = self.session.set_instruction(text)
        self._accepted = enc.text
        self.stamps.reset()
        with self._lock:
            self._chunk = None
            self.router.reset()
        self.get_logger().info(f"instruction: {enc.text!r} ({len(enc.steps)} step(s))")
        self._new_plan(enc.text)

    def _new_plan(self, text: str) -> None:
        """Reset the policy with ``text`` on the inference thread (where it acts), now rather than
        at the next frame: a refusal is a counted drop with its reason at once, and no motion."""
        self.plan_phase, self.plan_finishing = "", False
        with self._lock:
            self._plan = None
        try:
            self.session.submit(lambda: self._reset_policy(text))
        except RuntimeError:  # the session is closing
            pass

    def _reset_policy(self, text: str) -> None:
        """Inference thread."""
        if self.session is None or self.session.instruction is None or self.session.instruction.text != text:
            return  # superseded by a newer instruction
        try:
            account = self.policy.reset(text)
        except Refusal as r:
            self._refused(text, r)
            return
        with self._lock:
            self._plan = text
        self.plan_text, self.last_refusal = account, None
        self.get_logger().info(f"{self.p_policy} policy: {text!r} -> {account}")

    def _refused(self, text: str, r: Refusal) -> None:
        with self._lock:
            self._plan = None
            self._chunk = None
        self.last_refusal = {"instruction": text, "reason": r.reason, "detail": r.detail}
        self.plan_text = ""
        self._drop(f"refused_{r.reason}", f"the arm will not move for {text!r}: {r.detail}")

    def _on_joints(self, msg: JointState) -> None:
        names = list(msg.name)
        if len(msg.position) != len(names):
            self._drop("joint_states", f"{len(names)} names but {len(msg.position)} positions")
            return
        try:
            idx = joint_indices(self.p_state_names, names)
            arm_idx = joint_indices(self.p_joint_names, names)
        except ValueError as e:
            self._drop("joint_states", str(e))
            return
        pos = np.asarray(msg.position, dtype=float)
        if not np.all(np.isfinite(pos[idx])):
            self._drop("joint_states", "non-finite joint positions")
            return
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        state = model_state(pos, np.asarray(msg.velocity, dtype=float), idx, stamp, self._velocity)
        self._state, self._arm_q = state, pos[arm_idx]
        if self.session is not None:
            self.session.latest_state = self._state

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if self._camera_parts.get("k") is None or self._camera_parts.get("hw") != (msg.height, msg.width):
            self._camera_parts.update(k=list(msg.k), hw=(int(msg.height), int(msg.width)),
                                      frame=msg.header.frame_id)
            self._update_camera()

    def _on_tf_static(self, msg: TFMessage) -> None:
        for tf in msg.transforms:
            tr, rot = tf.transform.translation, tf.transform.rotation
            self._camera_parts["tf"][tf.child_frame_id] = (tf.header.frame_id, [tr.x, tr.y, tr.z],
                                                            [rot.x, rot.y, rot.z, rot.w])
        self._update_camera()

    def _update_camera(self) -> None:
        """The camera model from camera_info and the optical frame's pose (composed up the
        /tf_static tree to the base frame, or the robot config's camera_pose)."""
        from ..robots.camera import CameraPoseError, chain_to_root

        parts = self._camera_parts
        if parts.get("k") is None:
            return
        frame = parts.get("frame", "")
        if frame in parts["tf"]:
            try:
                pose = chain_to_root(parts["tf"], frame)
            except CameraPoseError as e:
                self._drop("camera_pose", str(e))
                return
        elif self.robot_cfg.camera_pose is not None:
            pose = ("", None, None)  # RobotConfig.camera falls back to its camera_pose
        else:
            return
        try:
            camera = self.robot_cfg.camera(parts["k"], pose[0], pose[1], pose[2], f"camera {frame!r}")
        except CameraPoseError as e:
            self._drop("camera_pose", str(e))
            return
        if self.robot.camera is None:
            self.get_logger().info(f"camera {frame!r} calibrated: intrinsics from camera_info, pose in "
                                   f"{self.robot_cfg.base_frame!r}")
        self.robot.camera, self.robot.camera_hw = camera, parts["hw"]

    def _on_estop(self, msg: Bool) -> None:
        was = self.estop.latched
        self.estop.on_message(bool(msg.data), time.monotonic())
        if self.estop.latched and not was:
            self.get_logger().error(f"E-STOP: {self.estop.reason}; latched until a reset on {self.t['estop_reset']}")
            with self._state_lock:
                if self._active:
                    self._send_hold("e-stop")

    def _on_estop_reset(self, msg: Bool) -> None:
        if msg.data and self.estop.reset(time.monotonic()):
            self.get_logger().warning("e-stop reset")

    def _frame_job(self, msg: Any, img: np.ndarray, t0: float) -> tuple[Any, np.ndarray, np.ndarray | None, float]:
        """A fresh colour frame feeds the image watchdog; the job carries the joint state it goes with."""
        now = time.monotonic()
        self.watchdog.feed("image", now)
        return msg, img, self._state, now

    def _process_frame(self, job: tuple[Image, np.ndarray, np.ndarray | None, float]) -> None:
        """Inference thread: one forward, the chunk stored for the control timer and published."""
        msg, img, state, received = job
        t0 = time.perf_counter()
        instruction = self.session.instruction
        with self._lock:
            plan = self._plan
        if plan is None or instruction is None or plan != instruction.text or self._arm_q is None:
            return  # no accepted instruction (or no joint state yet): no chunk, so the watchdog holds the arm
        if self.robot.camera is None and self.p_policy != "chunk":
            self._drop("camera_unknown", f"no camera model yet: waiting for {self.t['camera_info']} and the "
                                         f"optical frame's pose on {self.t['tf_static']} (or the robot's camera_pose)")
            return
        try:
            chunk = self.policy.act(Observation(img, self._arm_q, state,
                                                msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
                                                stamp_ns(msg.header.stamp)))
        except Refusal as r:
            with self._state_lock:
                if self._active and self._moving:
                    self._send_hold(f"refused: {r.reason}")
            self._refused(instruction.text, r)
            return
        except Exception as e:  # noqa: BLE001 - a model failure must hold the arm, not kill the node
            with self._state_lock:
                if self._active and self._moving:
                    self._send_hold("inference error")
                with self._lock:
                    self._chunk = None  # nothing of the old chunk is played after a failure
            self._inference_failed(e)
            return
        self._inference_ok()
        actions = chunk.actions
        self.plan_phase, self.plan_finishing = chunk.phase, chunk.finishing
        if "located" in chunk.info:  # where a step will act: what a failed episode is read from
            where = ", ".join(f"{k} ({', '.join(f'{v:+.3f}' for v in p)})" for k, p in chunk.info["located"].items())
            self.get_logger().info(f"step {chunk.info.get('step', 0) + 1}: located (base frame, m): {where}")
        self.inference_ms.append((time.perf_counter() - t0) * 1e3)
        with self._state_lock:
            if not self._active:
                return
            if self.session.instruction is not instruction:  # a new instruction arrived meanwhile
                self._drop("instruction_changed", "chunk of the previous instruction discarded")
                return
            if not np.all(np.isfinite(actions)):
                self.counters.counts["non_finite_chunk"] = self.counters.counts.get("non_finite_chunk", 0) + 1
                self._send_hold("non-finite action chunk")
                return
            with self._lock:
                self._chunk = (actions, received, chunk.space, tuple(chunk.dims[: actions.shape[1]]))
            self.watchdog.feed("model", time.monotonic())
            self._publish_chunk(msg, chunk)

    def _publish_chunk(self, img: Image, chunk: Any) -> None:
        from vla_align_msgs.msg import ActionChunk

        actions = chunk.actions
        m = ActionChunk()
        m.header = img.header
        m.action_space = chunk.space
        m.dimension_names = list(chunk.dims[: actions.shape[1]])
        m.horizon = int(actions.shape[0])
        m.time_step = float(1.0 / self.p_rate)
        m.data = actions.astype(np.float32).reshape(-1).tolist()
        self.pub_chunk.publish(m)

    # ---- control --------------------------------------------------------------------------------
    def _control(self) -> None:
        """Control group, fixed rate: the chunk step for now, through the safety filter; one hold
        when any input goes stale while the arm is moving, then silence."""
        with self._state_lock:
            self._control_locked()

    def _control_locked(self) -> None:
        if not self._active:
            return
        now = time.monotonic()
        if self.estop.check(now):
            if self._moving:  # a silent e-stop publisher latched it: this is the one hold
                self._send_hold(f"e-stop: {self.estop.reason}")
            return
        stale = self.watchdog.stale(now)
        if self.session.instruction is None:
            stale.append("instruction")
        if self._arm_q is None:
            stale.append("joint_states")
        with self._lock:
            chunk = self._chunk
        k = 0
        if chunk is not None:
            age = now - chunk[1]
            k = int(age * self.p_rate)
            if age > self.p_image_age:
                stale.append("image_age")
            elif k >= chunk[0].shape[0]:
                stale.append("chunk_exhausted")
        elif "model" not in stale:
            stale.append("model")
        if stale:
            if self._moving:
                self._send_hold(f"stale: {', '.join(stale)}")
            return
        self._command(chunk[0][k], chunk[2], chunk[3])

    def _command(self, row: np.ndarray, space: str, dims: tuple[str, ...]) -> None:
        """One chunk row to the arm through the command router: a filtered twist as a
        TwistStamped, or a joint target (a twist through the IK joint stream, or a joint_delta
        row) as a one-point JointTrajectory; a row the router holds (dropped by a filter, or in a
        space this mode cannot carry) is never sent: the arm holds."""
        dt = 1.0 / self.p_rate
        q = self._arm_q
        r = self.router.route(row, space, dims, q, self.kin.ee_pose(q, self.p_joint_names)[0], dt)
        for result in r.results:
            self.counters.add(result)
        if r.hold in (SPACE_MISMATCH, SPACE_UNKNOWN):
            self._count_hold(r.hold, r.detail)
            return
        if r.hold is not None:  # a filter dropped it (counted with the filter results)
            self._send_hold(r.detail)
            return
        if r.twist is not None:
            msg = TwistStamped()
            msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), self.robot_cfg.base_frame
            (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z, msg.twist.angular.x,
             msg.twist.angular.y, msg.twist.angular.z) = (float(v) for v in r.twist)
            self.pub_twist.publish(msg)
        else:
            self._publish_joint_target(r.joint_target, dt)
        self._moving = True
        if r.gripper is not None:
            self.pub_gripper.publish(Float64(data=r.gripper))

    def _count_hold(self, reason: str, why: str) -> None:
        self.counters.counts[reason] = self.counters.counts.get(reason, 0) + 1
        self._send_hold(why)

    def _publish_joint_target(self, q: np.ndarray, dt: float) -> None:
        """One point ``dt`` after the header stamp (now): joint_trajectory_controller reaches it by
        the end of this control period and the next cycle's trajectory replaces it."""
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = list(self.p_joint_names)
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in q], time_from_start=duration_to_msg(dt))]
        self.pub_traj.publish(msg)

    def _send_hold(self, why: str) -> None:
        """One hold: zero twist (servo) or the measured joint positions (trajectory)."""
        if not hasattr(self, "pub_twist"):
            return
        self.counters.counts["holds"] = self.counters.counts.get("holds", 0) + 1
        if self.p_mode == "twist":
            msg = TwistStamped()
            msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), self.robot_cfg.base_frame
            self.pub_twist.publish(msg)
        elif self._arm_q is not None:
            self._publish_joint_target(self._arm_q, 1.0 / self.p_rate)
        self.router.reset()  # motion after a hold starts from rest, from the measured position
        self._moving = False
        self.get_logger().warning(f"hold: {why}", throttle_duration_sec=1.0)

    def _status(self) -> dict[str, Any]:
        now = time.monotonic()
        lat = np.asarray(self.inference_ms[-200:]) if self.inference_ms else np.zeros(0)
        estop = getattr(self, "estop", None)  # both built on configure
        return {
            "active": self._active, "estop": bool(estop and estop.latched),
            "stale": self.watchdog.stale(now) if self.watchdog is not None else [],
            "deadline_events": self.deadline_events, "fault": self._fault,
            "safety": self.counters.counts, "drops": self.drops, "type_mismatch": self.type_mismatch,
            "policy": self.p_policy,
            "plan": self.plan_text, "plan_phase": self.plan_phase, "refusal": self.last_refusal,
            "inference_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "inference_ms_p99": float(np.percentile(lat, 99)) if lat.size else None, "model": self._model_counts()}


def main() -> int:
    return run(PolicyNode)


if __name__ == "__main__":
    sys.exit(main())
