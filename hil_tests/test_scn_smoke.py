def test_single_press_rs485(rig):
    rig.start(boxes=1, link="rs485")
    box = rig.boxes[0]
    rig.press(box, "panic", hold_s=0.3)
    box.vbox.wait_light("received", 20)
    rep = rig.check(timeout=30)
    print(rep.figures(), rig.press_time_error_s(rep.presses[0]))
    assert rep.lost == [] and rep.duplicated == 0, rep.explain()
