"""COMMANDs on a real virtual box over the emulated RS-485 bus: replay
protection across a reboot (protocol.md 3.3), one execution per request
number (5.5), the self-test as a RESULT, config_set/config_get."""

import time

import pytest

from callbox_firmware import wire
from callbox_rig.bus import Rs485Bus
from callbox_rig.virtual_box import VirtualBox

from receiver import Receiver, time_sync_args

KEY = bytes(range(32))
BOX = 42
ADDR = 3


@pytest.fixture
def rig(tmp_path):
    bus = Rs485Bus().start()
    cfg = {"box_id": BOX, "key": KEY.hex(), "junction": "Ghantaghar Square", "board": "devkit_rs485", "link": "rs485", "bus_addr": ADDR,
           "heartbeat_s": 30, "event_start": 1}
    box = VirtualBox(tmp_path / "flash", config=cfg, rs485_url=bus.url)
    rx = Receiver(bus.url, {BOX: (ADDR, KEY)})
    box.start()
    box.wait_ready()
    box.wait_light("idle", timeout=20)
    rx.wait(lambda: rx.msgs("HEARTBEAT"), what="first heartbeat")
    yield box, rx, tmp_path / "flash"
    rx.close()
    box.stop()
    bus.stop()


def results(rx, request):
    return [m for m in rx.msgs("RESULT") if m["request"] == request]


@pytest.mark.timeout(120)
def test_a_replayed_reboot_command_is_refused_after_the_reboot(rig):
    box, rx, flash = rig
    rx.send(BOX, {"type": "COMMAND", "request": 7, "op": "reboot", "args": b""})
    rx.wait(lambda: results(rx, 7), what="reboot result")
    box.wait_log(r"rebooting on the gateway's command")
    rx.wait(lambda: any(h["boot_reason"] == "hard_reset" for h in rx.msgs("HEARTBEAT")), timeout=30, what="heartbeat after the reboot")
    assert box.boot_reasons == ["power_on", "hard_reset"]
    assert (flash / "replay.dat").stat().st_size == 12  # top, bitmap, last request
    captured = [data for _, msg, data in rx.sent if msg.get("op") == "reboot"]
    assert len(captured) == 1
    # An attacker on the bus replays the captured reboot frame, byte for byte.
    start = len(box.log)
    rx.send_raw(BOX, captured[0])
    box.wait_log(r"refused a replayed COMMAND \(counter \d+, gateway's highest \d+\)", start=start, timeout=10)
    time.sleep(2)
    assert box.boot_reasons == ["power_on", "hard_reset"], "the replayed reboot was acted on"
    assert len(results(rx, 7)) == 1
    # A fresh COMMAND (a higher counter) is still accepted after the reboot.
    rx.send(BOX, {"type": "COMMAND", "request": 8, "op": "time_sync", "args": time_sync_args(1795000000)})
    rx.wait(lambda: results(rx, 8), what="time_sync result")
    assert results(rx, 8)[0]["status"] == "ok"


@pytest.mark.timeout(120)
def test_a_retransmitted_request_is_not_executed_twice(rig):
    box, rx, flash = rig
    rx.send(BOX, {"type": "COMMAND", "request": 11, "op": "reboot", "args": b""})
    rx.wait(lambda: any(h["boot_reason"] == "hard_reset" for h in rx.msgs("HEARTBEAT")), timeout=30, what="heartbeat after the reboot")
    # The gateway did not see the RESULT and sends request 11 again (a new
    # counter): the box answers ok and does not reboot a second time.
    start = len(box.log)
    rx.send(BOX, {"type": "COMMAND", "request": 11, "op": "reboot", "args": b""})
    box.wait_log(r"command reboot request 11 was already executed: same result again", start=start)
    rx.wait(lambda: len(results(rx, 11)) == 2, what="the repeated result")
    time.sleep(2)
    assert box.boot_reasons == ["power_on", "hard_reset"]
    assert [r["status"] for r in results(rx, 11)] == ["ok", "ok"]


@pytest.mark.timeout(120)
def test_selftest_command_returns_the_item_lines(rig):
    box, rx, flash = rig
    n_out = len(box.output_history)
    rx.send(BOX, {"type": "COMMAND", "request": 21, "op": "selftest", "args": b""})
    rx.wait(lambda: results(rx, 21), timeout=30, what="selftest result")
    r = results(rx, 21)[0]
    lines = r["data"].decode().split("\n")
    assert lines == ["emergency=pass", "panic=pass", "tamper=pass", "light=pass", "flash=pass", "link=pass"], lines
    assert r["status"] == "ok"
    toggles = [lvl for _, name, lvl in box.output_history[n_out:] if name == "light"]
    assert 1 in toggles and 0 in toggles, "the light was switched"
    assert not (flash / "selftest.tmp").exists()
    # A button stuck closed fails its item and the whole test.
    rx.send(BOX, {"type": "COMMAND", "request": 22, "op": "config_set", "args": b"stuck_s=1\n"})
    rx.wait(lambda: results(rx, 22), what="config_set result")
    assert results(rx, 22)[0]["status"] == "ok"
    box.press("panic")
    box.wait_log(r"panic button stuck closed", timeout=15)
    rx.send(BOX, {"type": "COMMAND", "request": 23, "op": "selftest", "args": b""})
    rx.wait(lambda: results(rx, 23), timeout=30, what="second selftest result")
    r = results(rx, 23)[0]
    assert r["status"] == "fail"
    assert "panic=fail:stuck closed" in r["data"].decode().split("\n")[1]


@pytest.mark.timeout(120)
def test_config_set_and_get_use_key_value_lines(rig):
    box, rx, flash = rig
    rx.send(BOX, {"type": "COMMAND", "request": 31, "op": "config_set", "args": b"heartbeat_s=45\njunction=Bagiya Crossing\n"})
    rx.wait(lambda: results(rx, 31), what="config_set result")
    assert results(rx, 31)[0]["status"] == "ok"
    rx.send(BOX, {"type": "COMMAND", "request": 32, "op": "config_get", "args": b"heartbeat_s"})
    rx.wait(lambda: results(rx, 32), what="config_get result")
    assert results(rx, 32)[0]["data"] == b"heartbeat_s=45"
    # Refused: a protected key and a bad value; nothing is written.
    rx.send(BOX, {"type": "COMMAND", "request": 33, "op": "config_set", "args": b"box_id=7"})
    rx.send(BOX, {"type": "COMMAND", "request": 34, "op": "config_set", "args": b"heartbeat_s=fast"})
    rx.wait(lambda: results(rx, 33) and results(rx, 34), what="refusals")
    assert results(rx, 33)[0]["status"] == "bad_args" and b"box_id" in results(rx, 33)[0]["data"]
    assert results(rx, 34)[0]["status"] == "bad_args" and b"heartbeat_s" in results(rx, 34)[0]["data"]
    import json

    saved = json.loads((flash / "config.json").read_text())
    assert saved["heartbeat_s"] == 45 and saved["junction"] == "Bagiya Crossing" and saved["box_id"] == BOX
    rx.send(BOX, {"type": "COMMAND", "request": 35, "op": "config_get", "args": b""})
    rx.wait(lambda: results(rx, 35), what="config_get all")
    data = results(rx, 35)[0]["data"].decode()
    assert "junction=Bagiya Crossing" in data.split("\n") and not [l for l in data.split("\n") if l.startswith("key=")]
