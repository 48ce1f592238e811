"""Named QoS profiles used by every node."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# Instructions: reliable, transient local, depth 1, so a late joiner still gets the last command.
INSTRUCTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Cameras: best effort, small queue (sensor data).
CAMERA_QOS = qos_profile_sensor_data
