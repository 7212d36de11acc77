"""docs/technician.md end to end, with nothing faked but the ESP32 chip: a new
board (a virtual box: the real firmware on the MicroPython unix port, reached
over its console pty by the real mpremote transport) on the junction's RS-485
bus, and a real `callbox gateway`.

- deploy -> provision -> the box reaches the gateway: `callbox selftest`
  passes its link item, `callbox monitor` shows a press live, and the press
  is stored by the gateway;
- `callbox replace OLD NEW`: the new box takes the junction's identity with a
  fresh key and event numbers above the old box's last, the old key is
  refused by the gateway, and the junction's history continues."""

import json
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from callbox_firmware import config as box_config
from callbox_firmware import wire
from callbox_tools.deploying import MANIFEST
from callbox_tools.provisioning import EVENT_BLOCK

from conftest import popen_cli, run_cli

BOX = 42
ADDR = 3
PROVISION = ["--box-id", str(BOX), "--junction", "Ghantaghar Square", "--board", "devkit_rs485", "--bus-addr", str(ADDR),
             "--lat", "26.4553", "--lon", "80.3498"]
STAMP = r"\d\d:\d\d:\d\d\.\d\d\d  "


def config_on(board):
    p = board.flash / "config.json"
    return json.loads(p.read_text()) if p.exists() else None


def press_and_wait_stored(box, junction, button, box_id=BOX):
    """Press and release a button; the gateway's stored event, after the box's
    light went sending -> received."""
    before = len(junction.events(box_id))
    n = len(box.light_history)
    box.press(button)
    box.wait_shown("sending", n)
    box.release(button)
    try:
        ev = junction.wait_event(box_id, button, timeout=60, after=before)
    except AssertionError as e:
        raise AssertionError("%s\nthe box's console ends:\n%s" % (e, box.tail(30))) from None
    box.wait_shown("received", n, timeout=60)
    return ev


@pytest.mark.timeout(300)
def test_new_board_to_a_box_the_gateway_hears(board, junction, bundle):
    # 3. deploy: the compiled firmware goes on; the box then boots it, and
    # without a config it shows the fault light and says why.
    start = len(board.log)
    r = run_cli("deploy", "--port", board.port)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "copied wire.mpy" in r.stdout and "deployed build %s: %d copied" % (bundle.build_id, len(bundle.files)) in r.stdout
    board.wait_log(r"unprovisioned: .*config", timeout=60, start=start)
    board.wait_light("fault", timeout=30)
    # Run again: the hashes computed on the box match, nothing is sent.
    r = run_cli("deploy", "--port", board.port, "--no-reset")
    assert r.returncode == 0 and "box is up to date (build %s" % bundle.build_id in r.stdout, r.stdout + r.stderr
    # A module damaged on the box and a stray source shadowing a module are
    # found by hash and fixed; nothing else is copied.
    (board.flash / "wire.mpy").write_bytes(b"damaged")
    (board.flash / "outbox.py").write_text("raise ImportError('stale')\n")
    r = run_cli("deploy", "--port", board.port, "--no-reset")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "copied wire.mpy" in r.stdout and "remove outbox.py" in r.stdout and ": 1 copied" in r.stdout
    assert (board.flash / "wire.mpy").read_bytes() == bundle.files["wire.mpy"] and not (board.flash / "outbox.py").exists()
    assert json.loads((board.flash / MANIFEST).read_text())["build"] == bundle.build_id

    # 4. provision, with the admin token from the gateway's data_dir.
    start = len(board.log)
    r = run_cli("provision", "--port", board.port, *PROVISION, "--gateway-url", junction.url, "--gateway-token-file", junction.token_file)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = config_on(board)
    box_config.validate(cfg)
    assert (cfg["box_id"], cfg["bus_addr"], cfg["link"], cfg["event_start"]) == (BOX, ADDR, "rs485", 1)
    assert cfg["key"] not in r.stdout + r.stderr and cfg["key"] not in junction.tail(1000)
    assert "| EMERGENCY CALL BOX   box 42" in r.stdout
    reg = junction.boxes()[BOX]
    assert (reg["junction"], reg["bus_addr"], reg["lat"], reg["event_start"], reg["last_event"]) == ("Ghantaghar Square", ADDR, 26.4553, 1, None)
    # The box restarted into its firmware with its identity, and the gateway
    # accepts its frames (signed with the key provision made).
    m = board.wait_booted(start)
    assert m.group(1, 2) == ("devkit_rs485", "rs485")
    junction.wait_metric("frames_accepted", 0, type="HEARTBEAT", link="rs485")
    board.wait_light("idle", timeout=30)

    # 6. selftest: every item passes, the link item by a real round trip.
    hb = junction.metric("frames_accepted", type="HEARTBEAT", link="rs485")
    start = len(board.log)
    r = run_cli("selftest", "--port", board.port)
    assert r.returncode == 0, r.stdout + r.stderr
    for item in ("emergency", "panic", "tamper", "light", "flash", "link"):
        assert re.search(r"^%s\s+PASS$" % item, r.stdout, re.M), r.stdout
    assert "self-test passed: 6 of 6 items passed" in r.stdout
    assert junction.metric("frames_accepted", type="HEARTBEAT", link="rs485") > hb
    board.wait_booted(start)  # and the firmware runs again

    # 5. monitor, read-only, while the citizen presses Emergency: the box's
    # lines, stamped; 7. the gateway stored the alarm.
    boots = len(board.boot_reasons)
    mon = popen_cli("monitor", "--port", board.port, "--seconds", "120", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(mon.stdout.readline, "")), daemon=True)
    try:
        assert "monitoring %s" % board.port in mon.stderr.readline()  # printed once the port is open
        reader.start()
        ev = press_and_wait_stored(board, junction, "emergency")
        assert ev["event_id"] == "%08x-%08x" % (BOX, 1)
        acked = re.compile(STAMP + r"\d+ I box 42: alarm 1 acknowledged by the gateway \(stored\) via rs485$")
        deadline = time.monotonic() + 30
        while not [l for l in lines if acked.match(l.rstrip("\n"))] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        mon.send_signal(signal.SIGINT)
        mon.wait(timeout=30)
        reader.join(timeout=30)
    assert mon.returncode == 0, mon.stderr.read()
    out = "".join(lines)
    assert [l for l in out.splitlines() if acked.match(l)], out
    assert [l for l in out.splitlines() if re.match(STAMP + r"\d+ I box 42: alarm 1 stored: emergency$", l)], out
    # Read-only: the firmware kept running through the monitor (no reboot).
    assert len(board.boot_reasons) == boots and board.light() == "received"
    assert junction.boxes()[BOX]["last_event"] == 1


