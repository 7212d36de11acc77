"""The virtual box's REPL behaves like a board's (brief section 4), which the
technician CLI relies on: Ctrl-D in the REPL runs main.py again; a soft
reset in the raw REPL comes back in the raw REPL; a firmware stopped at the
REPL keeps its watchdog fed for the session; an interrupted deploy's
commit.journal is finished at boot; `callbox selftest` runs the box's
selftest.cli() through mpremote's transport."""

import json
import os
import select
import subprocess
import sys
import time

import pytest

from callbox_rig.bus import Rs485Bus
from callbox_rig.virtual_box import VirtualBox

from receiver import Receiver

KEY = bytes(range(32))
BOX = 42
ADDR = 3
CALLBOX = [sys.executable, "-m", "callbox_tools.cli"]
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


def config():
    return {"box_id": BOX, "key": KEY.hex(), "junction": "Ghantaghar Square", "board": "devkit_rs485", "link": "rs485", "bus_addr": ADDR,
            "heartbeat_s": 30, "event_start": 1}


class Console:
    """The box's console port, as a terminal program opens it."""

    def __init__(self, port):
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.seen = b""

    def write(self, data):
        os.write(self.fd, data)

    def read_until(self, token, timeout=20.0):
        """Everything read up to and including token (bytes read before are
        dropped from `seen`)."""
        deadline = time.monotonic() + timeout
        while token not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("console: no %r within %.0f s; got %r" % (token, timeout, self.seen[-300:]))
            if select.select([self.fd], [], [], min(left, 0.2))[0]:
                try:
                    self.seen += os.read(self.fd, 4096)
                except BlockingIOError:
                    pass
        i = self.seen.index(token) + len(token)
        out, self.seen = self.seen[:i], self.seen[i:]
        return out

    def close(self):
        os.close(self.fd)


@pytest.fixture
def box(tmp_path):
    b = VirtualBox(tmp_path / "flash", config=config())
    b.start()
    b.wait_light("idle", timeout=20)
    yield b
    b.stop()


@pytest.mark.timeout(120)
def test_ctrl_d_in_the_repl_runs_main_again_and_the_watchdog_is_held_meanwhile(box):
    con = Console(box.console_port)
    try:
        con.write(b"\x03")
        con.read_until(b"main: stopped by Ctrl-C")
        con.read_until(b">>> ")
        # The firmware armed an 8 s watchdog; at the REPL it is held fed.
        time.sleep(9.5)
        assert box.watchdog_resets == 0 and box.boot_reasons == ["power_on"]
        start = len(box.log)
        con.write(b"\x04")
        con.read_until(b"MPY: soft reboot\r\n")
        box.wait_log(r"firmware 1\.0\.0, board devkit_rs485, link rs485, boot reason soft_reset", start=start, timeout=20)
        box.wait_light("idle", timeout=20)
        assert box.boot_reasons == ["power_on", "soft_reset"]
    finally:
        con.close()


@pytest.mark.timeout(120)
def test_soft_reset_in_the_raw_repl_comes_back_in_the_raw_repl(box):
    con = Console(box.console_port)
    try:
        con.write(b"\x03")
        con.read_until(b">>> ")
        con.write(b"\x01")
        con.read_until(RAW_PROMPT)
        start = len(box.log)
        con.write(b"\x04")  # soft reset, as mpremote does
        got = con.read_until(b"soft reboot\r\n")
        after = con.read_until(RAW_PROMPT)
        # As on a board: no banner between, and main.py does not run.
        assert b"MicroPython v" not in after and b"Use Ctrl-D" not in after, after
        con.write(b"print(6*7)\x04")
        assert b"42" in con.read_until(b"\x04>")
        assert not [l for l in box.log[start:] if "firmware 1.0.0" in l]
        # Leave the raw REPL and soft-reset: the firmware runs again.
        con.write(b"\x02")
        con.read_until(b">>> ")
        con.write(b"\x04")
        box.wait_log(r"firmware 1\.0\.0", start=start, timeout=20)
        box.wait_light("idle", timeout=20)
        assert box.boot_reasons == ["power_on", "soft_reset", "soft_reset"]
        assert got.endswith(b"soft reboot\r\n")
    finally:
        con.close()


@pytest.mark.timeout(60)
def test_an_interrupted_deploy_is_finished_at_boot(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    # A deploy staged note.txt.new and cut the power during its switch: the
    # journal lists the renames and removals still to do.
    (flash / "note.txt").write_text("old")
    (flash / "note.txt.new").write_text("new")
    (flash / "stale.txt").write_text("remove me")
    (flash / "commit.journal").write_text(json.dumps({"rename": ["note.txt", "gone.txt"], "remove": ["stale.txt"]}))
    b = VirtualBox(flash, config=config())
    b.start()
    try:
        b.wait_log(r"main: finished an interrupted update \(commit\.journal\)", timeout=20)
        b.wait_light("idle", timeout=20)
        assert (flash / "note.txt").read_text() == "new"
        assert not (flash / "note.txt.new").exists() and not (flash / "stale.txt").exists()
        assert not (flash / "commit.journal").exists()
    finally:
        b.stop()


@pytest.mark.timeout(180)
def test_callbox_selftest_against_a_running_virtual_box(tmp_path):
    bus = Rs485Bus().start()
    rx = Receiver(bus.url, {BOX: (ADDR, KEY)})
    b = VirtualBox(tmp_path / "flash", config=config(), rs485_url=bus.url)
    b.start()
    try:
        b.wait_light("idle", timeout=20)
        rx.wait(lambda: rx.msgs("HEARTBEAT"), what="first heartbeat")
        n_hb = len(rx.msgs("HEARTBEAT"))
        t0 = time.monotonic()
        r = subprocess.run(CALLBOX + ["selftest", "--port", b.console_port], capture_output=True, text=True, timeout=90)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        for item in ("emergency", "panic", "tamper", "light", "flash", "link"):
            assert any(l.split()[:2] == [item, "PASS"] for l in r.stdout.splitlines()), r.stdout
        assert "self-test passed: 6 of 6 items passed" in r.stdout
        assert took < 60
        # The round trip was a real heartbeat, ACKed by the gateway.
        assert len(rx.msgs("HEARTBEAT")) > n_hb
        # The CLI soft-reset the box: the firmware runs again.
        b.wait_log(r"boot reason soft_reset", timeout=20)
        b.wait_light("idle", timeout=20)

        # No gateway and a button held: both fail, with the reason (shorter
        # link timeout through mpremote exec, the same cli()).
        rx.polling = False
        b.press("emergency")
        exe = os.path.join(os.path.dirname(sys.executable), "mpremote")
        r = subprocess.run([exe, "connect", b.console_port, "exec", "import selftest; selftest.cli(3000)"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = [l.strip() for l in r.stdout.splitlines()]
        assert "emergency=fail:reads pressed (held during the test, or stuck closed)" in lines, r.stdout
        assert "panic=pass" in lines and "flash=pass" in lines
        assert [l for l in lines if l.startswith("link=fail:no ACK from the gateway in 3 s")], r.stdout
    finally:
        b.stop()
        rx.close()
        bus.stop()
