"""`callbox demo` (the README's run command) brings up the whole system:
virtual boxes on an emulated RS-485 bus, the gateway and the console. A press
on a virtual box must reach the console's database, and a restart of the demo
must keep the alarm and the box identities."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from callbox_rig.services import free_port as _free_port


def _start(state, ports):
    cmd = [sys.executable, "-m", "callbox_tools.cli", "demo", "--boxes", "2", "--cameras", "1", "--state", str(state),
           "--console-port", str(ports[0]), "--gateway-port", str(ports[1]), "--lte-port", str(ports[2])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if line.strip() == "demo ready":
            return proc, lines
        if time.monotonic() > deadline:
            break
    _stop(proc)
    pytest.fail("the demo did not get ready:\n" + "".join(lines[-40:]))


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _press(state, box, button, release=False):
    cmd = [sys.executable, "-m", "callbox_tools.cli", "press", str(box), button, "--state", str(state / "boxes")]
    if release:
        cmd.append("--release")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _light(state, box):
    """The box's light, asked on its control socket (as `callbox press` does)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(state / "boxes" / ("box-%d.sock" % box)))
        s.sendall(b'{"op": "light"}\n')
        return json.loads(s.makefile().readline())["light"]


def _console_events(state):
    db = state / "console" / "console.db"
    if not db.exists():
        return []
    con = sqlite3.connect(str(db), timeout=5)
    try:
        return [r[0] for r in con.execute("SELECT event_id FROM incidents ORDER BY event_id")]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _wait(pred, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    return pred()


@pytest.mark.slow
def test_demo_press_reaches_console_and_survives_restart(tmp_path):
    state = tmp_path / "demo"
    ports = [_free_port() for _ in range(3)]
    proc, lines = _start(state, ports)
    try:
        text = "".join(lines)
        assert "one-time password" in text  # the first start prints the admin's one-time login
        assert "callbox press 1 panic" in text
        health = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/health" % ports[1], timeout=10).read())
        assert health["boxes"] == 2
        assert "light" in _press(state, 1, "panic")
        # The box's light turns to "received" once the gateway ACKed.
        assert _wait(lambda: _light(state, 1) == "received", 60), _light(state, 1)
        _press(state, 1, "panic", release=True)
        events = _wait(lambda: _console_events(state), 60)
        assert events == ["00000001-00000001"], events
    finally:
        _stop(proc)
    assert proc.returncode is not None

    # Second start: same identities, the console keeps the incident, no new one-time password.
    proc, lines = _start(state, ports)
    try:
        assert "one-time password" not in "".join(lines)
        _press(state, 2, "emergency")
        assert _wait(lambda: _light(state, 2) == "received", 60), _light(state, 2)
        _press(state, 2, "emergency", release=True)
        events = _wait(lambda: len(_console_events(state)) == 2 and _console_events(state), 60)
        assert events == ["00000001-00000001", "00000002-00000001"], events
    finally:
        _stop(proc)
