"""LteLink on the real MicroPython unix port, through the modem simulator, to
a minimal gateway that verifies box frames with the CPython wire codec and
ACKs them. The MicroPython host (mpy_lte_host.py) keeps each frame until it
is ACKed, sends a heartbeat as the keepalive and an SMS for an alarm not
ACKed in time."""

import asyncio
import time

import pytest

from callbox_rig.modem_sim import ModemSim
from lte_helpers import MpHost, Receiver

pytestmark = pytest.mark.micropython


def run(scenario, sim_kw=None, cfg=None, timeout=90):
    async def main():
        rx = await Receiver().start()
        sim = await ModemSim(connect_timeout_s=1.0, **(sim_kw or {})).start()
        host = await MpHost(sim.port, rx.port, cfg).start()
        try:
            return await asyncio.wait_for(scenario(host, sim, rx), timeout)
        finally:
            await host.close()
            await sim.close()
            await rx.close()

    return asyncio.run(main())


def _is_down(ev):
    return ev.get("ev") == "state" and ev.get("up") is False


def test_frames_go_through_and_alarm_is_acked():
    async def scenario(host, sim, rx):
        i = await host.wait(ev="state", state="up")
        i = await host.wait(i, ev="acked", type="HEARTBEAT")
        host.send("alarm 7")
        await host.wait(i, ev="acked", type="ALARM", event=7)
        # The gateway saw the authenticated ALARM with the box's event id.
        assert 7 in rx.alarms()
        assert rx.errors == []
        # The modem session used the documented dialect.
        cmds = sim.commands
        for c in ("ATE0", "AT+CPIN?", "AT+CSQ", 'AT+CGDCONT=1,"IP","internet"', "AT+NETOPEN", 'AT+CIPOPEN=0,"TCP","127.0.0.1",%d' % rx.port):
            assert c in cmds
        assert any(c.startswith("AT+CIPSEND=0,") for c in cmds)
        up = host.events[host.find(ev="state", state="up", up=True)]
        assert up["rssi"] == -73  # AT+CSQ 20 -> -113 + 40
        return host

    host = run(scenario)
    bye = host.events[-1]
    assert bye["ev"] == "bye" and bye["connects"] == 1 and bye["received"] >= 2
    # Live heap after collection, 64-bit unix port, modules compiled from source.
    assert 0 < host.peak_heap() < 200 * 1024


def test_blackout_detected_by_keepalive_then_recovered_with_backoff():
    async def scenario(host, sim, rx):
        i = await host.wait(ev="state", state="up", up=True)
        i = await host.wait(i, ev="acked")
        t0 = time.monotonic()
        sim.blackout(4.0)
        j = await host.wait(i, ev="state", up=False)
        detected = time.monotonic() - t0
        assert "no answer from the gateway" in host.events[j]["error"]
        assert host.events[j]["counters"]["keepalive"] >= 1
        frames_at_down = len(rx.frames)
        # Reconnect attempts back off while the blackout lasts (CIPOPEN err 10).
        k = await host.wait(j, ev="state", state="up", up=True, timeout=40)
        assert any(e.get("ev") == "state" and e.get("state") == "backoff" and e.get("tries", 0) >= 2 for e in host.events[j:k])
        await host.wait(k, ev="acked")
        assert len(rx.frames) > frames_at_down
        # answer_timeout_ms is 1.5 s and the heartbeat 0.3 s: detection well
        # before the blackout ends.
        assert detected < 4.0
        return detected

    run(scenario)


def test_network_closed_and_remote_close_are_recovered():
    async def scenario(host, sim, rx):
        i = await host.wait(ev="state", state="up", up=True)
        sim.network_closed()
        j = await host.wait(i, ev="state", up=False)
        assert "network closed" in host.events[j]["error"]
        j = await host.wait(j, ev="state", state="up", up=True)
        j = await host.wait(j, ev="acked")
        sim.remote_close(0)
        k = await host.wait(j, ev="state", up=False)
        # The +IPCLOSE URC, or a heartbeat's CIPSEND on the closed socket
        # failing first: either way the drop is noticed at once.
        err = host.events[k]["error"]
        assert "+IPCLOSE reason 1" in err or "AT+CIPSEND=0" in err, err
        k = await host.wait(k, ev="state", state="up", up=True)
        host.send("alarm 11")
        await host.wait(k, ev="acked", type="ALARM", event=11)
        assert rx.connections >= 3

    run(scenario)


def test_registration_lost_then_back():
    async def scenario(host, sim, rx):
        i = await host.wait(ev="state", state="up", up=True)
        sim.set_registration(2)  # searching: the network is closed
        j = await host.wait(i, ev="state", state="register")
        assert not host.events[j]["up"]
        await asyncio.sleep(1.0)
        assert host.find(j, ev="state", up=True) is None  # stays down while unregistered
        sim.set_registration(5)  # roaming counts as registered
        j = await host.wait(j, ev="state", state="up", up=True)
        await host.wait(j, ev="acked")

    run(scenario)


def test_sim_missing_at_boot_then_inserted():
    async def scenario(host, sim, rx):
        sim.set_sim_present(False)
        i = await host.wait(ev="state", state="backoff")
        assert "SIM not inserted" in host.events[i]["error"]
        assert host.find(ev="state", up=True) is None
        sim.set_sim_present(True)
        sim.set_registration(1)
        i = await host.wait(i, ev="state", state="up", up=True, timeout=40)
        await host.wait(i, ev="acked")

    run(scenario)


def test_sms_fallback_for_unacked_alarm_then_alarm_delivered():
    async def scenario(host, sim, rx):
        i = await host.wait(ev="state", state="up", up=True)
        i = await host.wait(i, ev="acked")
        sim.blackout(60)
        host.send("alarm 9")
        smses = await sim.wait_sms(1, timeout=30)
        j = await host.wait(i, ev="sms", event=9)
        assert smses[0].number == "+919876543210"
        assert smses[0].text == "CALLBOX PANIC box 42 Ghantaghar Square 18-11-2026 16:36:40 IST ev 0000002a-00000009 no data link"
        assert 9 not in rx.alarms()  # the data path really was dark
        sim.blackout(0)
        await host.wait(j, ev="acked", type="ALARM", event=9, timeout=40)
        assert 9 in rx.alarms()
        assert len(sim.sms) == 1  # one SMS per alarm

    run(scenario)


def test_sms_error_is_reported_not_swallowed():
    async def scenario(host, sim, rx):
        i = await host.wait(ev="state", state="up", up=True)
        sim.set_registration(0)  # no network: +CMS ERROR: 331
        host.send("sms 5")
        j = await host.wait(i, ev="sms_error", event=5)
        assert "331" in host.events[j]["error"] and "coverage" in host.events[j]["error"]
        assert sim.sms == []

    run(scenario)
