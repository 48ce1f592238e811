"""``trainer_node``: the same training as ``vla-align train``, configured by ROS parameters,
reporting progress on a topic (std_msgs/String, JSON) while it runs and its state on
/diagnostics every second. SIGINT or SIGTERM (Ctrl-C,
or launch shutting down) stops training after the current step, saves the resume state, reports
``{"state": "stopped", ...}`` and exits 0; ``resume:=true`` with the same ``out`` continues."""

from __future__ import annotations

import json
import signal
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String

from .diagnostics import STATUS_PERIOD_S, DiagnosticsPublisher
from .params import describe
from .qos import PROGRESS_QOS


class TrainerNode(Node):
    def __init__(self) -> None:
        super().__init__("trainer_node")
        self.bags = list(self.declare_parameter("bags", [""], describe("rosbag2 folders to train on")).value)
        self.config = self.declare_parameter("config", "", describe("training YAML: a path, or a name under the "
                                                                    "package's config/ ('' = train/sim_tiny.yaml)")).value
        self.out = self.declare_parameter("out", "runs/train", describe("run folder")).value
        self.resume = self.declare_parameter("resume", False, describe("continue a stopped run")).value
        self.steps = self.declare_parameter("steps", 0, describe("override the config's step count (0 = keep)",
                                                                 lo=0, hi=10**9, integer=True)).value
        self.every = self.declare_parameter("progress_every", 10, describe("publish progress every N steps",
                                                                           lo=1, hi=10**6, integer=True)).value
        self.shutdown_when_done = self.declare_parameter("shutdown_when_done", True,
                                                         describe("exit after training")).value
        self.pub = self.create_publisher(String, "~/progress", PROGRESS_QOS)
        self.diagnostics = DiagnosticsPublisher(self)
        self.last_progress: dict = {"state": "starting"}
        self.create_timer(STATUS_PERIOD_S, lambda: self.diagnostics.publish(self.last_progress))
        self.done = threading.Event()
        self.stop = threading.Event()  # set by SIGINT/SIGTERM: save the resume state and return
        self.ok = False
        bags = [b for b in self.bags if b]
        if not bags:
            raise ValueError("parameter 'bags' is empty: give at least one rosbag2 folder")
        # Not a daemon: the process waits for the step in progress and the resume state to be saved.
        self.thread = threading.Thread(target=self._run, args=(bags,), name="training")
        self.thread.start()

    def _publish(self, payload: dict) -> None:
        self.last_progress = payload
        self.pub.publish(String(data=json.dumps(payload)))

    def _run(self, bags: list[str]) -> None:
        from ..paths import config_file
        from ..training.run_dir import RunDir
        from ..training.trainer import TrainConfig, train

        try:
            cfg = TrainConfig.from_yaml(config_file(self.config or "train/sim_tiny.yaml"))
            if self.steps > 0:
                cfg.steps = int(self.steps)
            self.get_logger().info(f"training on {bags} for {cfg.steps} steps into {self.out}")

            def on_progress(row: dict) -> None:
                if row["step"] % self.every == 0 or row["step"] + 1 == row["steps"]:
                    self._publish({"state": "training", **row})

            result = train(bags, cfg, self.out, resume=self.resume, progress=False, on_progress=on_progress,
                           should_stop=self.stop.is_set)
            if result["finished"]:
                self.ok = True
                self._publish({"state": "finished", "run_dir": str(self.out), "steps": result["steps"]})
                self.get_logger().info(f"training finished: {RunDir(self.out).checkpoint}")
            else:
                self.ok = self.stop.is_set()
                self._publish({"state": "stopped", "run_dir": str(self.out), "steps": result["steps"],
                               "resume": f"resume:=true out:={self.out}"})
                self.get_logger().info(f"training stopped after step {result['steps']} of {cfg.steps}; the resume "
                                       f"state is in {RunDir(self.out).resume} (resume:=true continues)")
        except Exception as e:  # noqa: BLE001 - reported on the topic and in the log, never swallowed
            self._publish({"state": "failed", "error": f"{type(e).__name__}: {e}"})
            self.get_logger().error(f"training failed: {type(e).__name__}: {e}")
        finally:
            self.done.set()


def main(args: list[str] | None = None) -> int:
    # rclpy's own handlers would shut the context down at once; here a signal asks the training
    # thread to stop, and the process exits when its resume state is saved.
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        node = TrainerNode()
    except ValueError as e:
        print(f"trainer_node: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    code = 0
    try:
        while rclpy.ok() and not (node.done.is_set() and node.shutdown_when_done):
            if stop_requested.is_set() and not node.stop.is_set():
                node.get_logger().info("stop requested: finishing the current step and saving the resume state")
                node.stop.set()
            if stop_requested.is_set() and node.done.is_set():
                break
            rclpy.spin_once(node, timeout_sec=0.1)
        node.thread.join()
        code = 0 if node.ok else 1
        for _ in range(5):  # let the last progress message go out
            rclpy.spin_once(node, timeout_sec=0.1)
    except ExternalShutdownException:
        node.stop.set()
        node.thread.join()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
