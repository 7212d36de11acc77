"""End to end over LTE: the real firmware in a virtual box on link "lte"
(and "rs485+lte"), through its modem simulator (callbox_rig.modem_sim, one
per box, started by the virtual box), to a minimal TCP gateway written with
the CPython codec (lte_receiver.py)."""

import re
import time

import pytest

from callbox_rig.bus import Rs485Bus
from callbox_rig.virtual_box import VirtualBox

from lte_receiver import LteReceiver
from receiver import Receiver, SharedCounter

KEY = bytes(range(32))
BOX = 42
ADDR = 3
SMS_NUMBER = "+919839000112"


def lte_config(port, **over):
    cfg = {"box_id": BOX, "key": KEY.hex(), "junction": "Ghantaghar Square", "board": "esp32_sim7600", "link": "lte", "bus_addr": ADDR,
           "gateway_host": "127.0.0.1", "gateway_port": port, "apn": "internet", "sms_number": SMS_NUMBER, "heartbeat_s": 30,
           "event_start": 1, "lte_dead_s": 5}
    cfg.update(over)
    return cfg


@pytest.fixture
def lte(tmp_path):
    made = []
    rx = LteReceiver(BOX, KEY)

    def make(**over):
        box = VirtualBox(tmp_path / "flash", config=lte_config(rx.port, **over))
        made.append(box)
        box.start()
        box.wait_ready()
        return box

    yield make, rx
    for b in made:
        b.stop()
    rx.close()


@pytest.mark.timeout(120)
def test_press_goes_out_over_lte_and_the_light_follows_the_ack(lte):
    make, rx = lte
    box = make()
    assert box.modem is not None and box.modem_url.startswith("socket://127.0.0.1:")
    box.wait_light("idle", timeout=20)
    rx.wait(lambda: rx.msgs("HEARTBEAT"), what="first heartbeat over LTE")
    hb = rx.msgs("HEARTBEAT")[0]
    # CSQ 20 from the simulator is -73 dBm; on LTE the box reports the link it used.
    assert hb["link"] == "lte" and hb["rssi_dbm"] == -73 and hb["boot_reason"] == "power_on"
    box.wait_log(r"lte: up to 127\.0\.0\.1:%d" % rx.port)
    n = len(box.light_history)
    box.press("emergency")
    box.wait_light("sending", timeout=5, since=n)
    box.release("emergency")
    rx.wait(lambda: 1 in rx.stored, what="alarm 1")
    assert rx.stored[1]["kind"] == "emergency"
    box.wait_light("received", timeout=10)
    rx.send({"type": "CALL_STATE", "state": "connected", "event": 1, "prompt": "connecting"})
    box.wait_light("connected", timeout=10)
    assert rx.transmissions[1] == 1
    cmds = box.modem.sim.commands
    assert 'AT+CGDCONT=1,"IP","internet"' in cmds and any(c.startswith('AT+CIPOPEN=0,"TCP","127.0.0.1",%d' % rx.port) for c in cmds)


@pytest.mark.timeout(150)
def test_link_drops_and_an_alarm_pressed_meanwhile_arrives_once(lte):
    make, rx = lte
    box = make()
    box.wait_light("idle", timeout=20)
    rx.wait(lambda: rx.msgs("HEARTBEAT"), what="first heartbeat")
    sim = box.modem.sim

    # 1. The network drops the PDP context (+CIPEVENT): the link notices at
    #    once and comes back; an alarm pressed meanwhile goes out once.
    start = len(box.log)
    box.modem.call(sim.network_closed)
    n = len(box.light_history)
    box.press("panic")
    box.wait_light("sending", timeout=5, since=n)
    box.release("panic")
    box.wait_log(r"lte: link down: .*network closed", start=start, timeout=15)
    rx.wait(lambda: 1 in rx.stored, what="alarm 1 after the network came back")
    box.wait_light("received", timeout=10)

    # 2. A silent blackout: data vanishes both ways, CIPSEND still says OK.
    #    Only the keepalive (lte_dead_s = 5) can tell; after the blackout
    #    the alarm pressed during it is delivered, once.
    start = len(box.log)
    box.modem.call(sim.blackout, 8)
    t0 = time.monotonic()
    n = len(box.light_history)
    box.press("emergency")
    box.wait_light("sending", timeout=5, since=n)
    box.release("emergency")
    box.wait_log(r"lte: link down: .*no answer from the gateway", start=start, timeout=20)
    assert 2 not in rx.transmissions, "nothing crosses a blackout"
    rx.wait(lambda: 2 in rx.stored, timeout=40, what="alarm 2 after the blackout")
    assert time.monotonic() - t0 >= 7.0, "delivered only once the blackout ended"
    box.wait_light("received", timeout=10)
    time.sleep(2.5)  # longer than the first retries: nothing more may arrive
    assert sorted(rx.stored) == [1, 2]
    assert rx.stored[2]["kind"] == "emergency"
    assert rx.transmissions[2] <= 2  # a retry may cross the ACK; stored once by event id
    assert sim.dropped_bytes > 0
    box.wait_log(r"alarm 2 acknowledged by the gateway \(stored\) via lte", start=start)


