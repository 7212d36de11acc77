"""`callbox monitor` and `callbox selftest` against the real firmware on a
virtual box (its console pty, the real mpremote transport). The passing
self-test, with its link item answered by a real gateway, and the monitor
showing a press live run in test_bench_procedure.py."""

import re
import signal
import subprocess

import pytest

from callbox_tools.errors import EXIT_FAIL, EXIT_NO_MICROPYTHON, EXIT_USAGE
from callbox_tools.monitoring import MAX_LINE_CHARS, LineStamper
from callbox_tools.selftesting import parse_report

from conftest import popen_cli, run_cli

STAMP = r"\d\d:\d\d:\d\d\.\d\d\d  "
CONFIG = {"box_id": 42, "key": "ab" * 32, "junction": "Ghantaghar Square", "board": "devkit_rs485", "link": "rs485", "bus_addr": 3,
          "heartbeat_s": 60, "event_start": 1}


def test_line_stamper_whole_split_and_garbage():
    s = LineStamper()
    assert s.feed(b"12 I box 4", 1000.0) == []
    out = s.feed(b"2: up\r\n34 W box 42: link down\r\n>>> ", 1000.5)
    assert [l.split("  ", 1)[1] for l in out] == ["12 I box 42: up", "34 W box 42: link down"]
    # the first line is stamped with the arrival of its first byte
    assert out[0][:12] != "" and re.match(STAMP, out[0])
    assert [l.split("  ", 1)[1] for l in s.flush(1001)] == [">>> "]
    # binary garbage (wrong baud) never grows a line without bound
    out = s.feed(b"\xff" * (3 * MAX_LINE_CHARS), 1002)
    assert len(out) == 3 and all(len(l) < MAX_LINE_CHARS + 40 for l in out)


@pytest.fixture
def running_box(make_board):
    """A deployed and configured box whose firmware runs, on a bus where no
    gateway polls (its link is down)."""
    b = make_board("box", deployed=True, config=CONFIG)
    b.wait_booted(0)
    return b


def test_monitor_restart_shows_the_boot(running_box):
    boots = len(running_box.boot_reasons)
    boot_line = re.compile(STAMP + r"\d+ I box 42: firmware [\d.]+, board devkit_rs485, link rs485, boot reason soft_reset$")
    mon = popen_cli("monitor", "--port", running_box.port, "--restart", "--seconds", "120", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in mon.stdout:
            lines.append(line.rstrip("\n"))
            if boot_line.match(lines[-1]):
                break
    finally:
        mon.send_signal(signal.SIGINT)
        mon.wait(timeout=30)
    assert mon.returncode == 0, mon.stderr.read()
    assert boot_line.match(lines[-1]), lines
    assert all(re.match(STAMP, l) for l in lines), lines
    assert running_box.boot_reasons[boots:] == ["soft_reset"]


def test_monitor_on_a_missing_port():
    r = run_cli("monitor", "--port", "/dev/ttyUSB-callbox-missing", "--seconds", "1")
    assert r.returncode == 3 and "no such serial port" in r.stderr


def test_selftest_fails_per_item_with_the_reason(running_box):
    # A held button and no gateway on the bus: those two items fail, the
    # rest pass, the exit code says so, and the firmware runs again after.
    running_box.press("emergency")
    start = len(running_box.log)
    r = run_cli("selftest", "--port", running_box.port, "--link-timeout", "3")
    assert r.returncode == EXIT_FAIL, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"^emergency\s+FAIL\s+reads pressed \(held during the test, or stuck closed\)$", out, re.M), out
    assert re.search(r"^link\s+FAIL\s+no ACK from the gateway in 3 s", out, re.M), out
    for item in ("panic", "tamper", "light", "flash"):
        assert re.search(r"^%s\s+PASS$" % item, out, re.M), out
    assert "self-test FAILED: 4 of 6 items passed" in out
    assert "selftest:" not in out  # the box's log lines are not items
    running_box.wait_booted(start)
    running_box.release("emergency")
    r = run_cli("selftest", "--port", running_box.port, "--link-timeout", "0.1")
    assert r.returncode == EXIT_USAGE and "too short" in r.stderr


def test_selftest_without_the_firmware(board):
    r = run_cli("selftest", "--port", board.port)
    assert r.returncode == EXIT_NO_MICROPYTHON and "callbox deploy" in r.stderr


def test_parse_report_ignores_noise_and_needs_items():
    items = parse_report("boot\nlink=fail:timeout: 10 s\nlight=pass\nx = 1\n")
    assert items == [("link", False, "timeout: 10 s"), ("light", True, "")]
    with pytest.raises(Exception):
        parse_report("Traceback...\n")