@pytest.mark.timeout(300)
def test_an_lte_box_reaches_the_gateway(make_board, junction):
    """Provisioned for LTE (the box's modem is the SIMCom simulator, which
    opens real TCP connections to the gateway's LTE listener): the self-test's
    link item and a press go over LTE."""
    from callbox_rig.modem_sim import ModemSimThread

    modem = ModemSimThread("box77").start()
    try:
        box = make_board("lte", deployed=True, modem_url=modem.url)
        start = len(box.log)
        r = run_cli("provision", "--port", box.port, "--box-id", "77", "--junction", "IIT Gate Tiraha", "--board", "esp32_sim7600", "--link", "lte",
                    "--gateway-host", "127.0.0.1", "--gateway-port", str(junction.lte_port), "--apn", "internet", "--sms-number", "+911234567890",
                    env=junction.env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "link: lte" in r.stdout and "bus address: -" in r.stdout
        assert (junction.boxes()[77]["link"], junction.boxes()[77]["bus_addr"]) == ("lte", 0)
        assert box.wait_booted(start).group(1, 2) == ("esp32_sim7600", "lte")
        junction.wait_metric("frames_accepted", 0, type="HEARTBEAT", link="lte")
        start = len(box.log)
        r = run_cli("selftest", "--port", box.port)
        assert r.returncode == 0 and re.search(r"^link\s+PASS$", r.stdout, re.M), r.stdout + r.stderr
        box.wait_booted(start)
        ev = press_and_wait_stored(box, junction, "panic", box_id=77)
        assert (ev["event_id"], ev["link"]) == ("0000004d-00000001", "lte")
    finally:
        modem.stop()


def lte_send(port, frame, timeout):
    """Send one frame to the gateway's LTE listener; the frames it answers
    within `timeout` seconds (COBS pieces)."""
    reader = wire.FrameReader()
    pieces = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame)
        s.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not pieces:
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            pieces += reader.feed(data)
    return pieces


def alarm_frame(key_hex, event, counter):
    key = wire.BoxKey(bytes.fromhex(key_hex))
    msg = {"type": "ALARM", "event": event, "kind": "panic", "time_s": 1000, "time_ms": 0, "time_synced": False}
    return wire.encode_message(key, msg, BOX, counter)


