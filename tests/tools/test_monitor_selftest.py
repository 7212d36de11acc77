"""`callbox monitor` and `callbox selftest` over a real pty to MicroPython.

Until the box firmware ships main.py and selftest.py (docs/firmware.md),
the board here runs small stand-ins written to the interface this CLI asks
for: log lines from the firmware's own log.py, and `selftest.cli()` printing
`item=pass|fail[:detail]` lines (the RESULT format of docs/protocol.md)."""

import re
import textwrap

import pytest

from callbox_tools.errors import EXIT_FAIL, EXIT_NO_MICROPYTHON
from callbox_tools.monitoring import MAX_LINE_CHARS, LineStamper
from callbox_tools.selftesting import parse_report

from conftest import PtyRepl, run_cli

STAMP = r"\d\d:\d\d:\d\d\.\d\d\d  "


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
def logging_board(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(textwrap.dedent("""
        import time, log
        log.set_box(42)
        n = 0
        while True:
            n += 1
            log.info("heartbeat %d sent" % n)
            time.sleep_ms(100)
    """))
    b = PtyRepl(flash, run_main=True).start()
    b.flash = flash
    try:
        yield b
    finally:
        b.stop()


def test_monitor_shows_the_box_log_with_timestamps(logging_board):
    r = run_cli("monitor", "--port", logging_board.port, "--lines", "3", "--seconds", "60")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.match(STAMP + r"\d+ I box 42: heartbeat \d+ sent$", line), line
    # Read-only: the firmware kept running (no Ctrl-C was sent).
    r = run_cli("monitor", "--port", logging_board.port, "--lines", "1", "--seconds", "60")
    assert "heartbeat" in r.stdout


def test_monitor_on_a_missing_port():
    r = run_cli("monitor", "--port", "/dev/ttyUSB-callbox-missing", "--seconds", "1")
    assert r.returncode == 3 and "no such serial port" in r.stderr


STANDIN_SELFTEST = '''
# Stand-in for firmware/selftest.py, to the interface in docs/technician.md.
import json
def cli():
    try:
        cfg = json.loads(open("config.json").read())
    except OSError:
        cfg = {}
    print("12 I box ?: self-test starting")
    for item in ("emergency", "panic", "tamper"):
        print("%s=pass" % item)
    print("light=pass")
    if cfg.get("gateway_ok"):
        print("link=pass")
    else:
        print("link=fail:no ACK from the gateway in 10 s")
'''


def test_selftest_prints_each_item_and_exit_code(board):
    (board.flash / "selftest.py").write_text(STANDIN_SELFTEST)
    r = run_cli("selftest", "--port", board.port)
    assert r.returncode == EXIT_FAIL, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"emergency\s+PASS", out) and re.search(r"link\s+FAIL\s+no ACK from the gateway", out)
    assert "self-test FAILED: 4 of 5 items passed" in out
    assert "self-test starting" not in out  # log noise is not an item

    (board.flash / "config.json").write_text('{"gateway_ok": true}')
    r = run_cli("selftest", "--port", board.port)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "self-test passed: 5 of 5 items passed" in r.stdout


def test_selftest_without_the_firmware(board):
    r = run_cli("selftest", "--port", board.port)
    assert r.returncode == EXIT_NO_MICROPYTHON and "callbox deploy" in r.stderr


def test_parse_report_ignores_noise_and_needs_items():
    items = parse_report("boot\nlink=fail:timeout: 10 s\nlight=pass\nx = 1\n")
    assert items == [("link", False, "timeout: 10 s"), ("light", True, "")]
    with pytest.raises(Exception):
        parse_report("Traceback...\n")
