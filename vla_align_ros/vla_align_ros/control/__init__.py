"""What stands between the policy and the arm (pure Python, no ROS): the safety filter, the
input watchdog, the e-stop latch, the stamp freshness filter and the joint-target stream of
joint_trajectory mode."""

from .freshness import StampFilter
from .joint_stream import JointTargetStream, stream_limits
from .safety import (EStopLatch, FilterResult, JointLimits, SafetyCounters, TwistLimits, Watchdog, filter_gripper,
                     filter_joint_target, filter_twist)

__all__ = ["EStopLatch", "FilterResult", "JointLimits", "JointTargetStream", "SafetyCounters", "StampFilter",
           "TwistLimits", "Watchdog", "filter_gripper", "filter_joint_target", "filter_twist", "stream_limits"]