@pytest.mark.timeout(300)
def test_replace_a_broken_box(make_board, junction):
    # The junction's box in service: deployed (by the rig), provisioned by
    # the CLI, two alarms stored at the gateway.
    old = make_board("old", deployed=True)
    start = len(old.log)
    r = run_cli("provision", "--port", old.port, *PROVISION, env=junction.env)
    assert r.returncode == 0, r.stdout + r.stderr
    old.wait_booted(start)
    old_key = config_on(old)["key"]
    press_and_wait_stored(old, junction, "emergency")
    press_and_wait_stored(old, junction, "panic")
    history = junction.events(BOX)
    assert [(e["event_id"], e["link"]) for e in history] == [("0000002a-00000001", "rs485"), ("0000002a-00000002", "rs485")]
    assert junction.boxes()[BOX]["last_event"] == 2

    # It breaks (no power), and a new board takes its place on the bus.
    old.kill()
    new = make_board("new", deployed=True)
    start = len(new.log)
    r = run_cli("replace", str(BOX), new.port, "--board", "devkit_rs485", env=junction.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "box 42 replaced: the old box's key is revoked at the gateway" in r.stdout
    assert "the gateway's last event from box 42 is 2; the new box numbers its events from %d" % (1 + EVENT_BLOCK) in r.stdout
    cfg = config_on(new)
    box_config.validate(cfg)
    # Same identity, fresh key, events numbered above the old box's.
    assert (cfg["box_id"], cfg["junction"], cfg["bus_addr"], cfg["link"]) == (BOX, "Ghantaghar Square", ADDR, "rs485")
    assert cfg["key"] != old_key and old_key not in r.stdout and cfg["key"] not in r.stdout
    # Above the last event the gateway stored (2) and above anything the old
    # box can have numbered without reaching the gateway (its start + a block).
    assert cfg["event_start"] == 1 + EVENT_BLOCK and "first event: %d" % cfg["event_start"] in r.stdout
    reg = junction.boxes()[BOX]
    assert (reg["event_start"], reg["lat"], reg["lon"]) == (cfg["event_start"], 26.4553, 80.3498)

    # The new box reaches the gateway; its press continues the history.
    new.wait_booted(start)
    ev = press_and_wait_stored(new, junction, "panic")
    assert (ev["event_id"], ev["link"]) == ("%08x-%08x" % (BOX, cfg["event_start"]), "rs485")
    assert [e["event_id"] for e in junction.events(BOX)] == [e["event_id"] for e in history] + [ev["event_id"]]
    assert junction.boxes()[BOX]["last_event"] == cfg["event_start"]

    # The old key is revoked: an alarm signed with it (the old box come
    # back over LTE with an alarm it never got ACKed) is refused, no ACK,
    # nothing stored. The same frame signed with the new key is stored: the
    # refusal is the key's, not the path's.
    refused = junction.metric("frames_rejected", reason=wire.E_AUTH, link="lte")
    assert lte_send(junction.lte_port, alarm_frame(old_key, 3, 1_000_000), timeout=3) == []
    junction.wait_metric("frames_rejected", refused, reason=wire.E_AUTH, link="lte", timeout=30)
    assert "0000002a-00000003" not in [e["event_id"] for e in junction.events(BOX)]
    # Last, as its counter jumps ahead of the new box's own.
    event = cfg["event_start"] + 1000
    pieces = lte_send(junction.lte_port, alarm_frame(cfg["key"], event, 1_000_000), timeout=30)
    assert pieces, "no ACK over LTE for a frame signed with the new key; gateway log:\n" + junction.tail()
    ack = wire.decode_frame(pieces[0], lambda b: wire.BoxKey(bytes.fromhex(cfg["key"])), expect_down=True).msg
    assert (ack["type"], ack["event"], ack["status"]) == ("ACK", event, "stored")
    assert junction.events(BOX)[-1]["event_id"] == "%08x-%08x" % (BOX, event)


@pytest.mark.timeout(300)
def test_a_used_box_moved_to_another_junction_leaves_its_old_alarms_behind(make_board, junction):
    """A box that served as box 17 (taken down with an alarm still on its
    flash, never acknowledged) is provisioned as box 43 at another junction:
    its old alarm must not reach the control room as a press at the new
    junction, and the gateway's ACKs must get through (the old identity's
    replay window stays behind too)."""
    old_identity = {"box_id": 17, "key": "cd" * 32, "junction": "Bagiya Crossing", "board": "devkit_rs485", "link": "rs485", "bus_addr": 9,
                    "heartbeat_s": 60, "event_start": 1}
    box = make_board("used", deployed=True, config=old_identity)
    box.wait_booted(0)
    box.press("panic")  # nobody polls address 9: the alarm stays pending
    box.wait_log(r"alarm 1 stored: panic", timeout=30)
    box.release("panic")
    # Its old gateway had sent it frames up to counter 5,000,000 (a COMMAND
    # made the box persist that window; firmware/replay.py FMT). The new
    # gateway counts box 43's frames from far lower.
    (box.flash / "replay.dat").write_bytes(struct.pack(">IIi", 5_000_000, 0, 0))
    start = len(box.log)
    r = run_cli("provision", "--port", box.port, "--box-id", "43", "--junction", "Rocket Tiraha", "--board", "devkit_rs485", "--bus-addr", "4",
                env=junction.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "this box was box 17 (Bagiya Crossing): its 1 undelivered alarm (event 1 panic) stays behind with that identity; removing outbox.log, replay.dat" in r.stdout, r.stdout
    assert not (box.flash / "outbox.log").exists() and not (box.flash / "replay.dat").exists()
    box.wait_booted(start)
    ev = press_and_wait_stored(box, junction, "emergency", box_id=43)
    assert [e["event_id"] for e in junction.events(43)] == [ev["event_id"]] == ["0000002b-00000001"]
