"""The RS-485 bus master against simulated boxes on a baud-paced bus
(gateway.sim.SimBus behind pyserial's socket:// URL)."""

import asyncio

from callbox_gateway.rs485 import BusTiming, PollSchedule
from callbox_gateway.sim import SimBox, SimBus

from gw_helpers import config, start, wait_for


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def bus_gateway(tmp_path, boxes, bus, **rs):
    r = {"url": bus.url, "turnaround_ms": 30.0}  # generous: the machine is shared
    r.update(rs)
    return config(tmp_path, boxes, rs485=r, lte={"enabled": False})


def test_timing_math():
    t = BusTiming(115200, turnaround_ms=1.0)
    assert abs(t.wire_s(28) - 28 * 10 / 115200) < 1e-12
    assert abs(t.idle_slot_s() - (18 * 10 / 115200 + 0.001)) < 1e-12  # short POLL + short IDLE
    assert abs(t.cycle_s(32) - 32 * t.idle_slot_s()) < 1e-12
    assert t.worst_press_to_ack_s(32) > t.cycle_s(32)
    s = PollSchedule([3, 1, 2], max_downlink_per_slot=2)
    assert [s.next_address() for _ in range(4)] == [(3, True), (1, False), (2, False), (3, True)]
    for i in range(5):
        s.queue(1, i)
    assert s.take(1) == [0, 1] and s.take(1) == [2, 3] and s.take(1) == [4]


def test_alarm_on_bus_stored_acked_in_slot_and_call_state_delivered(tmp_path):
    async def main():
        boxes = [SimBox(200 + a, addr=a) for a in range(1, 9)]
        bus = SimBus(boxes, turnaround_ms=1.0, garbage_before_reply=b"\x00\x13\x37\x00")
        gw = await start(bus_gateway(tmp_path, boxes, bus))
        try:
            bus.silent.add(7)  # an unplugged box must not stall the others
            bus.queue(5, boxes[4].alarm("panic"))
            await wait_for(lambda: boxes[4].acked.get(1) == "stored")
            assert [e["event_id"] for e in gw.store.events()] == ["000000cd-00000001"]
            assert gw.store.events()[0]["link"] == "rs485"
            from callbox_gateway.app import Hooks

            assert Hooks(gw).send_call_state(205, "connected", 1, "help_on_way")
            await wait_for(lambda: any(f.type_name == "CALL_STATE" for f in boxes[4].received))
            cs = [f for f in boxes[4].received if f.type_name == "CALL_STATE"][0]
            assert cs.msg["state"] == "connected" and cs.addr == 5
            await wait_for(lambda: gw.bus.cycles >= 3)
            assert gw.metrics.get("rs485_no_reply", addr=7) >= 2
            assert gw.metrics.get("frames_rejected", reason="cobs", link="rs485") + gw.metrics.get("frames_rejected", reason="short", link="rs485") >= 1
            # The garbage before each reply did not cost the replies.
            assert gw.metrics.get("rs485_idle") >= 10
        finally:
            await gw.stop()
            bus.close()

    run(main())


def test_heartbeat_and_duplicate_alarm_on_bus(tmp_path):
    async def main():
        box = SimBox(300, addr=1)
        bus = SimBus([box], turnaround_ms=1.0)
        gw = await start(bus_gateway(tmp_path, [box], bus))
        try:
            bus.queue(1, box.heartbeat(tamper=True))
            bus.queue(1, box.alarm("emergency"))
            bus.queue(1, box.alarm("emergency", event=1))  # the ACK was lost: resent
            await wait_for(lambda: sum(1 for f in box.received if f.type_name == "ACK") >= 3)
            statuses = [f.msg["status"] for f in box.received if f.type_name == "ACK"]
            assert statuses == ["stored", "stored", "duplicate"]
            kinds = sorted(e["kind"] for e in gw.store.events())
            assert kinds == ["emergency", "tamper"]  # tamper made by the gateway from the heartbeat
        finally:
            await gw.stop()
            bus.close()

    run(main())


def test_poll_cycle_1_8_32_boxes(tmp_path, capsys):
    async def measure(n):
        boxes = [SimBox(1000 + a, addr=a) for a in range(1, n + 1)]
        bus = SimBus(boxes, turnaround_ms=1.0)
        gw = await start(bus_gateway(tmp_path / str(n), boxes, bus, turnaround_ms=10.0))
        try:
            await wait_for(lambda: len(gw.bus.cycle_times) >= 3, timeout=60)
            times = sorted(gw.bus.cycle_times)
            return times[len(times) // 2], bus
        finally:
            await gw.stop()
            bus.close()

    t = BusTiming(115200, turnaround_ms=1.0)
    for n in (1, 8, 32):
        cycle, _ = run(measure(n))
        # Bytes are paced at the baud rate: a cycle cannot beat the wire.
        assert cycle >= 0.95 * t.cycle_s(n)
        assert cycle < 10 * t.cycle_s(n) + 0.2
        with capsys.disabled():
            print("\nrs485 115200 baud: %2d boxes cycle %.1f ms (wire minimum %.1f ms)" % (n, cycle * 1000, t.cycle_s(n) * 1000))
