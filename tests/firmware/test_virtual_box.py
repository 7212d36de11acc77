"""End to end: the real firmware on the MicroPython unix port in a virtual
box, on an emulated RS-485 bus, against a minimal receiver written with the
CPython wire codec."""

import os
import subprocess
import sys
import time

import pytest

from callbox_firmware import outbox as cpy_outbox
from callbox_firmware import wire
from callbox_rig.bus import Rs485Bus
from callbox_rig.virtual_box import VirtualBox

from receiver import Receiver, time_sync_args

KEY = bytes(range(32))
BOX = 42
ADDR = 3


def config(**over):
    cfg = {"box_id": BOX, "key": KEY.hex(), "junction": "Ghantaghar Square", "board": "devkit_rs485", "link": "rs485", "bus_addr": ADDR, "heartbeat_s": 30, "event_start": 1}
    cfg.update(over)
    return cfg


@pytest.fixture
def bus():
    b = Rs485Bus().start()
    yield b
    b.stop()


@pytest.fixture
def rig(tmp_path, bus):
    made = []

    def make(cfg=None, **kw):
        box = VirtualBox(tmp_path / "flash", config=cfg or config(), rs485_url=bus.url, **kw)
        made.append(box)
        box.start()
        box.wait_ready()
        return box

    rx = Receiver(bus.url, {BOX: (ADDR, KEY)})
    yield make, rx
    rx.close()
    for b in made:
        b.stop()


def alarms(rx, kind=None):
    return [m for m in rx.msgs("ALARM") if kind is None or m["kind"] == kind]


@pytest.mark.timeout(120)
def test_press_reaches_the_receiver_and_the_light_follows(rig):
    make, rx = rig
    box = make()
    box.wait_light("idle")
    rx.wait(lambda: rx.msgs("HEARTBEAT"), what="first heartbeat")
    hb = rx.msgs("HEARTBEAT")[0]
    assert hb["boot_reason"] == "power_on" and hb["fw"] == "1.0.0" and hb["link"] == "rs485"
    rx.send(BOX, {"type": "COMMAND", "request": 1, "op": "time_sync", "args": time_sync_args(1795000000)})
    rx.wait(lambda: rx.msgs("RESULT"), what="time_sync result")
    assert rx.msgs("RESULT")[0]["status"] == "ok"

    start = len(box.log)
    n = len(box.light_history)
    box.press("emergency")
    box.wait_light("sending", timeout=5, since=n)
    box.release("emergency")
    m = box.wait_log(r"emergency pressed: light sending (\d+) ms after the debounced press", start=start)
    assert int(m.group(1)) <= 10
    rx.wait(lambda: (BOX, 1) in rx.stored, what="alarm 1")
    a = rx.stored[(BOX, 1)]
    assert a["kind"] == "emergency" and a["time_synced"] and abs(a["time_s"] - 1795000000) < 120
    # Authenticated: the same bytes fail with another key.
    raw = [f for _, f in rx.raw_frames() if f.msg["type"] == "ALARM"][0]
    body = wire.encode_body(wire.BoxKey(KEY), raw.mtype, raw.box_id, raw.counter, raw.payload, raw.addr)
    with pytest.raises(wire.WireError) as e:
        wire.decode_body(body, lambda b: wire.BoxKey(bytes(32)), False)
    assert e.value.reason == "auth"
    box.wait_light("received")
    rx.send(BOX, {"type": "CALL_STATE", "state": "connected", "event": 1, "prompt": "connecting"})
    box.wait_light("connected")
    rx.send(BOX, {"type": "CALL_STATE", "state": "ended", "event": 1, "prompt": "help_on_way"})
    box.wait_light("received")
    # The gateway reboots the box: a hard reset, reported in the next heartbeat.
    n_hb = len(rx.msgs("HEARTBEAT"))
    rx.send(BOX, {"type": "COMMAND", "request": 2, "op": "reboot", "args": b""})
    rx.wait(lambda: any(h["boot_reason"] == "hard_reset" for h in rx.msgs("HEARTBEAT")[n_hb:]), timeout=30, what="heartbeat after reboot")
    assert box.boot_reasons == ["power_on", "hard_reset"]
    assert rx.transmissions[(BOX, 1)] == 1


@pytest.mark.timeout(120)
def test_unacknowledged_alarm_survives_a_power_cut_and_arrives_once(rig):
    make, rx = rig
    rx.ack_alarms = False
    box = make()
    box.wait_light("idle")
    n = len(box.light_history)
    box.press("panic")
    box.wait_light("sending", since=n)
    box.release("panic")
    rx.wait(lambda: (BOX, 1) in rx.transmissions, what="first transmission")
    box.kill()
    assert box.light() is None
    rx.ack_alarms = True
    start = len(box.log)
    box.restart()
    box.wait_log(r"outbox: 1 unacknowledged alarms to deliver: \[1\]", start=start, timeout=20)
    rx.wait(lambda: (BOX, 1) in rx.stored, what="alarm 1 after restart")
    box.wait_log(r"alarm 1 acknowledged", start=start)
    box.press("emergency")
    rx.wait(lambda: (BOX, 2) in rx.stored, what="a new alarm after the restart")
    box.release("emergency")
    time.sleep(1.5)  # longer than the first retry: nothing more may arrive
    events = [m["event"] for m in alarms(rx)]
    assert sorted(rx.stored) == [(BOX, 1), (BOX, 2)]
    assert events.count(2) == 1  # acked at once, never resent
    assert all(m["kind"] == "panic" for m in alarms(rx) if m["event"] == 1)
    box.wait_log(r"alarm 2 acknowledged", start=start)


