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


def config_file(arg: str | Path) -> Path:
    """A config named on the command line: a file as given, else a name under the package's
    config/ folder (``train/sim_tiny.yaml`` or ``config/train/sim_tiny.yaml``), so a command works
    from any folder once the package is installed. FileNotFoundError names both places looked in."""
    given = Path(arg)
    if given.is_file():
        return given
    rel = Path(*given.parts[1:]) if given.parts[:1] == ("config",) and len(given.parts) > 1 else given
    packaged = package_config(str(rel))
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(f"config {str(arg)!r}: not a file here ({given.resolve()}) nor in the package ({packaged})")


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
