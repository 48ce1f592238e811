"""The status -> DiagnosticStatus mapping (vla_align_ros.ros.diagnostics), without a ROS graph."""

from __future__ import annotations

from vla_align_ros.ros.diagnostics import Level, diagnose, flatten, snapshot, to_msg

ACTIVE = {"active": True, "frames": 10, "drops": {"image_stale": 2}, "type_mismatch": {}, "latency_ms_p50": 12.345,
          "model": None}


def test_active_node_without_new_drops_is_ok() -> None:
    d = diagnose(ACTIVE, previous=ACTIVE)
    assert (d.level, d.message) == (Level.OK, "active")
    assert dict(d.values) == {"active": "True", "frames": "10", "drops.image_stale": "2", "latency_ms_p50": "12.35",
                              "model": ""}


def test_inactive_node_warns() -> None:
    d = diagnose({**ACTIVE, "active": False}, previous=ACTIVE)
    assert (d.level, d.message) == (Level.WARN, "inactive")


def test_drops_since_the_last_status_warn_with_their_increase() -> None:
    now = {**ACTIVE, "drops": {"image_stale": 5, "inference_error": 1}}
    d = diagnose(now, previous=ACTIVE)
    assert d.level is Level.WARN
    assert d.message == "drops: image_stale +3, inference_error +1"
    assert diagnose(now, previous=now).level is Level.OK  # counters only warn while they grow


def test_first_status_counts_every_drop_as_new() -> None:
    assert diagnose(ACTIVE).message == "drops: image_stale +2"


def test_errors_outrank_stale_and_warnings_and_all_are_named() -> None:
    status = {"active": True, "estop": True, "stale": ["image", "model"], "fault": None,
              "type_mismatch": {"/arm1/camera/image_raw": ["std_msgs/msg/String"]},
              "safety": {"passed": 40, "holds": 3, "dropped": 1}, "drops": {}}
    d = diagnose(status, previous={"safety": {"passed": 1, "holds": 1}})
    assert d.level is Level.ERROR
    assert d.message == ("e-stop latched; type mismatch on /arm1/camera/image_raw: std_msgs/msg/String published; "
                         "stale inputs: image, model; safety: dropped +1")  # passed/holds are normal operation
    assert ("stale", "image, model") in d.values and ("safety.dropped", "1") in d.values


def test_fault_is_an_error_and_stale_inputs_of_an_active_node_are_stale() -> None:
    assert diagnose({"active": False, "fault": "3 model failures in a row"}).message == \
        "fault: 3 model failures in a row; inactive"
    assert diagnose({"active": True, "stale": ["image"]}).level is Level.STALE
    assert diagnose({"active": False, "stale": ["image"]}).level is Level.WARN  # inactive: not waiting for input


def test_trainer_and_simulator_states() -> None:
    assert diagnose({"state": "training", "step": 5, "steps": 100}).message == "training: step 5/100"
    assert diagnose({"state": "failed", "error": "ValueError: x"}).level is Level.ERROR
    assert diagnose({"state": "stopped", "steps": 7}).level is Level.WARN
    sim = {"sim_time": 1.5, "steps": 30, "rejected": {"twist:non_finite": 1}, "rejected_total": 1}
    assert (diagnose(sim, previous=sim).level, diagnose(sim, previous=sim).message) == (Level.OK, "running")
    assert diagnose(sim, previous={"rejected": {}}).message == "rejected: twist:non_finite +1"


def test_message_fields() -> None:
    msg = to_msg("/arm1/policy_node", diagnose({"active": False}), hardware_id="panda")
    assert (msg.name, msg.level, msg.message, msg.hardware_id) == ("/arm1/policy_node", b"\x01", "inactive", "panda")
    assert [(kv.key, kv.value) for kv in msg.values] == [("active", "False")]


def test_flatten_nests_and_joins() -> None:
    assert flatten({"b": {"c": 1, "d": [1, 2]}, "a": 0.5}) == [("a", "0.5"), ("b.c", "1"), ("b.d", "1, 2")]


def test_snapshot_keeps_the_counters_of_its_moment() -> None:
    drops = {"image_stale": 1}
    before = snapshot({"active": True, "drops": drops})
    drops["image_stale"] = 4  # the node keeps counting after the status went out
    assert before["drops"] == {"image_stale": 1}
    assert diagnose({"active": True, "drops": drops}, before).message == "drops: image_stale +3"
