"""What stands between the policy and the arm (pure Python, no ROS): the safety filter, the
input watchdog, the e-stop latch and the stamp freshness filter."""

from .freshness import StampFilter
from .safety import (EStopLatch, FilterResult, JointLimits, SafetyCounters, TwistLimits, Watchdog, filter_gripper,
                     filter_joint_target, filter_twist)

__all__ = ["EStopLatch", "FilterResult", "JointLimits", "SafetyCounters", "StampFilter", "TwistLimits", "Watchdog",
           "filter_gripper", "filter_joint_target", "filter_twist"]
