"""The safety filter, watchdog and e-stop latch as plain functions: every output respects every
limit, whatever the policy sends (property tests up to 100x the limits)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_align_ros.control import (EStopLatch, JointLimits, SafetyCounters, TwistLimits, Watchdog, filter_gripper,
                                   filter_joint_target, filter_twist)
from vla_align_ros.control.safety import Outcome

TW = TwistLimits()
JL = JointLimits(names=[f"j{i}" for i in range(3)], lower=[-1.0, -2.0, 0.0], upper=[1.0, 0.5, 3.0],
                 max_velocity=[1.0, 2.0, 0.5], max_step=0.04)
DT = 0.05
EPS = 1e-9


def floats(scale: float):
    return st.floats(min_value=-scale, max_value=scale, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(twist=st.lists(floats(100 * TW.max_angular), min_size=6, max_size=6),
       prev=st.lists(floats(TW.max_linear / 2), min_size=6, max_size=6),
       ee=st.tuples(st.floats(0.25, 0.75), st.floats(-0.35, 0.35), st.floats(0.045, 0.45)))
def test_twist_output_respects_speed_rate_and_workspace(twist, prev, ee):
    r = filter_twist(twist, ee, prev, TW, DT)
    out = r.command
    assert out is not None and np.all(np.isfinite(out))
    if "workspace" not in r.reasons:  # at the wall the arm stops, whatever the rate limit says
        assert np.linalg.norm(out[:3] - np.asarray(prev[:3])) <= TW.max_linear_change + EPS
    assert np.linalg.norm(out[3:] - np.asarray(prev[3:])) <= TW.max_angular_change + EPS
    assert np.linalg.norm(out[:3]) <= max(TW.max_linear, np.linalg.norm(prev[:3])) + EPS
    nxt = np.asarray(ee) + out[:3] * DT
    assert np.all(nxt >= np.asarray(TW.workspace_low) - EPS) and np.all(nxt <= np.asarray(TW.workspace_high) + EPS)


@settings(max_examples=400, deadline=None)
@given(target=st.lists(floats(300.0), min_size=3, max_size=3),
       frac=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
       jitter=st.lists(floats(0.03), min_size=3, max_size=3))
def test_joint_output_respects_position_velocity_and_step(target, frac, jitter):
    lo, hi = np.asarray(JL.lower), np.asarray(JL.upper)
    cur = lo + np.asarray(frac) * (hi - lo)
    prev = np.clip(cur + np.asarray(jitter), lo, hi)
    r = filter_joint_target(target, cur, prev, JL, DT)
    out = r.command
    assert out is not None
    assert np.all(out >= lo - EPS) and np.all(out <= hi + EPS)
    assert np.all(np.abs(out - cur) <= np.asarray(JL.max_velocity) * DT + EPS)
    assert np.all(np.abs(out - prev) <= JL.max_step + EPS)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_commands_are_dropped_and_counted(bad):
    counters = SafetyCounters()
    for r in (filter_twist([0, 0, bad, 0, 0, 0], [0.5, 0, 0.2], None, TW, DT),
              filter_joint_target([0.0, bad, 1.0], [0, 0, 1], None, JL, DT), filter_gripper(bad, 0.0, 0.08)):
        assert r.outcome is Outcome.DROPPED and r.command is None and r.reasons == ["non_finite"]
        counters.add(r)
    assert counters.counts == {"dropped": 3, "non_finite": 3}
    assert filter_twist([0.0] * 5, [0.5, 0, 0.2], None, TW, DT).reasons == ["bad_size"]


def test_small_commands_pass_unchanged():
    r = filter_twist([0.01, 0, 0, 0, 0, 0.05], [0.5, 0, 0.2], None, TW, DT)
    assert r.outcome is Outcome.PASSED and np.allclose(r.command, [0.01, 0, 0, 0, 0, 0.05])
    r = filter_joint_target([0.01, 0.0, 1.0], [0.0, 0.0, 1.0], None, JL, DT)
    assert r.outcome is Outcome.PASSED
    assert filter_gripper(0.2, 0.0, 0.08).command.tolist() == [0.08]


def test_joint_names_are_matched_by_name_and_mismatches_named():
    assert JL.check_joint_names(["x", "j2", "j0", "j1"]) == [2, 3, 1]
    with pytest.raises(ValueError, match=r"no \['j2'\]"):
        JL.check_joint_names(["j0", "j1"])
    with pytest.raises(ValueError, match="2 values for 3 joints"):
        JointLimits(names=["a", "b", "c"], lower=[0, 0], upper=[1, 1, 1], max_velocity=[1, 1, 1])


def test_watchdog_lists_stale_inputs():
    w = Watchdog(["image", "model"], timeout_s=0.5)
    assert w.stale(0.0) == ["image", "model"]  # never seen
    w.feed("image", 1.0)
    w.feed("model", 1.0)
    assert w.stale(1.5) == []
    w.feed("image", 1.4)
    assert w.stale(1.6) == ["model"] and w.stale(2.0) == ["image", "model"]
    with pytest.raises(KeyError, match="camera"):
        w.feed("camera", 2.0)
    with pytest.raises(ValueError, match="timeout"):
        Watchdog(["image"], 0.0)


def test_estop_latches_until_reset_and_silence_counts_as_stop():
    e = EStopLatch(heartbeat_s=0.5)
    assert e.check(0.0) and e.reason == "no e-stop publisher"
    e.on_message(False, 0.1)
    assert e.reset(0.1) and not e.check(0.2)
    e.on_message(True, 0.3)
    e.on_message(False, 0.35)
    assert e.check(0.4)  # released, but still latched
    assert e.reset(0.4) and not e.check(0.45)
    assert e.check(1.0) and e.reason == "e-stop publisher silent"  # publisher died
    assert not e.reset(1.0)  # cannot reset without a live publisher
    e.on_message(True, 1.1)
    assert not e.reset(1.2)  # cannot reset while pressed
