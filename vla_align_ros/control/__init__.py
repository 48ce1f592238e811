"""What stands between the policy and the arm (pure Python, no ROS): the safety filter, the
input watchdog and the e-stop latch."""

from .safety import (EStopLatch, FilterResult, JointLimits, SafetyCounters, TwistLimits, Watchdog, filter_gripper,
                     filter_joint_target, filter_twist)

__all__ = ["EStopLatch", "FilterResult", "JointLimits", "SafetyCounters", "TwistLimits", "Watchdog", "filter_gripper",
           "filter_joint_target", "filter_twist"]