@pytest.mark.timeout(150)
def test_unacknowledged_alarm_goes_out_once_as_an_sms(lte):
    make, rx = lte
    rx.ack_alarms = False
    box = make(sms_after_s=5)
    box.wait_light("idle", timeout=20)
    rx.wait(lambda: rx.msgs("HEARTBEAT"), what="first heartbeat")
    t0 = time.monotonic()
    n = len(box.light_history)
    box.press("panic")
    box.wait_light("sending", timeout=5, since=n)
    box.release("panic")
    sms = box.modem.call(box.modem.sim.wait_sms, 1, 30)
    assert time.monotonic() - t0 >= 4.5, "not before sms_after_s"
    assert len(sms) == 1 and sms[0].number == SMS_NUMBER
    assert re.match(r"CALLBOX PANIC box 42 Ghantaghar Square uptime \d+s ev 0000002a-00000001 no data link$", sms[0].text), sms[0].text
    box.wait_log(r"alarm 1 not acknowledged after 5 s: sent by SMS")
    time.sleep(4)  # several more checks: one SMS per alarm
    assert len(box.modem.sim.sms) == 1
    assert box.light() == "sending"
    # The gateway comes back: the alarm (kept on flash) still arrives, once.
    rx.ack_alarms = True
    rx.wait(lambda: 1 in rx.stored, timeout=45, what="alarm 1 once the gateway ACKs")
    box.wait_light("received", timeout=10)
    assert len(box.modem.sim.sms) == 1


@pytest.mark.timeout(150)
def test_rs485_plus_lte_falls_back_to_lte_when_the_bus_is_cut(tmp_path):
    counter = SharedCounter()
    lte_rx = LteReceiver(BOX, KEY, counter)
    bus = Rs485Bus().start()
    bus_rx = Receiver(bus.url, {BOX: (ADDR, KEY)}, counter)
    box = VirtualBox(tmp_path / "flash", config=lte_config(lte_rx.port, link="rs485+lte", backup_after_s=2), rs485_url=bus.url)
    try:
        box.start()
        box.wait_light("idle", timeout=20)
        # The first heartbeat goes out on whichever link is up first (before
        # the first poll, RS-485 does not count as up); then the bus is polled.
        box.wait_log(r"lte: up to")
        bus_rx.wait(lambda: bus_rx.msgs("IDLE"), what="the box answering polls on RS-485")
        time.sleep(1)
        before_lte = len(lte_rx.frames)
        # The bus carries everything while it is polled.
        n = len(box.light_history)
        box.press("emergency")
        box.wait_light("sending", timeout=5, since=n)
        box.release("emergency")
        bus_rx.wait(lambda: (BOX, 1) in bus_rx.stored, what="alarm 1 on RS-485")
        box.wait_light("received", timeout=10)
        assert not [f for _, f in lte_rx.frames[before_lte:] if f.msg["type"] == "ALARM"]

        # Cable cut: no polls; after backup_after_s the box uses LTE.
        bus.cut()
        t0 = time.monotonic()
        n = len(box.light_history)
        box.press("panic")
        box.wait_light("sending", timeout=5, since=n)
        box.release("panic")
        lte_rx.wait(lambda: 2 in lte_rx.stored, timeout=30, what="alarm 2 over LTE")
        assert time.monotonic() - t0 >= 1.5, "LTE takes over only after backup_after_s"
        box.wait_light("received", timeout=10)
        box.wait_log(r"alarm 2 acknowledged by the gateway \(stored\) via lte")
        time.sleep(2)
        assert (BOX, 2) not in bus_rx.stored and lte_rx.transmissions[2] == 1
        assert sorted(lte_rx.stored) == [2]

        # The cable mended: back on RS-485.
        bus.mend()
        time.sleep(1)
        n = len(box.light_history)
        box.press("emergency")
        box.wait_light("sending", timeout=5, since=n)
        box.release("emergency")
        bus_rx.wait(lambda: (BOX, 3) in bus_rx.stored, timeout=20, what="alarm 3 on RS-485 again")
        assert 3 not in lte_rx.stored
    finally:
        box.stop()
        bus_rx.close()
        bus.stop()
        lte_rx.close()
