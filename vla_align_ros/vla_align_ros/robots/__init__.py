"""The robot as a real deployment knows it: a robot description file (URDF or MJCF) read by a
kinematics library, and a calibrated camera (``camera_info`` intrinsics, pose from ``/tf_static``
or a parameter). Nothing here knows the simulator; another arm needs only its own files."""

from .camera import CameraModel, CameraPoseError, camera_from_info, quaternion_to_matrix
from .kinematics import RobotDescriptionError, RobotKinematics

__all__ = ["CameraModel", "CameraPoseError", "camera_from_info", "quaternion_to_matrix", "RobotDescriptionError",
           "RobotKinematics"]
