"""Where the package's files are, installed or in the source tree, and the environment that
keeps DDS on this host with the shipped Fast DDS profile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .training.run_dir import RunDir

DDS_PROFILE = "dds/fastdds_localhost.xml"


def _package_file(folder: str, rel: str) -> Path:
    """``folder/rel``: the installed share directory first, then the source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            p = Path(get_package_share_directory("vla_align_ros")) / folder / rel
            if p.exists():
                return p
        except (PackageNotFoundError, OSError, ValueError):
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parent.parent / folder / rel


def package_config(rel: str) -> Path:
    """A file under config/: the installed share directory first, then the source tree."""
    return _package_file("config", rel)


def shipped_model(name: str = "sim_tiny") -> Path:
    """The run folder of a model the package ships (models/NAME: checkpoint/, train_config.json)."""
    return _package_file("models", name)


def dds_env(base: Mapping[str, str] | None = None, profile: bool = True) -> dict[str, str]:
    """The environment for a ROS process started by this package: discovery on this host only
    (Kilted ignores ROS_LOCALHOST_ONLY) and, unless the caller already chose one or
    ``profile`` is False, the shipped Fast DDS profile (shared memory for large messages, UDP on
    loopback only)."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if profile:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(package_config(DDS_PROFILE)))
    else:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    return env


def checkpoint_dir(path: str) -> str:
    """A run folder or its ``checkpoint/`` folder -> the checkpoint folder."""
    run = RunDir(path)
    return str(run.checkpoint if run.checkpoint.is_dir() else run.path)
