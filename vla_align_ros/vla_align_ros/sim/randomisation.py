"""Domain randomisation of the tabletop's appearance: table tint, lighting (direction, strength,
colour temperature, ambient), camera pose and a small object-colour jitter.

Sampling is a pure function of a profile name and a ``numpy.random.Generator``. Applying writes
model fields only (``mat_rgba``, ``geom_rgba``, ``light_*``, ``vis.headlight``, ``cam_pos``,
``cam_quat``), always starting from values captured when the model was built, so nothing
accumulates across episodes. Physics is untouched: the same seed gives the same motion with or
without randomisation, and segmentation labels and object names do not change.

Every randomised quantity is drawn from a *signed band*: a magnitude uniform in ``[lo, hi]`` with
a random sign (or a random direction for vectors). ``train`` bands start at 0; every ``unseen``
band starts above the corresponding ``train`` band's top, so no unseen episode has any quantity
inside the range training saw. ``none`` is today's scene exactly and draws no random numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

N_OBJECT_CHANNELS = 3  # r, g, b
_STREAM = 0xD0A1  # SeedSequence key: keeps the randomisation stream apart from the scene/task ones


@dataclass(frozen=True)
class Profile:
    """Ranges of one randomisation profile. Each ``(lo, hi)`` bounds a magnitude; the sign (or
    direction) is drawn uniformly."""

    name: str
    table_gain: tuple[float, float]  # |d| per channel: table material rgb multiplied by (1 + d)
    light_warmth: tuple[float, float]  # |w|: light colour multiplied by (1 + w, 1, 1 - w)
    light_scale: tuple[float, float]  # |s|: key light diffuse multiplied by (1 + s)
    ambient_scale: tuple[float, float]  # |a|: headlight ambient and diffuse multiplied by (1 + a)
    light_polar_deg: tuple[float, float]  # key light's angle from vertical around its aim point, deg
    cam_shift_m: tuple[float, float]  # length of the camera translation (world frame), m
    cam_rot_deg: tuple[float, float]  # camera rotation angle about a random axis (camera frame), deg
    object_jitter: tuple[float, float]  # |j| per object and channel: rgb + j, clipped to [0, 1]


PROFILES: dict[str, Profile] = {
    "train": Profile(name="train", table_gain=(0.0, 0.15), light_warmth=(0.0, 0.08), light_scale=(0.0, 0.25),
                     ambient_scale=(0.0, 0.15), light_polar_deg=(0.0, 15.0), cam_shift_m=(0.0, 0.02),
                     cam_rot_deg=(0.0, 2.0), object_jitter=(0.0, 0.04)),
    "unseen": Profile(name="unseen", table_gain=(0.30, 0.50), light_warmth=(0.15, 0.25), light_scale=(0.35, 0.50),
                      ambient_scale=(0.25, 0.40), light_polar_deg=(20.0, 35.0), cam_shift_m=(0.03, 0.05),
                      cam_rot_deg=(3.0, 5.0), object_jitter=(0.05, 0.08)),
}
PROFILE_NAMES: tuple[str, ...] = ("none", *PROFILES)


def check_profile(name: str) -> str:
    if name not in PROFILE_NAMES:
        raise ValueError(f"randomisation profile {name!r} is unknown; choose one of {', '.join(PROFILE_NAMES)}")
    return name


@dataclass(frozen=True, eq=False)
class Randomisation:
    """One episode's appearance. The identity (``none``) leaves the scene exactly as built."""

    profile: str
    table_gain: np.ndarray  # (3,) multiplier on the table material's rgb
    light_warmth: float  # w: light colours multiplied by (1 + w, 1, 1 - w); > 0 warmer, < 0 cooler
    light_scale: float  # multiplier on the key light's diffuse
    ambient_scale: float  # multiplier on the headlight's ambient and diffuse
    light_polar: float  # rad, key light's angle from vertical around its aim point
    light_azimuth: float  # rad, direction of that tilt
    cam_shift: np.ndarray  # (3,) m, camera translation in the world frame
    cam_rotvec: np.ndarray  # (3,) rad, axis * angle of the camera's rotation in its own frame
    object_rgb_offset: np.ndarray  # (n_objects, 3) added to each object's rgb (OBJECTS order)

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}


