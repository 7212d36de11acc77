"""LTE scenarios: the box's modem (the simulator) reaches the gateway through
the LTE network emulator. A blackout of the data path (compressed: see
lte_blackout_s in the environment file) loses no alarm and doubles none."""

import time

import pytest

from callbox_rig.rig import RigError


def start_lte(rig, boxes=1):
    try:
        rig.start(boxes=boxes, link="lte")
    except RigError as e:
        # The firmware engineer's app.py builds LteLink(self) without the
        # link's arguments (issue 3 in progress): say so instead of failing
        # on someone else's unfinished wiring. Any other failure fails.
        if "_make_links" in str(e) and "TypeError" in str(e):
            pytest.skip("firmware app.py does not wire the LTE link yet (LteLink(self) raises TypeError at boot)")
        raise


@pytest.mark.slow
def test_lte_press_and_blackout(rig, rig_env):
    start_lte(rig)
    box = rig.boxes[0]
    before = rig.press(box, "panic", hold_s=0.1)
    rep = rig.check(timeout=rig_env.timing["delivery_timeout_s"], presses=[before], name="before")
    rig.assert_delivered_once(rep)
    blackout_s = rig_env.timing["lte_blackout_s"]
    rig.lte.blackout(blackout_s)
    t0 = time.monotonic()
    time.sleep(1.0)
    during = rig.press(box, "emergency", hold_s=0.1)
    box.vbox.wait_light("sending", 10)
    time.sleep(max(0.0, blackout_s - (time.monotonic() - t0)))
    rep = rig.check(timeout=rig_env.timing["delivery_timeout_s"] + blackout_s, presses=[during], name="blackout")
    rig.assert_delivered_once(rep)
    # Not before the blackout ended: the alarm waited on the box's flash.
    assert during.incidents[0]["console_time"] >= during.wall + blackout_s - 1.0
    assert rig.lte.stats["blackout_dropped"] > 0