@pytest.mark.timeout(120)
def test_stuck_button_gives_one_fault_not_an_alarm_storm(rig):
    make, rx = rig
    box = make(config(stuck_s=2, heartbeat_s=5))
    box.wait_light("idle")
    box.press("emergency")
    box.wait_log(r"emergency button stuck closed", timeout=15)
    time.sleep(3)
    kinds = [(m["kind"], m["restore"]) for m in rx.stored.values()]
    assert kinds == [("emergency", False), ("button_fault", False)], kinds
    rx.wait(lambda: "emergency_stuck" in rx.msgs("HEARTBEAT")[-1]["faults"], what="stuck fault in a heartbeat")
    box.release("emergency")
    rx.wait(lambda: len(rx.stored) == 3, what="fault restore")
    assert [(m["kind"], m["restore"]) for m in rx.stored.values()][-1] == ("button_fault", True)


@pytest.mark.timeout(120)
def test_bounce_trace_and_tamper_polarity(rig):
    make, rx = rig
    box = make()
    box.wait_light("idle")
    # Spikes and chatter: no alarm. Then a bouncy press: one alarm.
    box.play_trace("panic", [(1, 5), (0, 40), (1, 10), (0, 40), (1, 15), (0, 60)] + [(1, 10), (0, 10)] * 20)
    time.sleep(1.5)
    assert not alarms(rx)
    box.play_trace("panic", [(1, 2), (0, 3), (1, 2), (0, 3), (1, 200), (0, 10)])
    rx.wait(lambda: alarms(rx, "panic"), what="bouncy press")
    # The normally-closed tamper switch: door open reads electrical 1 here.
    assert box.electrical("tamper", True) == 1 and box.electrical("panic", True) == 0
    box.press("tamper")
    rx.wait(lambda: alarms(rx, "tamper"), what="tamper")
    box.release("tamper")
    rx.wait(lambda: [m for m in alarms(rx, "tamper") if m["restore"]], what="tamper restore")
    assert len(alarms(rx, "panic")) == 1


@pytest.mark.timeout(120)
def test_power_cut_during_an_outbox_write_leaves_a_torn_record(rig, tmp_path):
    make, rx = rig
    rx.polling = False  # nothing is acknowledged yet: alarm 1 stays on flash
    box = make(flash_delay_ms=150)
    box.wait_light("idle")
    box.press("emergency")
    box.wait_log(r"alarm 1 stored", timeout=15)
    box.release("emergency")
    box.wait_light("sending")
    box.press("panic")
    box.wait_log(r"panic pressed|light sending", timeout=10)
    time.sleep(0.2)  # the write takes 5 x 150 ms: cut the power in the middle
    box.kill()
    data = (tmp_path / "flash" / "outbox.log").read_bytes()
    recs, good, torn = cpy_outbox.parse_log(data)
    assert torn and good < len(data), "the cut should land inside the second record"
    assert [r[0] for r in recs] == [cpy_outbox.R_ALARM]
    box.flash_delay_ms = 0
    start = len(box.log)
    box.restart()
    box.wait_log(r"outbox: a torn record .* cut off; 1 alarms intact", start=start, timeout=20)
    rx.polling = True
    rx.wait(lambda: (BOX, 1) in rx.stored, what="alarm 1 after the power cut")
    recs, good, torn = cpy_outbox.parse_log((tmp_path / "flash" / "outbox.log").read_bytes())
    assert not torn
    assert sorted(rx.stored) == [(BOX, 1)] and rx.stored[(BOX, 1)]["kind"] == "emergency"


@pytest.mark.timeout(60)
def test_unprovisioned_box_shows_a_fault(tmp_path):
    box = VirtualBox(tmp_path / "flash", config=None)
    box.start()
    try:
        box.wait_light("fault", timeout=20)
        box.wait_log(r"unprovisioned: no config.json")
        assert box.running
    finally:
        box.stop()


def _mpremote(port, *args, timeout=60):
    exe = os.path.join(os.path.dirname(sys.executable), "mpremote")
    return subprocess.run([exe, "connect", port] + list(args), capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(180)
def test_mpremote_exec_fs_cp_and_soft_reset(tmp_path):
    box = VirtualBox(tmp_path / "flash", config=config())
    box.start()
    try:
        box.wait_light("idle", timeout=20)
        r = _mpremote(box.console_port, "exec", "import config; print(config.load()['box_id'] * 2)")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("84")
        assert "soft reboot" in "\n".join(box.log)
        src = tmp_path / "note.txt"
        src.write_text("junction notes\n")
        r = _mpremote(box.console_port, "fs", "cp", str(src), ":note.txt")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "flash" / "note.txt").read_text() == "junction notes\n"
        r = _mpremote(box.console_port, "soft-reset")
        assert r.returncode == 0, r.stderr
        r = _mpremote(box.console_port, "exec", "import hw; print('hw', hw.reset_cause())")
        assert r.returncode == 0 and "hw soft_reset" in r.stdout, r.stdout + r.stderr
        # A hard reset runs main.py again: the firmware is back.
        box.restart()
        box.wait_light("idle", timeout=20)
    finally:
        box.stop()
