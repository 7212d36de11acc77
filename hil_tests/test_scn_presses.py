"""Scenarios at the button: how citizens and street wiring press it. Each one
asserts that every alarm reaches the console exactly once, with its press
time, and that what must not be an alarm (a spike) is not one."""

import time

import pytest

@pytest.fixture
def one_box(rig, rig_env):
    rig.start(boxes=1, link="rs485")
    return rig.boxes[0]


def test_single_press(rig, rig_env, one_box):
    rig.press(one_box, "panic", hold_s=0.2)
    rep = rig.check(timeout=rig_env.timing["delivery_timeout_s"])
    rig.assert_delivered_once(rep)
    inc = rep.presses[0].incidents[0]
    assert inc["kind"] == "panic" and inc["junction"] == one_box.junction and inc["link"] == "rs485"
    assert rep.presses[0].ack_ms is not None  # the rig saw the gateway's ACK on the bus


def test_bounce_and_spike_traces(rig, rig_env, one_box):
    # Spikes from a long cable beside mains: 5-10 ms, never a press.
    spikes = [(0, 30), (1, 5), (0, 40), (1, 8), (0, 25), (1, 10), (0, 60), (1, 3), (0, 5)]
    rig.trace(one_box, "emergency", spikes, counts_as_press=False)
    time.sleep(0.5)
    # A real press that bounces for its first 12 ms, held 250 ms, bounces on release.
    bounce = [(1, 2), (0, 1), (1, 3), (0, 2), (1, 1), (0, 3), (1, 250), (0, 2), (1, 1), (0, 5)]
    rig.trace(one_box, "panic", bounce)
    rep = rig.check(timeout=rig_env.timing["delivery_timeout_s"], settle_s=2.0)
    rig.assert_delivered_once(rep)
    # No alarm at all from the spikes.
    assert rig.view.incidents(box_id=one_box.box_id, kinds=("emergency",)) == []


def test_both_buttons_together(rig, rig_env, one_box):
    rig.press(one_box, "emergency")
    rig.press(one_box, "panic")
    time.sleep(0.3)
    rig.release(one_box, "emergency")
    rig.release(one_box, "panic")
    rep = rig.check(timeout=rig_env.timing["delivery_timeout_s"])
    rig.assert_delivered_once(rep)
    assert sorted(p.incidents[0]["kind"] for p in rep.presses) == ["emergency", "panic"]


def test_held_button_is_one_alarm(rig, rig_env, one_box):
    rig.press(one_box, "emergency", hold_s=4.0)
    rep = rig.check(timeout=rig_env.timing["delivery_timeout_s"], settle_s=2.0)
    rig.assert_delivered_once(rep)
    # Held 4 s: still exactly one incident (no auto-repeat), no stuck fault yet.
    assert len(rig.view.incidents(box_id=one_box.box_id)) == 1


@pytest.mark.hardware("reads the beacon through the bench's photo-transistor")
def test_light_pattern_seen_by_the_light_sensor(rig, rig_env, one_box):
    assert rig.controller.light_state(one_box) == "idle"
    rig.press(one_box, "panic", hold_s=0.2)
    rig.check(timeout=rig_env.timing["delivery_timeout_s"])
    assert rig.controller.light_state(one_box) == "received"
