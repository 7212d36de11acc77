"""End to end: the real firmware on the MicroPython unix port (a virtual
box) on the emulated RS-485 bus, polled by the real gateway: press -> the
gateway stores and ACKs -> the box's light says "received"; a CALL_STATE
from the gateway's media hook turns it to "connected"."""

import asyncio

import pytest

from callbox_gateway.sim import SimBox

from gw_helpers import config, start, wait_for

KEY = bytes(range(32))
BOX, ADDR = 42, 3


@pytest.mark.slow
@pytest.mark.micropython
@pytest.mark.timeout(180)
def test_virtual_box_press_stored_acked_light_follows(tmp_path):
    from callbox_rig.bus import Rs485Bus
    from callbox_rig.virtual_box import VirtualBox

    bus = Rs485Bus().start()
    vb = VirtualBox(tmp_path / "flash", config={"box_id": BOX, "key": KEY.hex(), "junction": "Ghantaghar Square", "board": "devkit_rs485",
                                                "link": "rs485", "bus_addr": ADDR, "heartbeat_s": 30, "event_start": 1}, rs485_url=bus.url)

    async def main():
        me = SimBox(BOX, key=KEY, addr=ADDR)  # only for the registry record
        gw = await start(config(tmp_path, [me], rs485={"url": bus.url, "turnaround_ms": 50.0}, lte={"enabled": False}))
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, vb.start)
            await loop.run_in_executor(None, lambda: vb.wait_ready(60))
            await loop.run_in_executor(None, lambda: vb.wait_light("idle", 30))
            await wait_for(lambda: gw.metrics.get("frames_accepted", type="HEARTBEAT", link="rs485") >= 1, timeout=60)
            n = len(vb.light_history)
            vb.press("panic")
            await wait_for(lambda: any(st == "sending" for _, st in vb.light_history[n:]), timeout=10)
            vb.release("panic")
            await wait_for(lambda: any(e["kind"] == "panic" for e in gw.store.events(BOX)), timeout=60)
            ev = [e for e in gw.store.events(BOX) if e["kind"] == "panic"][0]
            assert ev["event_id"].startswith("0000002a-") and ev["link"] == "rs485"
            await loop.run_in_executor(None, lambda: vb.wait_light("received", 30))
            states = [st for _, st in vb.light_history[n:]]
            assert states.index("sending") < states.index("received")
            from callbox_gateway.app import Hooks

            assert Hooks(gw).send_call_state(BOX, "connected", ev["_event"], "connecting")
            await loop.run_in_executor(None, lambda: vb.wait_light("connected", 30))
            assert gw.store.event_count() == len(gw.store.events(BOX))
            assert gw.metrics.get("acks_sent", link="rs485") >= 2
        finally:
            await gw.stop()

    try:
        asyncio.run(asyncio.wait_for(main(), 170))
    finally:
        vb.stop()
        bus.stop()
