"""The rig controller firmware (hil_tests/rig_controller): its protocol core
on the MicroPython unix port and on CPython with the same vectors, its build
for the bench boards with mpy-cross, and the host's SerialRigController
talking to the real firmware (main.py on the unix port, simulated pins)
through a pseudo-terminal."""

import os
import pathlib
import pty
import subprocess
import sys
import time
import tty

import pytest

from callbox_rig.controller import ControllerError, SerialRigController
from callbox_tools.mpy import micropython_path, mpy_cross_path

HERE = pathlib.Path(__file__).resolve().parent
RIGCTL = HERE / "rig_controller"
VECTORS = HERE / "rigctl_vectors.json"


@pytest.mark.micropython
def test_protocol_vectors_on_micropython():
    r = subprocess.run([micropython_path(), str(HERE / "rigctl_check.py"), str(VECTORS), str(RIGCTL)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("PASS 25"), r.stdout + r.stderr


def test_protocol_vectors_on_cpython():
    r = subprocess.run([sys.executable, str(HERE / "rigctl_check.py"), str(VECTORS), str(RIGCTL)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("PASS 25"), r.stdout + r.stderr


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])  # ESP32, Raspberry Pi Pico
def test_firmware_compiles_for_the_bench_boards(tmp_path, arch):
    for src in ("rigctl.py", "main.py"):
        out = tmp_path / src.replace(".py", ".mpy")
        r = subprocess.run([mpy_cross_path(), "-march=%s" % arch, "-o", str(out), str(RIGCTL / src)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes()[:1] == b"M"  # .mpy header


class _Box:
    box_id = 4097


@pytest.fixture
def controller(tmp_path):
    """main.py on the unix port with its stdin/stdout on a pty master; the
    host opens the pty's other side as a serial port, as it would /dev/ttyACM0."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    trace = tmp_path / "outputs.log"
    env = dict(os.environ, RIGCTL_TRACE=str(trace))
    proc = subprocess.Popen([micropython_path(), "main.py"], cwd=str(RIGCTL), stdin=master, stdout=master,
                            stderr=subprocess.PIPE, env=env)
    port = os.ttyname(slave)
    ctl = SerialRigController(port, {4097: {"emergency": 0, "panic": 1, "power": 2, "light": 2}}, timeout_s=10)
    yield ctl, trace
    ctl.close()
    proc.kill()
    proc.wait(10)
    os.close(master)
    os.close(slave)


def _outputs(trace):
    rows = []
    for line in trace.read_text().splitlines():
        t, what, ch, v = line.split()
        rows.append((int(t), what, int(ch), int(v)))
    return rows


@pytest.mark.micropython
def test_serial_client_drives_the_real_firmware(controller):
    ctl, trace = controller
    assert ctl.hello[:2] == ["rigctl", "1"]
    box = _Box()
    ctl.press(box, "panic")
    ctl.release(box, "panic")
    t0 = ctl.trace(box, "emergency", [(1, 20), (0, 10), (1, 30), (0, 1)])
    assert ctl.light(box) == 1
    ctl.power(box, False)
    assert ctl.light(box) == 0  # the simulated light follows the box's power
    assert ctl.sample_light(box, 50) == (0, 0)
    ctl.power(box, True)
    assert ctl.light_state(box, 100) == "received"  # steady light
    out = _outputs(trace)
    assert [(w, c, v) for _, w, c, v in out] == [
        ("line", 1, 1), ("line", 1, 0), ("line", 0, 1), ("line", 0, 0), ("line", 0, 1), ("line", 0, 0),
        ("power", 2, 0), ("power", 2, 1)]
    # Each edge is due at start + the steps before it (no drift from step to
    # step); it is recorded after it happened, so never early, and a loaded
    # machine may make it late.
    edges = [row[0] for row in out[2:6]]
    for t, due_ms in zip(edges, (0, 20, 30, 60)):
        assert t0 + due_ms * 1000 <= t <= t0 + due_ms * 1000 + 20000, (t - t0, due_ms)


@pytest.mark.micropython
def test_serial_client_reports_refusals_with_the_reason(controller):
    ctl, _ = controller
    with pytest.raises(ControllerError, match="ERR channel line 9 does not exist"):
        ctl.command("PRESS 9")
    with pytest.raises(ControllerError, match="no rig channel for 'tamper'"):
        ctl.press(_Box(), "tamper")
    assert ctl.command("HELLO")[0] == "rigctl"  # still answering after errors


def test_serial_client_names_a_missing_port(tmp_path):
    with pytest.raises(ControllerError, match="cannot be opened.*controller_port"):
        SerialRigController(str(tmp_path / "ttyACM9"), {})
