"""Domain randomisation of the simulator's appearance: seeded sampling, disjoint train/unseen
ranges, exact restoration (nothing accumulates), rendering changes the RGB image but not the
segmentation, and physics (hence the scripted expert) is untouched."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from vla_align_ros.sim.env import TabletopEnv
from vla_align_ros.sim.expert import run_expert
from vla_align_ros.sim.randomisation import (PROFILE_NAMES, PROFILES, Randomisation, check_profile, no_randomisation,
                                             randomisation_rng, sample_randomisation)
from vla_align_ros.sim.scene import COLORS, OBJECTS

N_OBJ = len(OBJECTS)
APPEARANCE_FIELDS = ("mat_rgba", "geom_rgba", "light_pos", "light_dir", "light_diffuse", "cam_pos", "cam_quat")


def appearance_arrays(model) -> dict[str, np.ndarray]:
    arrays = {k: getattr(model, k).copy() for k in APPEARANCE_FIELDS}
    arrays["headlight"] = np.r_[model.vis.headlight.ambient, model.vis.headlight.diffuse]
    return arrays


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def stats(r: Randomisation) -> dict[str, np.ndarray]:
    """The magnitudes each profile bounds (see Profile), per sample."""
    return {
        "table_gain": np.abs(r.table_gain - 1.0), "light_warmth": np.abs(r.light_warmth),
        "light_scale": np.abs(r.light_scale - 1.0), "ambient_scale": np.abs(r.ambient_scale - 1.0),
        "light_polar_deg": np.degrees(r.light_polar), "cam_shift_m": np.linalg.norm(r.cam_shift),
        "cam_rot_deg": np.degrees(np.linalg.norm(r.cam_rotvec)), "object_jitter": np.abs(r.object_rgb_offset),
    }


def test_sampling_is_a_pure_function_of_the_seed():
    a = sample_randomisation("train", randomisation_rng(7), N_OBJ).as_dict()
    b = sample_randomisation("train", randomisation_rng(7), N_OBJ).as_dict()
    assert a == b
    assert a != sample_randomisation("train", randomisation_rng(8), N_OBJ).as_dict()
    assert a != sample_randomisation("train", randomisation_rng(7, task_seed=3), N_OBJ).as_dict()
    # its stream is not the scene generator's: default_rng(seed) draws differently
    assert randomisation_rng(7).random() != np.random.default_rng(7).random()


def test_none_is_the_identity_and_draws_nothing():
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    r = sample_randomisation("none", rng, N_OBJ)
    assert rng.bit_generator.state == before
    assert r.as_dict() == no_randomisation(N_OBJ).as_dict()


def test_bad_profile_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="none, train, unseen"):
        check_profile("Train")
    with pytest.raises(ValueError, match="unknown"):
        sample_randomisation("heavy", np.random.default_rng(0), N_OBJ)
    with pytest.raises(ValueError, match="unknown"):
        TabletopEnv(render=False, randomisation="unsen")
    from vla_align_ros.sim.record import record_episodes

    with pytest.raises(ValueError, match="unknown"):
        record_episodes(tmp_path / "bag", 1, 0, randomisation="bogus", progress=False)
    assert not (tmp_path / "bag").exists()
    from vla_align_ros.cli import build_parser

    args = build_parser().parse_args(["record", "--out", "x"])
    assert args.randomisation == "none"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["record", "--out", "x", "--randomisation", "bogus"])


def test_train_and_unseen_ranges_are_as_documented_and_disjoint():
    assert PROFILE_NAMES == ("none", "train", "unseen")
    samples = {name: [stats(sample_randomisation(name, randomisation_rng(s), N_OBJ)) for s in range(200)]
               for name in ("train", "unseen")}
    for key in samples["train"][0]:
        train = np.concatenate([np.ravel(s[key]) for s in samples["train"]])
        unseen = np.concatenate([np.ravel(s[key]) for s in samples["unseen"]])
        t_lo, t_hi = getattr(PROFILES["train"], key)
        u_lo, u_hi = getattr(PROFILES["unseen"], key)
        assert t_lo == 0.0 and t_hi < u_lo, key  # documented: every unseen band starts above train's top
        assert train.min() >= 0.0 and train.max() <= t_hi + 1e-12, key
        assert unseen.min() >= u_lo - 1e-12 and unseen.max() <= u_hi + 1e-12, key
        assert train.max() < unseen.min(), key  # no unseen value falls in the range training saw
        assert train.max() > 0.8 * t_hi and unseen.max() > u_lo + 0.8 * (u_hi - u_lo), key  # ranges are used
    # the documented numbers themselves
    assert PROFILES["train"].cam_shift_m == (0.0, 0.02) and PROFILES["unseen"].cam_shift_m == (0.03, 0.05)
    assert PROFILES["train"].cam_rot_deg == (0.0, 2.0) and PROFILES["unseen"].cam_rot_deg == (3.0, 5.0)
    # signs are random: warmer and cooler light both occur
    warmth = [sample_randomisation("unseen", randomisation_rng(s), N_OBJ).light_warmth for s in range(200)]
    assert min(warmth) < -0.15 and max(warmth) > 0.15


def test_jittered_objects_keep_their_named_colour():
    names = list(COLORS)
    palette = np.array([COLORS[c] for c in names])  # (4, 3)
    for s in range(200):
        r = sample_randomisation("unseen", randomisation_rng(s), N_OBJ)
        for obj, offset in zip(OBJECTS, r.object_rgb_offset):
            rgb = np.clip(np.array(COLORS[obj.color]) + offset, 0.0, 1.0)
            assert names[int(np.argmin(np.linalg.norm(palette - rgb, axis=1)))] == obj.color


def test_none_leaves_the_model_unchanged_and_nothing_accumulates():
    with TabletopEnv(render=False) as plain:
        built = appearance_arrays(plain.model)
        plain.reset(seed=4)
        assert_same_arrays(built, appearance_arrays(plain.model))
    with TabletopEnv(render=False, randomisation="train") as env:
        assert_same_arrays(built, appearance_arrays(env.model))  # before any reset: as built
        env.reset(seed=1)
        first = appearance_arrays(env.model)
        assert not np.array_equal(first["cam_pos"], built["cam_pos"])
        assert not np.array_equal(first["geom_rgba"], built["geom_rgba"])
        for seed in (2, 3, 1):
            env.reset(seed=seed)
        assert_same_arrays(first, appearance_arrays(env.model))  # same seed, same look: nothing accumulated
        env.set_appearance(env.appearance)
        env.set_appearance(env.appearance)  # applying twice is applying once
        assert_same_arrays(first, appearance_arrays(env.model))
        env.set_appearance(no_randomisation(N_OBJ))
        assert_same_arrays(built, appearance_arrays(env.model))
        # segmentation ids rest on names and geom ids, which randomisation never touches
        assert [env.model.geom(env.ids.object_geom[o.name]).name for o in OBJECTS] == [o.name for o in OBJECTS]


def test_camera_and_light_move_as_sampled():
    with TabletopEnv(render=False, randomisation="unseen") as env:
        env.reset(seed=0, family="pick")
        r = env.appearance
        env.set_appearance(no_randomisation(N_OBJ))
        built_pos = env.data.cam_xpos[env.ids.camera].copy()
        built_xmat = env.data.cam_xmat[env.ids.camera].reshape(3, 3).copy()
        env.set_appearance(r)
        moved = env.data.cam_xpos[env.ids.camera] - built_pos
        assert np.allclose(moved, r.cam_shift) and 0.03 <= np.linalg.norm(moved) <= 0.05
        rel = built_xmat.T @ env.data.cam_xmat[env.ids.camera].reshape(3, 3)
        angle = math.degrees(math.acos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))
        assert 3.0 - 1e-4 <= angle <= 5.0 + 1e-4 and angle == pytest.approx(math.degrees(np.linalg.norm(r.cam_rotvec)),
                                                                          abs=1e-4)
        pos, d = env.model.light_pos[0], env.model.light_dir[0]
        aim = pos + (pos[2] / -d[2]) * d
        assert np.allclose(aim, [0.5, 0.0, 0.0]) and np.linalg.norm(pos - aim) == pytest.approx(1.6)
        assert math.degrees(math.acos(-d[2] / np.linalg.norm(d))) == pytest.approx(math.degrees(r.light_polar))


def test_render_changes_rgb_but_not_segmentation():
    with TabletopEnv(image_size=(64, 64), randomisation="train") as env:
        env.reset(seed=3, family="place")
        looks = env.appearance
        env.set_appearance(no_randomisation(N_OBJ))
        plain = env.render()
        # colours and lights only (camera kept): RGB differs, segmentation is identical
        env.set_appearance(dataclasses.replace(looks, cam_shift=np.zeros(3), cam_rotvec=np.zeros(3)))
        tinted = env.render()
        diff = np.abs(tinted.rgb.astype(int) - plain.rgb.astype(int))
        assert diff.mean() > 2.0 and (diff.max(axis=2) > 8).mean() > 0.3
        assert np.array_equal(tinted.labels, plain.labels)
        # the full train draw also moves the camera: the same objects stay in view
        env.set_appearance(looks)
        full = env.render()
        assert set(np.unique(full.labels)) == set(np.unique(plain.labels)) and len(np.unique(plain.labels)) == 6
        env.set_appearance(no_randomisation(N_OBJ))  # back to exactly the plain image
        again = env.render()
        assert np.array_equal(again.rgb, plain.rgb) and np.array_equal(again.labels, plain.labels)


def test_expert_succeeds_under_unseen_and_physics_is_untouched():
    finals = {}
    for profile in ("none", "unseen"):
        with TabletopEnv(render=False, randomisation=profile) as env:
            runs = []
            for seed, family in ((21, "place"), (22, "push")):
                env.reset(seed=seed, family=family)
                assert run_expert(env), (profile, seed)
                runs.append(env.data.qpos.copy())
            finals[profile] = runs
    for a, b in zip(finals["none"], finals["unseen"]):
        assert np.array_equal(a, b)  # appearance does not enter the physics


def test_record_writes_the_profile_into_the_bag_metadata(tmp_path):
    import yaml

    from vla_align_ros.sim.record import record_episodes

    stats = record_episodes(tmp_path / "u", episodes=1, seed=30, families=["pick"], image_size=(32, 32),
                            progress=False, randomisation="unseen")
    assert stats.successes == 1
    meta = yaml.safe_load((tmp_path / "u" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["custom_data"] == {"vla_align.randomisation": "unseen"}
