"""Port listing, ranking, auto-detection and open errors."""

import errno
import os
import pty
import tty

import pytest

from callbox_tools.errors import EXIT_NO_PORT, EXIT_PERMISSION, EXIT_PORT_BUSY, CommandError
from callbox_tools.serial_ports import PortInfo, choose_port, classify_open_error, probe_open, rank

from conftest import run_cli

CP2102 = PortInfo("/dev/ttyUSB1", 0x10C4, 0xEA60, "CP2102 USB to UART Bridge Controller")
CH340 = PortInfo("/dev/ttyUSB0", 0x1A86, 0x7523, "USB Serial")
ARDUINO = PortInfo("/dev/ttyACM0", 0x2341, 0x0043, "Arduino Uno")
BUILTIN = PortInfo("/dev/ttyS0", None, None, "n/a")


def test_likely_boxes_first_then_other_usb_then_the_rest():
    ranked = rank([BUILTIN, ARDUINO, CP2102, CH340])
    assert [p.device for p in ranked] == ["/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyACM0", "/dev/ttyS0"]
    assert CP2102.usb_id == "10C4:EA60" and BUILTIN.usb_id == "-"


def test_the_only_box_is_picked_without_port():
    assert choose_port(None, [BUILTIN, ARDUINO, CH340]) == "/dev/ttyUSB0"


def test_an_explicit_port_wins():
    assert choose_port("/dev/pts/9", [CH340, CP2102]) == "/dev/pts/9"


def test_several_boxes_ask_for_port_and_list_them():
    with pytest.raises(CommandError) as e:
        choose_port(None, [CH340, CP2102, BUILTIN])
    assert e.value.exit_code == EXIT_NO_PORT
    msg = str(e.value)
    assert "--port" in msg and "/dev/ttyUSB0" in msg and "/dev/ttyUSB1" in msg and "/dev/ttyS0" not in msg


def test_no_box_says_what_to_check():
    with pytest.raises(CommandError) as e:
        choose_port(None, [BUILTIN])
    assert e.value.exit_code == EXIT_NO_PORT and "data USB cable" in str(e.value)
    with pytest.raises(CommandError) as e:
        choose_port(None, [])
    assert e.value.exit_code == EXIT_NO_PORT


@pytest.mark.parametrize(
    "code,exit_code,words",
    [
        (errno.ENOENT, EXIT_NO_PORT, "callbox ports"),
        (errno.EACCES, EXIT_PERMISSION, "dialout"),
        (errno.EBUSY, EXIT_PORT_BUSY, "another program"),
        (errno.EAGAIN, EXIT_PORT_BUSY, "another program"),
    ],
)
def test_open_errors_are_classified(code, exit_code, words):
    exc = OSError(code, os.strerror(code))
    err = classify_open_error("/dev/ttyUSB0", exc)
    assert err.exit_code == exit_code and words in str(err) and "/dev/ttyUSB0" in str(err)


def test_missing_port_for_real():
    with pytest.raises(CommandError) as e:
        probe_open("/dev/ttyUSB-callbox-missing")
    assert e.value.exit_code == EXIT_NO_PORT


def test_busy_port_for_real():
    # A real pty held with an exclusive lock, as mpremote or a monitor holds it.
    import serial

    master, slave = pty.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    holder = serial.Serial(name, exclusive=True)
    try:
        with pytest.raises(CommandError) as e:
            probe_open(name)
        assert e.value.exit_code == EXIT_PORT_BUSY and "another program" in str(e.value)
        # The busy port is not damaged: its holder can still use it.
        holder.write(b"ok")
        assert os.read(master, 2) == b"ok"
    finally:
        holder.close()
        os.close(slave)
        os.close(master)


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any device; permission denial cannot be produced")
def test_permission_denied_for_real(tmp_path):
    dev = tmp_path / "ttyFAKE"
    dev.write_text("")
    dev.chmod(0)
    with pytest.raises(CommandError) as e:
        probe_open(str(dev))
    assert e.value.exit_code == EXIT_PERMISSION and "dialout" in str(e.value)


def test_cli_ports_lists_and_cli_needs_port_when_none_is_a_box():
    r = run_cli("ports")
    assert r.returncode == 0 and ("PORT" in r.stdout or "no serial ports" in r.stdout)
    r = run_cli("ports", "--json")
    assert r.returncode == 0 and r.stdout.strip().startswith("[")
    # No ESP32 bridge on this machine: a command without --port must say so.
    if '"likely_box": true' not in r.stdout:
        r = run_cli("selftest")
        assert r.returncode == EXIT_NO_PORT, r.stderr
        assert "callbox:" in r.stderr and "--port" in r.stderr
