"""A pinhole camera in the robot's base frame: intrinsics from ``sensor_msgs/CameraInfo``, pose
from a ``/tf_static`` transform (base -> optical frame) or a parameter. Pure NumPy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


class CameraPoseError(ValueError):
    """A camera model that cannot be built: missing or non-finite intrinsics or pose."""


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """[x, y, z, w] (the ROS order) -> (3, 3) rotation matrix."""
    x, y, z, w = (float(v) for v in q)
    n = x * x + y * y + z * z + w * w
    if not np.isfinite(n) or n < 1e-12:
        raise CameraPoseError(f"quaternion {list(q)} is zero or not finite")
    s = 2.0 / n
    return np.array([[1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
                     [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
                     [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)]])


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera in the robot's base frame. ``rotation`` columns are the optical axes
    (x right, y down, z forward) expressed in the base frame."""

    intrinsics: np.ndarray  # (3, 3)
    position: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3)

    def ray(self, row: float, col: float) -> np.ndarray:
        """Unit direction (base frame) through the centre of pixel (row, col)."""
        k = self.intrinsics
        d_cam = np.array([(col + 0.5 - k[0, 2]) / k[0, 0], (row + 0.5 - k[1, 2]) / k[1, 1], 1.0])
        d = self.rotation @ d_cam
        return d / np.linalg.norm(d)

    def backproject(self, row: float, col: float, plane_z: float) -> np.ndarray:
        """The point where pixel (row, col)'s ray meets the plane z = plane_z."""
        d = self.ray(row, col)
        if abs(d[2]) < 1e-6:
            raise ValueError("the pixel's ray is parallel to the plane")
        s = (plane_z - self.position[2]) / d[2]
        if s <= 0:
            raise ValueError(f"the plane z={plane_z} is behind the camera for pixel ({row}, {col})")
        return self.position + s * d

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Base-frame point -> (row, col) in pixel units (pixel centres at integer + 0.5 - 0.5)."""
        rc = self.project_many(np.asarray(point, dtype=float)[None])[0]
        return float(rc[0]), float(rc[1])

    def project_many(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) base-frame points -> (N, 2) [row, col]; NaN for points behind the camera."""
        p = (np.asarray(points, dtype=float) - self.position) @ self.rotation  # (N, 3) in the optical frame
        k = self.intrinsics
        with np.errstate(divide="ignore", invalid="ignore"):
            rc = np.stack([k[1, 1] * p[:, 1] / p[:, 2] + k[1, 2] - 0.5, k[0, 0] * p[:, 0] / p[:, 2] + k[0, 2] - 0.5], 1)
        return np.where((p[:, 2] > 1e-6)[:, None], rc, np.nan)

    def resized(self, height: int, width: int, from_hw: tuple[int, int]) -> "CameraModel":
        """The same camera for images resized from ``from_hw`` to (height, width)."""
        sy, sx = height / from_hw[0], width / from_hw[1]
        k = self.intrinsics.copy()
        k[0] *= sx
        k[1] *= sy
        return CameraModel(k, self.position, self.rotation)


def _quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of [x, y, z, w] quaternions: the rotation b, then a."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def chain_to_root(edges: dict[str, tuple[str, np.ndarray, np.ndarray]], frame: str,
                  ) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """``frame``'s pose in the root of a transform tree: ``edges`` maps each child frame to
    (parent, translation (3,), quaternion [x, y, z, w]) as ``/tf_static`` gives them.
    -> (root frame, translation, quaternion), or ("", None, None) when no edge starts at ``frame``."""
    if frame not in edges:
        return "", None, None
    t, q = np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0])
    seen = set()
    while frame in edges:
        if frame in seen:
            raise CameraPoseError(f"/tf_static has a cycle through {frame!r}")
        seen.add(frame)
        parent, tr, rot = edges[frame]
        t = quaternion_to_matrix(rot) @ t + np.asarray(tr, dtype=float)
        q = _quaternion_multiply(np.asarray(rot, dtype=float), q)
        frame = parent
    return frame, t, q / np.linalg.norm(q)


def camera_from_info(k: Sequence[float], translation: Sequence[float] | None, quaternion: Sequence[float] | None,
                     where: str = "") -> CameraModel:
    """``camera_info.k`` (9 values, row-major) and the optical frame's pose in the base frame
    (translation [x, y, z], quaternion [x, y, z, w]) -> CameraModel; a clear error naming
    ``where`` and what is missing otherwise."""
    at = f"{where}: " if where else ""
    kk = np.asarray(k if k is not None else [], dtype=float)
    if kk.size != 9 or not np.isfinite(kk).all() or kk[0] <= 0 or kk[4] <= 0:
        raise CameraPoseError(f"{at}the camera intrinsics are missing or invalid (camera_info.k = {kk.tolist()}); "
                              "record the camera's camera_info topic")
    if translation is None or quaternion is None:
        raise CameraPoseError(f"{at}the camera's pose relative to the robot base is missing: neither /tf_static "
                              "in the bag nor the camera_pose parameter gives it")
    t = np.asarray(translation, dtype=float)
    if t.shape != (3,) or not np.isfinite(t).all():
        raise CameraPoseError(f"{at}camera translation {t.tolist()} is not 3 finite values")
    return CameraModel(kk.reshape(3, 3), t, quaternion_to_matrix(quaternion))