def no_randomisation(n_objects: int) -> Randomisation:
    return Randomisation(profile="none", table_gain=np.ones(3), light_warmth=0.0, light_scale=1.0, ambient_scale=1.0,
                         light_polar=0.0, light_azimuth=0.0, cam_shift=np.zeros(3), cam_rotvec=np.zeros(3),
                         object_rgb_offset=np.zeros((n_objects, N_OBJECT_CHANNELS)))


def randomisation_rng(seed: int, task_seed: int | None = None) -> np.random.Generator:
    """A generator for one episode's appearance, derived from its seeds but independent of the
    generators that place the objects and draw the task."""
    entropy = [_STREAM, int(seed)] if task_seed is None else [_STREAM, int(seed), int(task_seed)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


# ---- sampling (pure) ----------------------------------------------------------------------------
def _signed(rng: np.random.Generator, band: tuple[float, float], size: int | tuple[int, ...] | None = None) -> Any:
    """Magnitude uniform in ``band``, sign uniform: a scalar, or an array of ``size``."""
    mag = rng.uniform(band[0], band[1], size)
    sign = np.where(rng.random(size) < 0.5, -1.0, 1.0)
    return mag * sign if size is not None else float(mag * sign)


def _unit(rng: np.random.Generator) -> np.ndarray:
    """(3,) direction uniform on the sphere."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def sample_randomisation(profile: str, rng: np.random.Generator, n_objects: int) -> Randomisation:
    """One episode's appearance under ``profile``; ``none`` consumes no random numbers."""
    if check_profile(profile) == "none":
        return no_randomisation(n_objects)
    p = PROFILES[profile]
    table_gain = 1.0 + _signed(rng, p.table_gain, 3)
    warmth = _signed(rng, p.light_warmth)
    light_scale = 1.0 + _signed(rng, p.light_scale)
    ambient_scale = 1.0 + _signed(rng, p.ambient_scale)
    polar = math.radians(rng.uniform(*p.light_polar_deg))
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    cam_shift = _unit(rng) * rng.uniform(*p.cam_shift_m)
    cam_rotvec = _unit(rng) * math.radians(rng.uniform(*p.cam_rot_deg))
    jitter = _signed(rng, p.object_jitter, (n_objects, N_OBJECT_CHANNELS))
    return Randomisation(profile=profile, table_gain=table_gain, light_warmth=warmth, light_scale=light_scale,
                         ambient_scale=ambient_scale, light_polar=polar, light_azimuth=azimuth, cam_shift=cam_shift,
                         cam_rotvec=cam_rotvec, object_rgb_offset=jitter)


# ---- applying to a MuJoCo model -----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AppearanceDefaults:
    """The model's appearance fields as built, and which entries randomisation touches."""

    table_material: int
    object_geoms: tuple[int, ...]  # OBJECTS order
    light: int  # the key light
    camera: int
    mat_rgba: np.ndarray  # (nmat, 4)
    geom_rgba: np.ndarray  # (ngeom, 4)
    light_pos: np.ndarray  # (nlight, 3) m
    light_dir: np.ndarray  # (nlight, 3)
    light_diffuse: np.ndarray  # (nlight, 3)
    headlight_ambient: np.ndarray  # (3,)
    headlight_diffuse: np.ndarray  # (3,)
    cam_pos: np.ndarray  # (ncam, 3) m
    cam_quat: np.ndarray  # (ncam, 4) w x y z


def capture_appearance(model: Any, table_material: int, object_geoms: Sequence[int], light: int,
                       camera: int) -> AppearanceDefaults:
    """Copy the appearance fields of a freshly built ``mujoco.MjModel``."""
    if min(table_material, light, camera, *object_geoms) < 0:
        raise ValueError("capture_appearance: a table material, light, camera or object geom id is missing (-1)")
    return AppearanceDefaults(
        table_material=table_material, object_geoms=tuple(int(g) for g in object_geoms), light=light, camera=camera,
        mat_rgba=model.mat_rgba.copy(), geom_rgba=model.geom_rgba.copy(), light_pos=model.light_pos.copy(),
        light_dir=model.light_dir.copy(), light_diffuse=model.light_diffuse.copy(),
        headlight_ambient=np.array(model.vis.headlight.ambient),
        headlight_diffuse=np.array(model.vis.headlight.diffuse),
        cam_pos=model.cam_pos.copy(), cam_quat=model.cam_quat.copy())


def restore_appearance(model: Any, d: AppearanceDefaults) -> None:
    model.mat_rgba[:] = d.mat_rgba
    model.geom_rgba[:] = d.geom_rgba
    model.light_pos[:] = d.light_pos
    model.light_dir[:] = d.light_dir
    model.light_diffuse[:] = d.light_diffuse
    model.vis.headlight.ambient[:] = d.headlight_ambient
    model.vis.headlight.diffuse[:] = d.headlight_diffuse
    model.cam_pos[:] = d.cam_pos
    model.cam_quat[:] = d.cam_quat


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (4,) w x y z quaternions."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def rotvec_quat(v: np.ndarray) -> np.ndarray:
    """(3,) axis * angle (rad) -> (4,) w x y z."""
    angle = float(np.linalg.norm(v))
    if angle == 0.0:
        return np.array([1.0, 0.0, 0.0, 0.0])
    return np.r_[math.cos(angle / 2), math.sin(angle / 2) * np.asarray(v) / angle]


def _light_tilt(pos: np.ndarray, direction: np.ndarray, polar: float, azimuth: float) -> tuple[np.ndarray, np.ndarray]:
    """Move a light on the sphere around the point it aims at on the table plane (z = 0), keeping
    it aimed there: ``polar`` rad from vertical, towards ``azimuth``. Returns (pos (3,), dir (3,))."""
    if direction[2] >= 0.0:
        raise ValueError("the key light must point downwards to be tilted around its aim point")
    reach = pos[2] / -direction[2]  # m from the light to the table plane along its axis
    aim = pos + reach * direction
    up = np.array([math.sin(polar) * math.cos(azimuth), math.sin(polar) * math.sin(azimuth), math.cos(polar)])
    return aim + reach * up, -up


def apply_randomisation(model: Any, d: AppearanceDefaults, r: Randomisation) -> None:
    """Set the model's appearance to the defaults changed by ``r``. The identity restores the
    defaults exactly. Camera and light poses reach ``data`` with the next ``mj_forward`` (or
    ``mj_camlight``)."""
    if r.object_rgb_offset.shape != (len(d.object_geoms), N_OBJECT_CHANNELS):
        raise ValueError(f"object_rgb_offset has shape {r.object_rgb_offset.shape}; "
                         f"expected ({len(d.object_geoms)}, {N_OBJECT_CHANNELS})")
    restore_appearance(model, d)
    if r.profile == "none":
        return
    m = d.table_material
    model.mat_rgba[m, :3] = np.clip(d.mat_rgba[m, :3] * r.table_gain, 0.0, 1.0)
    for g, offset in zip(d.object_geoms, r.object_rgb_offset):
        model.geom_rgba[g, :3] = np.clip(d.geom_rgba[g, :3] + offset, 0.0, 1.0)
    tint = np.array([1.0 + r.light_warmth, 1.0, 1.0 - r.light_warmth])
    li = d.light
    model.light_diffuse[li] = np.clip(d.light_diffuse[li] * r.light_scale * tint, 0.0, 1.0)
    model.vis.headlight.ambient[:] = np.clip(d.headlight_ambient * r.ambient_scale * tint, 0.0, 1.0)
    model.vis.headlight.diffuse[:] = np.clip(d.headlight_diffuse * r.ambient_scale * tint, 0.0, 1.0)
    if r.light_polar != 0.0:
        model.light_pos[li], model.light_dir[li] = _light_tilt(d.light_pos[li], d.light_dir[li], r.light_polar,
                                                               r.light_azimuth)
    c = d.camera
    model.cam_pos[c] = d.cam_pos[c] + r.cam_shift
    model.cam_quat[c] = quat_mul(d.cam_quat[c], rotvec_quat(r.cam_rotvec))


__all__ = ["PROFILES", "PROFILE_NAMES", "Profile", "Randomisation", "AppearanceDefaults", "check_profile",
           "no_randomisation", "randomisation_rng", "sample_randomisation", "capture_appearance",
           "restore_appearance", "apply_randomisation", "quat_mul", "rotvec_quat"]
