"""How small a heap the firmware's steady state runs in (issue 3's target:
the ESP32's heap, brief section 3: 56 KiB without PSRAM, emulated with
`micropython -X heapsize=64k`; not met yet on this 64-bit port, see HEAP);
and every firmware module compiles for the ESP32 with mpy-cross."""

import re
import subprocess

import pytest

from callbox_rig.bus import Rs485Bus
from callbox_rig.virtual_box import VirtualBox

from lte_receiver import LteReceiver
from test_lte_box import BOX as LTE_BOX, lte_config
from receiver import Receiver

KEY = bytes(range(32))
# Issue 3's target is 64k (the ESP32's heap without PSRAM); NOT MET on this
# 64-bit unix port: the compiled RS-485 firmware with a self-test COMMAND
# passes at 80k and fails at 76k (fragmentation: ~15 KB free, largest free
# run ~1.7 KB). 88k keeps a margin against run-to-run layout differences.
# docs/firmware.md "Memory" has the figures and what is left.
HEAP = "88k"
HEAP_BYTES = 88 * 1024


@pytest.mark.timeout(120)
def test_steady_state_heap_use_of_the_compiled_firmware(tmp_path):
    cfg = {"box_id": 7, "key": KEY.hex(), "junction": "Rocket Tiraha", "board": "devkit_rs485", "link": "rs485", "bus_addr": 9, "heartbeat_s": 5, "event_start": 1}
    with Rs485Bus() as bus:
        box = VirtualBox(tmp_path / "flash", config=cfg, rs485_url=bus.url, heapsize=HEAP, compiled=True)
        box.start()
        rx = Receiver(bus.url, {7: (9, KEY)})
        try:
            box.wait_light("idle", timeout=20)
            for button in ("emergency", "panic", "emergency"):
                n = len(box.light_history)
                box.press(button)
                box.wait_light("sending", since=n)
                box.release(button)
                box.wait_light("received", timeout=15)
            # Lazily loaded code (commands.py, selftest.py) fits too.
            rx.send(7, {"type": "COMMAND", "request": 1, "op": "selftest", "args": b""})
            rx.wait(lambda: rx.msgs("RESULT"), timeout=30, what="selftest result")
            assert rx.msgs("RESULT")[0]["status"] == "ok", rx.msgs("RESULT")[0]
            first = box.wait_log(r"heap: live (\d+) B, peak (\d+) B, free (\d+) B", timeout=30)
            second = box.wait_log(r"heap: live (\d+) B, peak (\d+) B, free (\d+) B", timeout=30, start=box.log.index(first.string) + 1)
            live, peak, free = (int(x) for x in second.groups())
            print("\nheap under -X heapsize=%s: live %d B after gc, peak %d B sampled, free %d B" % (HEAP, live, peak, free))
            assert live + free <= HEAP_BYTES
            assert live < 70 * 1024, "steady-state live heap grew (64.9 KB measured): look for a leak"
            assert len(rx.msgs("HEARTBEAT")) >= 2
            assert sorted(e for _, e in rx.stored) == [1, 2, 3]
            assert not [l for l in box.log if "MemoryError" in l or "Traceback" in l]
            assert box.boot_reasons == ["power_on"]
        finally:
            rx.close()
            box.stop()


# An LTE box also loads at_modem.py and link_lte.py: it passes at 96k (88k
# fails at boot). It sits just under the qstr pool's 620-name step: a few
# dozen more interned names anywhere in the firmware and the pool takes
# another ~8 KB at once, which this test would catch.
LTE_HEAP = "104k"


@pytest.mark.timeout(120)
def test_steady_state_heap_use_of_an_lte_box(tmp_path):
    rx = LteReceiver(LTE_BOX, KEY)
    box = VirtualBox(tmp_path / "flash", config=lte_config(rx.port, heartbeat_s=5), heapsize=LTE_HEAP, compiled=True)
    box.start()
    try:
        box.wait_light("idle", timeout=30)
        rx.wait(lambda: rx.msgs("HEARTBEAT"), what="first heartbeat over LTE", timeout=30)
        for button in ("emergency", "panic"):
            n = len(box.light_history)
            box.press(button)
            box.wait_light("sending", since=n)
            box.release(button)
            box.wait_light("received", timeout=20)
        first = box.wait_log(r"heap: live (\d+) B, peak (\d+) B, free (\d+) B", timeout=30)
        second = box.wait_log(r"heap: live (\d+) B, peak (\d+) B, free (\d+) B", timeout=30, start=box.log.index(first.string) + 1)
        live = int(second.group(1))
        print("\nLTE box heap under -X heapsize=%s: live %d B after gc" % (LTE_HEAP, live))
        assert live < 92 * 1024, "LTE steady-state live heap grew (84 KB measured): a leak, or the qstr pool's next step"
        assert not [l for l in box.log if "MemoryError" in l or "Traceback" in l]
        assert box.boot_reasons == ["power_on"]
    finally:
        box.stop()
        rx.close()


def test_every_firmware_module_compiles_for_the_esp32(firmware_dir, mpy_cross, tmp_path):
    mods = sorted(p for p in firmware_dir.glob("*.py") if p.name != "__init__.py")
    assert len(mods) >= 14
    for src in mods:
        out = tmp_path / (src.stem + ".mpy")
        r = subprocess.run([mpy_cross, "-march=xtensawin", "-o", str(out), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, "%s: %s" % (src.name, r.stderr)
        assert out.stat().st_size > 0


def test_no_todo_left_in_the_firmware(firmware_dir):
    for src in firmware_dir.glob("*.py"):
        text = src.read_text()
        assert not re.search(r"\b(TODO|FIXME|NotImplementedError)\b", text), src.name


def test_ram_bench_reports_each_module_and_the_qstr_step_is_not_crossed():
    """`callbox bench ram`: what each module costs on the heap. Guards the
    figures of docs/firmware.md "Memory" against creeping back: the RS-485
    set measured 49.7 KB; an LTE box's interned names must stay under the
    pool's 620 step, past which the pool takes ~8 KB at once: 554 at import
    here, ~610 on a running LTE box (test_steady_state_heap_use_of_an_lte_box
    catches the step there by the live heap)."""
    from callbox_tools.bench.ram import LTE, RS485, measure

    rs = measure()
    assert list(rs["modules"]) == ["asyncio"] + list(RS485)
    assert all(n > 0 for n in rs["modules"].values()), rs
    assert rs["total_bytes"] == sum(rs["modules"].values())
    assert rs["total_bytes"] < 54 * 1024, rs
    lte = measure(lte=True)
    assert set(LTE) <= set(lte["modules"]) and lte["total_bytes"] > rs["total_bytes"]
    assert lte["qstrs"] < 620, lte
