"""The registry's follow-ups: "last_event" in the admin listing (and
`callbox replace` starting above it, through the technician tool's real
admin client), the "rs485+lte" link (polled on the bus, its LTE connection
accepted, an alarm on both stored once), HEARTBEAT faults with unnamed bits,
and a box self-test RESULT in the firmware's JSON form."""

import asyncio
import json

import aiohttp
import pytest

from callbox_gateway import rs485
from callbox_gateway.app import Hooks
from callbox_gateway.sim import SimBox, SimBus
from callbox_gateway.supervision import fault_names, merge_selftest

from gw_helpers import LteBox, box_rec, config, start, wait_for

HDR = {"Authorization": "Bearer admintok"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_listing_reports_last_event_and_replace_starts_above_it(tmp_path):
    from callbox_tools import provisioning

    old = SimBox(42)
    quiet = SimBox(43)

    async def main():
        gw = await start(config(tmp_path, [old, quiet]))
        base = "http://127.0.0.1:%d" % gw.http_port
        try:
            c = await LteBox.connect(gw, old)
            # Out of order, and one far above the provisioned block.
            for n in (5, 2_000_000, 7):
                await c.send(old.alarm("panic", event=n))
                assert (await c.recv()).msg["status"] == "stored"
            # A gateway-made event for the same box (tamper seen in a
            # heartbeat) must not count as the box's event number.
            await c.send(old.heartbeat(tamper=True))
            await c.recv()
            await wait_for(lambda: any("-g" in e["event_id"] for e in gw.store.events(42)))
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/api/v1/admin/boxes", headers=HDR) as r:
                    assert r.status == 200
                    boxes = {b["box_id"]: b for b in (await r.json())["boxes"]}
            assert boxes[42]["last_event"] == 2_000_000
            assert boxes[43]["last_event"] is None
            assert "key" not in boxes[42]

            # The technician tool reads the same record over HTTP (blocking
            # urllib: run it off the loop) and starts the new box above it.
            admin = provisioning.GatewayAdmin(base, "admintok")
            rec = await asyncio.to_thread(admin.box, 42)
            assert provisioning.replacement_event_start(rec) == 2_000_001
            c.close()
        finally:
            await gw.stop()

    run(main())


def test_rs485_plus_lte_box_polled_and_lte_accepted_alarm_stored_once(tmp_path, monkeypatch):
    from callbox_tools import provisioning

    box = SimBox(300, addr=4)
    bus = SimBus([box], turnaround_ms=1.0)
    # A box that missed polls for this long counts as off the bus (the real
    # value is 2 s; shorter keeps the test quick).
    monkeypatch.setattr(rs485, "ANSWERING_S", 0.5)

    async def main():
        gw = await start(config(tmp_path, rs485={"url": bus.url, "turnaround_ms": 30.0}))
        base = "http://127.0.0.1:%d" % gw.http_port
        try:
            async with aiohttp.ClientSession() as s:
                bad = dict(box_rec(box, "rs485+lte"), bus_addr=0)
                async with s.post(base + "/api/v1/admin/boxes", json=bad, headers=HDR) as r:
                    assert r.status == 400 and "bus_addr" in (await r.json())["error"]
            # Registered as the technician tool does it for a two-link box.
            cfg = {"box_id": 300, "key": box.secret.hex(), "junction": "Rawatpur Crossing", "link": "rs485+lte", "bus_addr": 4, "event_start": 1}
            reg = provisioning.registration(cfg, 26.48, 80.31)
            assert reg["link"] == "rs485+lte" and reg["bus_addr"] == 4
            await asyncio.to_thread(provisioning.GatewayAdmin(base, "admintok").add, reg)

            # Polled on the bus.
            await wait_for(lambda: gw.bus.answering(4))
            bus.queue(4, box.alarm("panic"))
            await wait_for(lambda: box.acked.get(1) == "stored")
            # The same alarm again over its LTE backup (a new frame, the same
            # event id): accepted on LTE, ACKed as a duplicate, stored once.
            c = await LteBox.connect(gw, box)
            with bus.lock:
                frame = box.alarm("panic", event=1)
            await c.send(frame)
            ack = await c.recv()
            assert ack.msg["acked_type"] == "ALARM" and ack.msg["status"] == "duplicate"
            assert [e["event_id"] for e in gw.store.events(300)] == ["0000012c-00000001"]
            assert gw.store.events(300)[0]["link"] == "rs485"

            # Downlink: on the bus while the box answers polls ...
            assert Hooks(gw).send_call_state(300, "ringing", 1, "connecting")
            await wait_for(lambda: any(f.type_name == "CALL_STATE" for f in box.received))
            assert [f.addr for f in box.received if f.type_name == "CALL_STATE"] == [4]
            # ... over LTE once it stopped answering (cable cut).
            bus.silent.add(4)
            await wait_for(lambda: not gw.bus.answering(4))
            assert Hooks(gw).send_call_state(300, "connected", 1, "none")
            cs = await c.recv()
            assert cs.type_name == "CALL_STATE" and cs.msg["state"] == "connected"

            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/api/v1/admin/boxes", headers=HDR) as r:
                    rec = [b for b in (await r.json())["boxes"] if b["box_id"] == 300][0]
            assert (rec["link"], rec["bus_addr"], rec["last_event"]) == ("rs485+lte", 4, 1)
            c.close()
        finally:
            await gw.stop()
            bus.close()

    run(main())


def test_unnamed_fault_bits_and_json_selftest_result_reach_health(tmp_path):
    box = SimBox(50)

    async def main():
        gw = await start(config(tmp_path, [box]))
        try:
            c = await LteBox.connect(gw, box)
            # 0x40 has no name in this codec: it decodes as the integer 64.
            await c.send(box.heartbeat(faults=["flash", 0x40]))
            assert (await c.recv()).msg["acked_type"] == "HEARTBEAT"
            h = [b for b in gw.health_report()["boxes"] if b["box_id"] == 50][0]
            assert h["faults"] == ["flash", "unknown_0x40"]
            assert ", ".join(sorted(h["faults"]))  # what a console does with them
            json.dumps(gw.health_report())

            # The firmware's self-test RESULT is a JSON object.
            data = json.dumps({"flash": "pass", "emergency": "pass", "panic": "fail"}).encode()
            await c.send(box.frame({"type": "RESULT", "request": 1, "op": "selftest", "status": "fail", "data": data}))
            assert (await c.recv()).msg["acked_type"] == "RESULT"
            st = [b for b in gw.health_report()["boxes"] if b["box_id"] == 50][0]["selftest"]
            assert st["passed"] is False and st["items"] == {"flash": "pass", "emergency": "pass", "panic": "fail"}
            # The gateway's audio loopback adds its items; the box's stay, and
            # a later heartbeat keeps both.
            Hooks(gw).on_selftest(50, {"time": "2026-11-28T06:00:00Z", "passed": True, "items": {"speaker": "pass", "mic": "pass"}})
            await c.send(box.heartbeat())
            await c.recv()
            st = [b for b in gw.health_report()["boxes"] if b["box_id"] == 50][0]["selftest"]
            assert st["items"]["speaker"] == "pass" and st["items"]["panic"] == "fail" and st["passed"] is False
            c.close()
        finally:
            await gw.stop()

    run(main())


@pytest.mark.parametrize("faults,names", [
    ([], []), (["flash"], ["flash"]), ([64, "panic_stuck"], ["unknown_0x40", "panic_stuck"]), ([1.5], ["1.5"]), (None, []),
])
def test_fault_names_are_always_strings(faults, names):
    assert fault_names(faults) == names


def test_merge_selftest_parts():
    h = {}
    merge_selftest(h, "audio", {"time": "2026-01-01T00:00:00Z", "passed": False, "items": {"speaker": "fail"}, "reason": "tone not heard"})
    merge_selftest(h, "box", {"time": "2026-01-02T00:00:00Z", "passed": True, "items": {"flash": "pass"}})
    assert h["selftest"] == {"time": "2026-01-02T00:00:00Z", "passed": False, "items": {"speaker": "fail", "flash": "pass"},
                             "reason": "tone not heard"}
    merge_selftest(h, "audio", {"time": "2026-01-03T00:00:00Z", "passed": True, "items": {"speaker": "pass"}})
    assert h["selftest"]["passed"] is True and "reason" not in h["selftest"]


@pytest.mark.parametrize("data,items", [
    (b"emergency=pass\npanic=fail:held, or stuck closed\nlink=pass", {"emergency": "pass", "panic": "fail:held, or stuck closed", "link": "pass"}),
    (b'{"flash": "pass", "panic": "fail"}', {"flash": "pass", "panic": "fail"}),
    (b"speaker=pass,mic=fail", {"speaker": "pass", "mic": "fail"}),
    (b"\xff\x00", {"raw": "ff00"}),
    (b"[1, 2]", {}),
])
def test_selftest_result_forms(data, items):
    from callbox_gateway.ingest import _selftest_items

    assert _selftest_items(data) == items
