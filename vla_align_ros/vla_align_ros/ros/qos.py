"""Every QoS profile the package's nodes and tools use, named by what travels on the topic."""

from __future__ import annotations

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# Instructions: reliable, transient local, depth 1, so a late joiner still gets the last command.
INSTRUCTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Cameras, camera_info, masks, overlays: best effort, small queue (sensor data).
CAMERA_QOS = qos_profile_sensor_data
# Streams where every message counts but a late joiner needs no history: joint states, /clock,
# grounding results, progress, action chunks, status, e-stop.
STREAM_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Commands as the arm's side takes them: reliable, only the newest matters.
COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
# The newest value of a state, kept for late joiners (the simulator's task and success).
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# /tf_static as tf2's static broadcaster offers it (transient local), with room for several frames.
TF_STATIC_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Training progress: the last rows stay for a monitor that starts late.
PROGRESS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# /diagnostics as diagnostic_updater publishes it (reliable, volatile).
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Recording every message of a topic: best effort matches any publisher, a deep queue rides out bursts.
RECORD_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
# The bench's image ping-pong: reliable, a few in flight.
ROUND_TRIP_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def command_out_qos(deadline_s: float) -> QoSProfile:
    """The policy's command publishers: COMMAND_QOS plus an offered deadline, so a stalled
    command path raises deadline events here and on any subscriber that requests one."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      deadline=Duration(nanoseconds=int(deadline_s * 1e9)))
