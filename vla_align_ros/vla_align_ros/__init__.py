"""vla_align_ros: a trimodal (vision, language, action) alignment library and its ROS 2 nodes.

Everything below ``vla_align_ros.ros`` is plain PyTorch/NumPy and never imports rclpy.
"""

__version__ = "0.1.0"
